"""What every face of the prearchive shares: a session's folder, its recorded files
and their headers, their digests, the findings of the PHI check and the audit trail.

The faces: ``Prearchive`` (the durable write), ``Assembly`` (what the builder does to
a session) and ``SessionEdits`` (what operations and the archiver do to one).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import structlog

from xnatd.dicom import INTAKE_TAGS, Tag, read_header
from xnatd.payload import file_payload, readable
from xnatd.store import sidecar
from xnatd.store.audit import AuditTrail
from xnatd.store.digests import file_md5, files_md5
from xnatd.store.durable import (
    remove_empty_parents,
)
from xnatd.store.index.base import Index
from xnatd.store.index.records import (
    PENDING_DIGEST,
    Finding,
    InstanceRecord,
    PrearchiveSession,
)
from xnatd.store.layout import DataDir, PrearchiveName, session_file

log = structlog.get_logger(__name__)


def record_of_file(path: Path) -> InstanceRecord:
    """The index row of a stored file, read back from ``SCANS/SCAN/DICOM/FILE``.

    Raises:
        UnparsableDicom: the file is not readable DICOM.
    """
    data = file_payload(path)  # a large file is not read whole
    with readable(data) as source:
        header = read_header(source, INTAKE_TAGS)
    return InstanceRecord(
        sop_instance_uid=header.get(Tag.SOPInstanceUID, path.stem),
        sop_class_uid=header.get(Tag.SOPClassUID, ""),
        series_uid=header.get(Tag.SeriesInstanceUID, ""),
        series_number=header.get(Tag.SeriesNumber, ""),
        instance_number=header.get(Tag.InstanceNumber, ""),
        modality=header.get(Tag.Modality, ""),
        scan=path.parent.parent.name,
        file_name=path.name,
        size=len(data),
        md5=file_md5(path),
        received=path.stat().st_mtime,
    )


class SessionFiles:
    """One data directory's prearchive sessions, their files and their index rows."""

    def __init__(self, data: DataDir, index: Index, audit: AuditTrail) -> None:
        self.data = data
        self.index = index
        self.audit_trail = audit

    def session_dir(self, name: PrearchiveName) -> Path:
        """The session's folder, ``prearchive/PROJECT/TIMESTAMP/LABEL``."""
        return self.data.session_dir(name)

    def instance_file(self, session: PrearchiveSession, record: InstanceRecord) -> Path:
        """Where one recorded file of a session lies (for a check that reads pixels)."""
        return self.data.session_dir(session.name) / session_file(record.scan, record.file_name)

    def instances(self, session: PrearchiveSession) -> list[InstanceRecord]:
        """The session's records as the index holds them (a read, nothing more: a
        digest not taken yet is ``PENDING_DIGEST``; ``take_digests`` takes it)."""
        return self.index.instances(session.id)

    def findings(self, session: PrearchiveSession) -> list[Finding]:
        """What the PHI check found in the session's files."""
        return self.index.findings(session.id)

    def read_instance_header(
        self, session: PrearchiveSession, record: InstanceRecord, tags: frozenset[int]
    ) -> dict[int, str]:
        """Header of one stored file (UnparsableDicom if it was damaged on disk)."""
        return read_header(
            str(self.data.session_dir(session.name) / session_file(record.scan, record.file_name)),
            tags,
        )

    def discard_if_empty(self, session: PrearchiveSession) -> bool:
        """Drop a session that never kept a file (e.g. its only write failed)."""
        if not self.index.delete_session_if_empty(session.id):
            return False
        folder = self.data.session_dir(session.name)
        (folder / sidecar.NAME).unlink(missing_ok=True)
        for scan in sorted(folder.glob("SCANS/*/DICOM")):  # left empty by a roll-back
            remove_empty_parents(scan, folder)
        self.data.session_document(session.name).unlink(missing_ok=True)
        remove_empty_parents(folder, self.data.prearchive)
        return True

    def audit(
        self, event: str, *, actor: str | None, session: str | None, **details: object
    ) -> None:
        """Record an event in the audit trail."""
        self.audit_trail.record(event, actor=actor, session=session, **details)

    def take_digests(
        self, session: PrearchiveSession, records: list[InstanceRecord]
    ) -> list[InstanceRecord]:
        """``records`` with every MD5: those still ``PENDING_DIGEST`` are taken now, from
        the files, and recorded in the index.

        Raises:
            OSError: a recorded file cannot be read (the message names it).
        """
        pending = [record for record in records if record.md5 == PENDING_DIGEST]
        if not pending:
            return records
        folder = self.data.session_dir(session.name)
        digests = files_md5(
            [folder / session_file(record.scan, record.file_name) for record in pending],
            [record.size for record in pending],
        )
        taken = {r.sop_instance_uid: md5 for r, md5 in zip(pending, digests, strict=True)}
        self.index.set_digests(
            session.id,
            [(r.sop_instance_uid, r.received, taken[r.sop_instance_uid]) for r in pending],
        )
        return [replace(r, md5=taken.get(r.sop_instance_uid, r.md5)) for r in records]

    def record_findings(
        self, session: PrearchiveSession, stage: str, findings: list[Finding]
    ) -> None:
        """Replace what one stage of the PHI check found in the session."""
        self.index.replace_findings(session.id, stage, findings)


def sidecar_values(session: PrearchiveSession) -> dict[str, object]:
    """The sidecar's values for a session that has none (written before sidecars)."""
    return {
        "project": session.project,
        "subject": session.subject,
        "study_uid": session.study_uid,
        "auto_archive": session.auto_archive,
        "source": session.source,
        "created": session.created,
    }
