"""Rebuild the whole index from the data directory (``xnatd reindex``).

Everything the index holds is also on disk: files and documents, sidecars (IDs,
subjects, statuses, routing decisions) and the audit journal. So a lost or damaged
index never strands or resurrects data: archived, quarantined and deleted sessions
come back as they were, and no accession ID is handed out twice.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from xnatd.dicom import Tag, UnparsableDicom, read_header
from xnatd.store import Store, sidecar
from xnatd.store.archive_tree import ARC
from xnatd.store.index.records import (
    ArchivedSession,
    ArchiveStatus,
    InstanceRecord,
    PrearchiveSession,
    ScanRow,
    Status,
)
from xnatd.store.layout import ARCHIVE, DELETED, PREARCHIVE, instance_files, session_file
from xnatd.store.session_files import record_of_file
from xnatd.store.xml import SESSION_ELEMENTS, XNAT, xs_date

_ID = re.compile(r"_([SE])(\d+)$")
_TYPE_OF_ELEMENT = {element: data_type for data_type, element in SESSION_ELEMENTS.items()}


@dataclass
class ReindexReport:
    """What a reindex restored, and the folders it skipped (with why)."""

    archived: int = 0
    prearchive: int = 0
    instances: int = 0
    audit_events: int = 0
    skipped: list[str] = field(default_factory=list)


def _instances(folder: Path) -> list[InstanceRecord]:
    return [record_of_file(path) for path in instance_files(folder)]


def _document(path: Path) -> tuple[str, str | None, str | None, list[ScanRow]]:
    """xsi type, modality, date and scans of a session document."""
    root = ET.parse(path).getroot()
    element = root.tag.rsplit("}", 1)[-1]
    scans = []
    for scan in root.iter(f"{{{XNAT}}}scan"):
        description = scan.findtext(f"{{{XNAT}}}series_description")
        resource = scan.find(f"{{{XNAT}}}file")
        scans.append(
            ScanRow(
                scan=scan.get("ID", ""),
                series_uid=scan.get("UID", ""),
                type=scan.get("type"),
                series_description=description,
                modality=scan.findtext(f"{{{XNAT}}}modality"),
                files=int(resource.get("file_count", "0")) if resource is not None else 0,
            )
        )
    date = root.findtext(f"{{{XNAT}}}date")
    return (
        _TYPE_OF_ELEMENT.get(element, "otherDicomSessionData"),
        root.get("modality"),
        date,
        scans,
    )


def _archived_folders(root: Path) -> Iterator[Path]:
    yield from sorted((root / ARCHIVE).glob(f"*/{ARC}/*"))
    yield from sorted((root / DELETED / ARCHIVE).glob(f"*/{ARC}/*"))


def reindex(store: Store) -> ReindexReport:
    """Replace every index row with what the data directory says."""
    report = ReindexReport()
    index, root = store.index, store.data.root
    journal = store.audit.read_journal()
    index.clear()
    highest = {"S": 0, "E": 0}

    def seen(accession: str | None) -> None:
        match = _ID.search(accession or "")
        if match:
            highest[match.group(1)] = max(highest[match.group(1)], int(match.group(2)))

    for folder in _archived_folders(root):
        values = sidecar.read(folder)
        if values is None or not folder.is_dir():
            report.skipped.append(f"{folder}: no {sidecar.NAME}")
            continue
        try:
            xsi_type, modality, date, scans = _document(folder / f"{values['label']}.xml")
            instances = _instances(folder)
        except (OSError, ET.ParseError, UnparsableDicom) as exc:
            report.skipped.append(f"{folder}: {exc}")
            continue
        session = ArchivedSession(
            id=values["id"],
            project=values["project"],
            subject_id=values["subject_id"],
            subject=values["subject"],
            label=values["label"],
            study_uid=values["study_uid"],
            xsi_type=xsi_type,
            modality=modality,
            date=xs_date(date) or date,
            status=ArchiveStatus(values["status"]),
            path=str(folder.relative_to(root)),
            archived=values["archived"],
            modified=values["modified"],
            autorun=tuple(values.get("autorun") or ()),
        )
        index.restore_subject(
            session.subject_id, session.project, session.subject, session.archived
        )
        index.commit_archive(session, instances, scans, prearchive_id=None)
        if session.autorun:
            index.set_autorun(session.id, list(session.autorun))
        seen(session.id)
        seen(session.subject_id)
        report.archived += 1
        report.instances += len(instances)

    for folder in sorted((root / PREARCHIVE).glob("*/*/*")):
        if not folder.is_dir():
            continue
        project, stamp, label = folder.parts[-3:]
        try:
            instances = _instances(folder)
        except (OSError, UnparsableDicom) as exc:
            report.skipped.append(f"{folder}: {exc}")
            continue
        if not instances:
            continue
        values = sidecar.read(folder) or {}
        document = folder.with_name(f"{label}.xml")
        built = document.exists() and document.stat().st_mtime >= max(i.received for i in instances)
        first = read_header(
            str(folder / session_file(instances[0].scan, instances[0].file_name)),
            {Tag.StudyInstanceUID},
        )
        created = values.get("created", min(i.received for i in instances))
        index.restore_prearchive(
            PrearchiveSession(
                id=0,
                project=project,
                timestamp=stamp,
                label=label,
                subject=values.get("subject", ""),
                study_uid=values.get("study_uid") or first.get(Tag.StudyInstanceUID, ""),
                # Unbuilt sessions resume their idle timer; the build re-applies the policy.
                status=Status.READY if built else Status.RECEIVING,
                reason=None,
                auto_archive=values.get("auto_archive"),
                source=values.get("source"),
                scans=0,
                files=len(instances),
                bytes=sum(i.size for i in instances),
                created=created,
                last_modified=max(i.received for i in instances),
            ),
            instances,
        )
        report.prearchive += 1
        report.instances += len(instances)

    for event in journal:
        seen(event.session)
        seen(event.details.get("subject_id"))
    for kind, number in highest.items():
        index.raise_id_floor(kind, number)
    index.restore_audit(journal)
    report.audit_events = len(journal)
    return report
