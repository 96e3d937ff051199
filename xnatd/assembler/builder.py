"""The session build: from recorded instances to ``LABEL.xml`` and scan catalogs.

Per-instance facts (UIDs, file names, sizes) come from the index, written at receive
time; only one header per series is read from disk here, and the MD5 of each file not
yet digested (``Prearchive.instances``), in parallel.
"""

from __future__ import annotations

import errno
import time

import structlog

from xnatd.dicom import BUILD_TAGS, UnparsableDicom
from xnatd.metrics import Metrics
from xnatd.store.documents import assign_scan_ids, build_document, group_series
from xnatd.store.index.base import InstanceRecord, PrearchiveSession, Status
from xnatd.store.layout import scan_name
from xnatd.store.prearchive import Prearchive
from xnatd.store.xml import SessionDocument

log = structlog.get_logger(__name__)

# A build that failed for one of these may pass later (space freed, a disk back): it
# is retried with back-off. Any other failure (a damaged file) stays ERROR until a
# person rebuilds, moves or deletes the session.
TRANSIENT_ERRORS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.ENOMEM,
        errno.EMFILE,
        errno.ENFILE,
        errno.EBUSY,
        errno.EINTR,
        errno.ETIMEDOUT,
        errno.ESTALE,
    }
)
RETRY_FIRST = 5.0  # seconds before the first retry; doubled each time
RETRY_MAX = 600.0


def retry_delay(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (from 1): 5, 10, 20 ... at most 10 min."""
    return min(RETRY_MAX, RETRY_FIRST * 2 ** (attempt - 1))


class Builder:
    """Builds one claimed session; run off the receiving threads."""

    def __init__(self, prearchive: Prearchive, metrics: Metrics, node: str) -> None:
        self.prearchive = prearchive
        self.metrics = metrics
        self.node = node

    def build(self, session: PrearchiveSession) -> Status | None:
        """Build a session claimed in BUILDING; returns its new status, None if reopened."""
        started = time.perf_counter()
        bound = log.bind(session=str(session.name), study_uid=session.study_uid)
        try:
            if stray := self.prearchive.remove_stray_parts(session):
                bound.warning("stray_parts_removed", files=[p.name for p in stray])
            records = self.prearchive.instances(session)  # digests taken here
            if adopted := self.prearchive.adopt_unrecorded(session, records):
                bound.warning("unrecorded_files_adopted", files=len(adopted))
                records = self.prearchive.instances(session)
            if not records:
                self.prearchive.discard_if_empty(session)
                bound.info("empty_session_discarded")
                return None
            document = self._assemble(session, records)
            self.prearchive.write_documents(session, document)
        except (UnparsableDicom, OSError) as exc:
            reason = f"build failed: {exc}".replace("\n", " ")[:500]
            retry_at = None
            if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRORS:
                delay = retry_delay(session.build_attempts + 1)
                retry_at = time.time() + delay
                reason += f"; retry {session.build_attempts + 1} in {delay:g}s"
            self.prearchive.finish_build(
                session, node=self.node, status=Status.ERROR, reason=reason, retry_at=retry_at
            )
            self.metrics.sessions_built.labels(session.project, "error").inc()
            self.prearchive.audit("error", actor="xnatd", session=str(session.name), reason=reason)
            bound.error("build_failed", reason=reason)
            return Status.ERROR
        if not self.prearchive.finish_build(
            session, node=self.node, status=Status.READY, xsi_type=document.xsi_type
        ):
            bound.info("build_interrupted", reason="files arrived during the build")
            return None
        elapsed = time.perf_counter() - started
        self.metrics.sessions_built.labels(session.project, "ready").inc()
        self.metrics.build_duration.observe(elapsed)
        self.prearchive.audit(
            "build",
            actor="xnatd",
            session=str(session.name),
            files=len(records),
            scans=len(document.scans),
            xsi_type=document.xsi_type,
        )
        bound.info(
            "session_built",
            files=len(records),
            scans=len(document.scans),
            xsi_type=document.xsi_type,
            seconds=round(elapsed, 3),
        )
        return Status.READY

    def _assemble(
        self, session: PrearchiveSession, records: list[InstanceRecord]
    ) -> SessionDocument:
        series = group_series(records)
        natural = {
            item.uid: scan_name(
                self.prearchive.read_instance_header(session, item.first, BUILD_TAGS)
            )
            for item in series
        }
        scan_ids = assign_scan_ids(series, natural)
        moved = False
        for item in series:
            stray = [record for record in item.records if record.scan != scan_ids[item.uid]]
            if stray:
                self.prearchive.move_to_scan(session, stray, scan_ids[item.uid])
                moved = True
        if moved:
            records = self.prearchive.instances(session)
        return build_document(
            records,
            lambda record, tags: self.prearchive.read_instance_header(session, record, tags),
            project=session.project,
            label=session.label,
            subject_id=session.subject,
            study_uid=session.study_uid,
            prearchive_path=str(session.name),
        )
