"""The project's DicomEdit script, run on every file when a session is archived or moved
into the project (SPEC 6)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from xnatd.anon.apply import apply_to_payload
from xnatd.config import Config
from xnatd.metrics import Metrics
from xnatd.store import Store
from xnatd.store.index.base import InstanceRecord, PrearchiveSession

log = structlog.get_logger(__name__)


class ProjectScripts:
    """Apply the project script of a session's project to its files, once."""

    def __init__(self, store: Store, config: Callable[[], Config], metrics: Metrics) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics

    def __call__(
        self, session: PrearchiveSession, records: list[InstanceRecord]
    ) -> list[InstanceRecord]:
        """The session's records after the script (rejected files dropped).

        Raises:
            ScriptFailed: the script failed on a file; the archive stops with ERROR.
        """
        project = self.config().project(session.project)
        if project is None or project.script is None:
            return records
        variables = {
            "project": session.project,
            "subject": session.subject,
            "session": session.label,
        }
        kept, dropped = self.store.prearchive.rewrite_instances(
            session,
            lambda data: apply_to_payload(project.script, data, variables),
            done_as=f"project:{session.project}",
        )
        if dropped:
            self.metrics.anonymization_rejects.labels(f"project:{session.project}").inc(dropped)
            self.store.audit.record(
                "reject",
                actor="xnatd",
                session=str(session.name),
                files=dropped,
                reason=f"rejected by the {session.project} project script",
            )
        log.info(
            "project_script_applied", session=str(session.name), files=len(kept), dropped=dropped
        )
        return kept
