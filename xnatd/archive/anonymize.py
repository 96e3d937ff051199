"""The project's DicomEdit script, run on every file when a session is archived or moved
into the project (SPEC 6)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pydicom
import structlog
from pydicom.dataset import Dataset

from xnatd.anon.apply import apply_to_payload
from xnatd.anon.chain import retains_institution
from xnatd.config import Config
from xnatd.metrics import Metrics
from xnatd.payload import Payload, readable
from xnatd.phi.headers import Leak, find_left, needles
from xnatd.store.archiving import Archiving
from xnatd.store.index.records import Finding, InstanceRecord, PrearchiveSession

log = structlog.get_logger(__name__)


class ProjectScripts:
    """Apply the project script of a session's project to its files, once."""

    def __init__(self, store: Archiving, config: Callable[[], Config], metrics: Metrics) -> None:
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
        script = project.script
        checking = self.config().site.phi_check.headers != "off"
        leaks: dict[str, list[Leak]] = {}  # by SOP Instance UID of the rewritten file
        rewritten = []  # empty when a resumed archive finds the files rewritten already

        def rewrite(data: Payload) -> Payload | None:
            rewritten.append(True)
            wanted = (  # before the script (or chain)
                needles(_header(data), institution=not retains_institution(script))
                if checking
                else None
            )
            result = apply_to_payload(script, data, variables)
            if result is not None and wanted:
                after = _header(result)
                if found := find_left(after, wanted):
                    leaks[str(after.get("SOPInstanceUID", ""))] = found
            return result

        kept, dropped = self.store.rewrite_instances(
            session, rewrite, done_as=f"project:{session.project}"
        )
        if checking and rewritten:
            self._record(session, kept, leaks)
        if dropped:
            self.metrics.anonymization_rejects.labels(f"project:{session.project}").inc(dropped)
            self.store.audit(
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

    def _record(
        self, session: PrearchiveSession, kept: list[InstanceRecord], leaks: dict[str, list[Leak]]
    ) -> None:
        """The check after the project script: its findings replace the last archive's."""
        findings = [
            Finding(
                kind="header",
                scan=record.scan,
                file=record.file_name,
                where=leak.where,
                what=leak.what,
                sop_instance_uid=record.sop_instance_uid,
                stage="archive",
            )
            for record in kept
            for leak in leaks.get(record.sop_instance_uid, ())
        ]
        self.store.record_findings(session, "archive", findings)
        for finding in findings:
            self.metrics.phi_findings.labels("header", finding.what).inc()


def _header(data: Payload) -> Dataset:
    """Every element of a file but its pixel data (a large file is not read whole)."""
    with readable(data) as source:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        return pydicom.dcmread(stream, stop_before_pixels=True)
