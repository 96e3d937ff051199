"""The session build: from recorded instances to ``LABEL.xml`` and scan catalogs.

Per-instance facts (UIDs, file names, sizes, MD5) come from the index, written at
receive time; only one header per series is read from disk here.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import structlog

from xnatd.assembler.sessiontypes import lead_modality, scan_type, session_modality, session_type
from xnatd.dicom import BUILD_TAGS, Tag, UnparsableDicom
from xnatd.metrics import Metrics
from xnatd.store.index.base import InstanceRecord, PrearchiveSession, Status
from xnatd.store.layout import scan_name
from xnatd.store.prearchive import Prearchive
from xnatd.store.xml import (
    CatalogEntry,
    MrParameters,
    ScanDocument,
    Scanner,
    SessionDocument,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Series:
    uid: str
    records: tuple[InstanceRecord, ...]

    @property
    def first(self) -> InstanceRecord:
        return self.records[0]


def _instance_order(record: InstanceRecord) -> tuple[int, str]:
    try:
        return (int(float(record.instance_number)), record.file_name)
    except ValueError:
        return (2**31, record.file_name)


def group_series(records: list[InstanceRecord]) -> list[Series]:
    """Instances by Series Instance UID, series in order of first receipt."""
    by_uid: dict[str, list[InstanceRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.received):
        by_uid[record.series_uid].append(record)
    return [Series(uid, tuple(sorted(items, key=_instance_order))) for uid, items in by_uid.items()]


def assign_scan_ids(series: list[Series], natural: dict[str, str]) -> dict[str, str]:
    """Scan ID per series UID; a series number used twice gives ``N-MR1``, ``N-MR2``...

    A series already moved to a suffixed folder by an earlier build keeps it, so a
    rebuild never renames scans.
    """
    assigned: dict[str, str] = {}
    taken: set[str] = set()
    for item in series:
        current = {record.scan for record in item.records}
        if len(current) == 1 and (scan := next(iter(current))) != natural[item.uid]:
            assigned[item.uid] = scan
            taken.add(scan)
    for item in series:
        if item.uid in assigned:
            continue
        base = natural[item.uid]
        candidate, k = base, 0
        while candidate in taken:
            k += 1
            candidate = f"{base}-{lead_modality(item.first.modality)}{k}"
        assigned[item.uid] = candidate
        taken.add(candidate)
    return assigned


def _scanner(header: dict[int, str]) -> Scanner:
    return Scanner(
        name=header.get(Tag.StationName, "").replace("\\", ",") or None,
        manufacturer=header.get(Tag.Manufacturer) or None,
        model=header.get(Tag.ManufacturerModelName) or None,
    )


def _mr_parameters(header: dict[int, str]) -> MrParameters:
    spacing = header.get(Tag.PixelSpacing, "").split("\\")
    thickness = header.get(Tag.SliceThickness)
    voxel = None
    if len(spacing) == 2 and thickness:
        voxel = (spacing[1].strip(), spacing[0].strip(), thickness.strip())
    return MrParameters(
        voxel_res=voxel,
        tr=header.get(Tag.RepetitionTime),
        te=header.get(Tag.EchoTime),
        ti=header.get(Tag.InversionTime),
        flip=header.get(Tag.FlipAngle),
        sequence=header.get(Tag.SequenceName) or None,
        image_type=header.get(Tag.ImageType) or None,
        scan_sequence=header.get(Tag.ScanningSequence) or None,
        seq_variant=header.get(Tag.SequenceVariant) or None,
        scan_options=header.get(Tag.ScanOptions) or None,
        acq_type=header.get(Tag.MRAcquisitionType) or None,
    )


def scan_document(scan_id: str, series: Series, header: dict[int, str]) -> ScanDocument:
    xsi_type = scan_type(series.first.sop_class_uid, series.first.modality)
    try:
        frames_each = max(1, int(header.get(Tag.NumberOfFrames, "1") or 1))
    except ValueError:
        frames_each = 1
    return ScanDocument(
        id=scan_id,
        xsi_type=xsi_type,
        uid=series.uid,
        series_description=header.get(Tag.SeriesDescription) or None,
        modality=header.get(Tag.Modality) or None,
        scanner=_scanner(header),
        frames=frames_each * len(series.records),
        start_time=header.get(Tag.SeriesTime),
        entries=tuple(
            CatalogEntry(
                file_name=record.file_name,
                sop_instance_uid=record.sop_instance_uid,
                instance_number=record.instance_number or None,
                md5=record.md5,
                size=record.size,
            )
            for record in series.records
        ),
        field_strength=header.get(Tag.MagneticFieldStrength),
        mr=_mr_parameters(header) if xsi_type == "mrScanData" else None,
    )


def session_document(
    session: PrearchiveSession,
    scans: list[ScanDocument],
    header: dict[int, str],
    records: list[InstanceRecord],
) -> SessionDocument:
    xsi_type = session_type(
        {record.sop_class_uid for record in records}, {record.modality for record in records}
    )
    field_strength = next((scan.field_strength for scan in scans if scan.field_strength), None)
    return SessionDocument(
        xsi_type=xsi_type,
        id="",
        project=session.project,
        label=session.label,
        subject_id=session.subject,
        uid=session.study_uid,
        modality=session_modality(xsi_type, (record.modality for record in records)),
        session_type=header.get(Tag.StudyDescription) or None,
        date=header.get(Tag.StudyDate),
        time=header.get(Tag.StudyTime),
        acquisition_site=header.get(Tag.InstitutionName) or None,
        study_comments=header.get(Tag.StudyComments) or None,
        scanner=_scanner(header),
        operator=header.get(Tag.OperatorsName) or None,
        prearchive_path=str(session.name),
        accession_number=header.get(Tag.AccessionNumber) or None,
        patient_id=header.get(Tag.PatientID) or None,
        patient_name=header.get(Tag.PatientName) or None,
        patient_birth_date=header.get(Tag.PatientBirthDate),
        field_strength=field_strength,
        scans=tuple(scans),
    )


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
        records = self.prearchive.instances(session)
        if not records:
            self.prearchive.discard_if_empty(session)
            bound.info("empty_session_discarded")
            return None
        try:
            document = self._assemble(session, records)
            self.prearchive.write_documents(session, document)
        except (UnparsableDicom, OSError) as exc:
            reason = f"build failed: {exc}".replace("\n", " ")[:500]
            self.prearchive.finish_build(
                session, node=self.node, status=Status.ERROR, reason=reason
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
        headers = {
            item.uid: self.prearchive.read_instance_header(session, item.first, BUILD_TAGS)
            for item in series
        }
        natural = {item.uid: scan_name(headers[item.uid]) for item in series}
        scan_ids = assign_scan_ids(series, natural)
        scans = []
        for item in series:
            scan_id = scan_ids[item.uid]
            stray = [record for record in item.records if record.scan != scan_id]
            if stray:
                self.prearchive.move_to_scan(session, stray, scan_id)
            scans.append(scan_document(scan_id, item, headers[item.uid]))
        scans.sort(key=lambda scan: _scan_order(scan.id))
        return session_document(session, scans, headers[series[0].uid], records)


def _scan_order(scan_id: str) -> tuple[int, str]:
    head = scan_id.split("-")[0]
    return (int(head), scan_id) if head.isdigit() else (2**31, scan_id)
