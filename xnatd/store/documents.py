"""Session documents from recorded instances: scans, scan IDs, types and fields.

Used by the assembler (prearchive build) and the archive (documents rewritten with
accession IDs after a merge); per-instance facts come from the index, one header
per series from disk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from xnatd.dicom import BUILD_TAGS, Tag
from xnatd.store.index.records import InstanceRecord
from xnatd.store.sessiontypes import lead_modality, scan_type, session_modality, session_type
from xnatd.store.xml import (
    CatalogEntry,
    MrParameters,
    ScanDocument,
    Scanner,
    SessionDocument,
)


@dataclass(frozen=True)
class Series:
    """One series' recorded files, in instance number order."""

    uid: str
    records: tuple[InstanceRecord, ...]

    @property
    def first(self) -> InstanceRecord:
        """The series' first file (by instance number), whose header describes the scan."""
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
    """The scan document of one series, from its records and one file's header."""
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
    *,
    project: str,
    label: str,
    subject_id: str,
    study_uid: str,
    scans: list[ScanDocument],
    header: dict[int, str],
    records: list[InstanceRecord],
    session_id: str = "",
    prearchive_path: str | None = None,
) -> SessionDocument:
    """The session document: its type from every file's SOP class and modality, its
    fields from one file's header, and its scans.
    """
    xsi_type = session_type(
        {record.sop_class_uid for record in records}, {record.modality for record in records}
    )
    field_strength = next((scan.field_strength for scan in scans if scan.field_strength), None)
    return SessionDocument(
        xsi_type=xsi_type,
        id=session_id,
        project=project,
        label=label,
        subject_id=subject_id,
        uid=study_uid,
        modality=session_modality(xsi_type, (record.modality for record in records)),
        session_type=header.get(Tag.StudyDescription) or None,
        date=header.get(Tag.StudyDate),
        time=header.get(Tag.StudyTime),
        acquisition_site=header.get(Tag.InstitutionName) or None,
        study_comments=header.get(Tag.StudyComments) or None,
        scanner=_scanner(header),
        operator=header.get(Tag.OperatorsName) or None,
        prearchive_path=prearchive_path,
        accession_number=header.get(Tag.AccessionNumber) or None,
        patient_id=header.get(Tag.PatientID) or None,
        patient_name=header.get(Tag.PatientName) or None,
        patient_birth_date=header.get(Tag.PatientBirthDate),
        field_strength=field_strength,
        scans=tuple(scans),
    )


def scan_order(scan_id: str) -> tuple[int, str]:
    """Scans sorted by number first (2 before 10), then by ID."""
    head = scan_id.split("-")[0]
    return (int(head), scan_id) if head.isdigit() else (2**31, scan_id)


def by_scan(records: list[InstanceRecord]) -> dict[str, Series]:
    """Records grouped by their scan folder, each scan's instances in instance order."""
    groups: dict[str, list[InstanceRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.received):
        groups[record.scan].append(record)
    return {
        scan: Series(items[0].series_uid, tuple(sorted(items, key=_instance_order)))
        for scan, items in groups.items()
    }


def build_document(
    records: list[InstanceRecord],
    read_header: Callable[[InstanceRecord, frozenset[int]], dict[int, str]],
    *,
    project: str,
    label: str,
    subject_id: str,
    study_uid: str,
    session_id: str = "",
    prearchive_path: str | None = None,
) -> SessionDocument:
    """The session document for records whose scan folders are final.

    Reads one header per scan (its first instance) through ``read_header``.

    Raises:
        UnparsableDicom: a scan's first file cannot be read.
        OSError: a file is missing.
    """
    scans = by_scan(records)
    headers = {scan: read_header(series.first, BUILD_TAGS) for scan, series in scans.items()}
    documents = sorted(
        (scan_document(scan, series, headers[scan]) for scan, series in scans.items()),
        key=lambda doc: scan_order(doc.id),
    )
    first = min(records, key=lambda r: r.received)
    return session_document(
        project=project,
        label=label,
        subject_id=subject_id,
        study_uid=study_uid,
        scans=documents,
        header=headers[first.scan],
        records=records,
        session_id=session_id,
        prearchive_path=prearchive_path,
    )
