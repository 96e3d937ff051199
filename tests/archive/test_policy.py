"""Auto-archive decisions (SPEC 4.2, reference 4.4)."""

from __future__ import annotations

import pytest

from xnatd.archive.policy import auto_archive_mode
from xnatd.config import Project


@pytest.mark.parametrize(
    ("policy", "aa", "mode"),
    [
        ("manual", None, None),
        ("auto-archive", None, "append"),
        ("auto-archive-overwrite", None, "delete"),
        ("manual", True, "append"),
        ("auto-archive-overwrite", True, "delete"),
        ("auto-archive", False, None),
        ("auto-archive-overwrite", False, None),
    ],
)
def test_project_policy_and_aa_comment(policy: str, aa: bool | None, mode: str | None) -> None:
    assert auto_archive_mode("P", aa, Project("P", prearchive=policy)) == mode


def test_unassigned_never_auto_archives() -> None:
    assert auto_archive_mode("Unassigned", True, None) is None
    assert (
        auto_archive_mode("Unassigned", True, Project("Unassigned", prearchive="auto-archive"))
        is None
    )
