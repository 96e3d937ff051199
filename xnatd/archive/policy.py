"""Whether a freshly built session is archived at once, and how (SPEC 4.2, reference 4.4).

Pure: values in, a mode out.
"""

from __future__ import annotations

from xnatd.config import Project
from xnatd.routing import UNASSIGNED

OVERWRITE_MODES = ("none", "append", "delete")

_POLICY_MODES = {"auto-archive": "append", "auto-archive-overwrite": "delete"}


def auto_archive_mode(project_id: str, aa: bool | None, project: Project | None) -> str | None:
    """The overwrite mode to auto-archive with, or None to leave the session READY.

    Unassigned never auto-archives; the session's ``AA:`` value overrides the
    project's ``prearchive`` policy (true archives appending, false keeps it).
    """
    if project_id == UNASSIGNED or project is None or aa is False:
        return None
    policy_mode = _POLICY_MODES.get(project.prearchive)
    if aa is True:
        return policy_mode or "append"
    return policy_mode
