"""The session build: from recorded instances to ``LABEL.xml`` and scan catalogs.

Per-instance facts (UIDs, file names, sizes) come from the index, written at receive
time; only one header per series is read from disk here, and the MD5 of each file not
yet digested (``SessionFiles.take_digests``), in parallel.
"""

from __future__ import annotations

import errno
import time
from collections import Counter
from collections.abc import Callable

import structlog

from xnatd.assembler.pixelcheck import PixelChecker
from xnatd.config import PhiCheck
from xnatd.dicom import BUILD_TAGS, UnparsableDicom
from xnatd.metrics import Metrics
from xnatd.phi.pixels import candidate
from xnatd.store.assembly import Assembly
from xnatd.store.documents import assign_scan_ids, build_document, group_series
from xnatd.store.index.records import Finding, InstanceRecord, PrearchiveSession, Status
from xnatd.store.layout import scan_name
from xnatd.store.xml import SessionDocument

log = structlog.get_logger(__name__)

BURNED_IN_ANNOTATION, IMAGE_TYPE = 0x00280301, 0x00080008
PIXEL_CHECK_TAGS = frozenset({BURNED_IN_ANNOTATION, IMAGE_TYPE})

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

    def __init__(
        self,
        assembly: Assembly,
        metrics: Metrics,
        node: str,
        phi_check: Callable[[], PhiCheck] = PhiCheck,
        pixels: PixelChecker | None = None,
    ) -> None:
        self.assembly = assembly
        self.metrics = metrics
        self.node = node
        self.phi_check = phi_check  # the current site.phi_check (a reload swaps it)
        self.pixels = pixels or PixelChecker()

    def build(self, session: PrearchiveSession) -> Status | None:
        """Build a session claimed in BUILDING; returns its new status (READY, HELD or
        ERROR), None if files reopened it."""
        started = time.perf_counter()
        bound = log.bind(session=str(session.name), study_uid=session.study_uid)
        try:
            if stray := self.assembly.remove_stray_parts(session):
                bound.warning("stray_parts_removed", files=[p.name for p in stray])
            records = self.assembly.instances(session)  # the one read of a build
            if adopted := self.assembly.adopt_unrecorded(session, records):
                # Rare (a writer died before recording): read again, since a writer
                # still alive may have recorded some of the same files meanwhile.
                bound.warning("unrecorded_files_adopted", files=len(adopted))
                records = self.assembly.instances(session)
            records = self.assembly.take_digests(session, records)
            if not records:
                self.assembly.discard_if_empty(session)
                bound.info("empty_session_discarded")
                return None
            document, records = self._assemble(session, records)
            self.assembly.write_documents(session, document)
            self._check_pixels(session, records)
        except (UnparsableDicom, OSError) as exc:
            failure = f"build failed: {exc}".replace("\n", " ")[:500]
            retry_at = None
            if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRORS:
                delay = retry_delay(session.build_attempts + 1)
                retry_at = time.time() + delay
                failure += f"; retry {session.build_attempts + 1} in {delay:g}s"
            self.assembly.finish_build(
                session, node=self.node, status=Status.ERROR, reason=failure, retry_at=retry_at
            )
            self.metrics.sessions_built.labels(session.project, "error").inc()
            self.assembly.audit("error", actor="xnatd", session=str(session.name), reason=failure)
            bound.error("build_failed", reason=failure)
            return Status.ERROR
        status, reason = self._verdict(session, records)
        if not self.assembly.finish_build(
            session, node=self.node, status=status, reason=reason, xsi_type=document.xsi_type
        ):
            bound.info("build_interrupted", reason="files arrived during the build")
            return None
        elapsed = time.perf_counter() - started
        self.metrics.sessions_built.labels(session.project, status.value.lower()).inc()
        self.metrics.build_duration.observe(elapsed)
        self.assembly.audit(
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
            status=status.value,
        )
        if status is Status.HELD:
            bound.warning("session_held", reason=reason)
        return status

    def _verdict(
        self, session: PrearchiveSession, records: list[InstanceRecord]
    ) -> tuple[Status, str | None]:
        """READY, or HELD with a one-line reason when the PHI check found something in a
        kind the site holds for (``site.phi_check``). Findings of files no longer in
        the session do not count."""
        policy = self.phi_check()
        holding = {kind for kind, mode in (("header", policy.headers), ("pixels", policy.pixels))
                   if mode in ("hold", "all")}  # fmt: skip
        present = {record.sop_instance_uid for record in records}
        found = Counter(
            finding.what
            for finding in self.assembly.findings(session)
            if finding.kind in holding and finding.sop_instance_uid in present
        )
        if not found:
            return Status.READY, None
        kinds = ", ".join(f"{what} x{count}" for what, count in sorted(found.items()))
        return (
            Status.HELD,
            f"possible patient information: {sum(found.values())} findings ({kinds})",
        )

    def _check_pixels(self, session: PrearchiveSession, records: list[InstanceRecord]) -> None:
        """The pixel check of the session's candidate images (``site.phi_check.pixels``);
        its findings replace the last build's. Nothing is decoded for a session without
        a candidate: the decision reads the index and one header per series."""
        mode = self.phi_check().pixels
        if mode == "off":
            self.assembly.record_findings(session, "build", [])
            return
        first: dict[str, dict[int, str]] = {}
        images: list[tuple[InstanceRecord, str]] = []
        for record in records:
            if record.series_uid not in first:
                first[record.series_uid] = self.assembly.read_instance_header(
                    session, record, PIXEL_CHECK_TAGS
                )
            header = first[record.series_uid]
            reason = candidate(
                record.sop_class_uid,
                record.modality,
                header.get(BURNED_IN_ANNOTATION, ""),
                header.get(IMAGE_TYPE, ""),
                mode,
            )
            if reason is not None:
                images.append((record, reason))
        results = self.pixels.check(
            [(self.assembly.instance_file(session, record), why) for record, why in images]
        )
        findings = []
        for (record, _), result in zip(images, results, strict=True):
            leaks = (
                [(leak.where, leak.what) for leak in result]
                if isinstance(result, list)
                else [("whole image", f"not checked: {result}")]
            )
            findings += [
                Finding(
                    kind="pixels",
                    scan=record.scan,
                    file=record.file_name,
                    where=where,
                    what=what,
                    sop_instance_uid=record.sop_instance_uid,
                    stage="build",
                )
                for where, what in leaks
            ]
        for finding in findings:
            self.metrics.phi_findings.labels("pixels", finding.what.split(":")[0]).inc()
        self.assembly.record_findings(session, "build", findings)

    def _assemble(
        self, session: PrearchiveSession, records: list[InstanceRecord]
    ) -> tuple[SessionDocument, list[InstanceRecord]]:
        """The session document, and the records as they are after files of a duplicate
        series number moved to their own scan (``N-MR1``)."""
        series = group_series(records)
        natural = {
            item.uid: scan_name(self.assembly.read_instance_header(session, item.first, BUILD_TAGS))
            for item in series
        }
        scan_ids = assign_scan_ids(series, natural)
        now: dict[str, InstanceRecord] = {}
        for item in series:
            stray = [record for record in item.records if record.scan != scan_ids[item.uid]]
            if stray:
                for record in self.assembly.move_to_scan(session, stray, scan_ids[item.uid]):
                    now[record.sop_instance_uid] = record
        if now:
            records = [now.get(record.sop_instance_uid, record) for record in records]
        document = build_document(
            records,
            lambda record, tags: self.assembly.read_instance_header(session, record, tags),
            project=session.project,
            label=session.label,
            subject_id=session.subject,
            study_uid=session.study_uid,
            prearchive_path=str(session.name),
        )
        return document, records
