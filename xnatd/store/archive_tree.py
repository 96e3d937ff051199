"""The archive on disk (SPEC 5.1): ``archive/PROJECT/arc001/LABEL/...``.

Files arrive by durable move from the prearchive; documents are rewritten with the
accession IDs; the sidecar carries ID, subject and status for reindex; a purge
moves the folder under ``deleted/`` and never removes a file.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from xnatd.dicom import read_header
from xnatd.store import sidecar
from xnatd.store.durable import fsync_dir, makedirs_durable, move_durably, write_durably
from xnatd.store.index.base import Index
from xnatd.store.index.records import ArchivedSession, InstanceRecord
from xnatd.store.layout import ARCHIVE, DELETED, DataDir, inside
from xnatd.store.xml import SessionDocument, catalog_xml, session_xml

ARC = "arc001"  # XNAT's current arc folder for every project


class ArchiveStore:
    """The archive folders of one data directory: placing, reading and purging sessions."""

    def __init__(self, data: DataDir, index: Index) -> None:
        self.data = data
        self.index = index
        self.root = data.root / ARCHIVE

    def relative_dir(self, project: str, label: str) -> str:
        """The session's folder relative to the data directory: ``archive/PROJECT/arc001/LABEL``.

        Raises:
            UnsafePath: project or label is not a safe folder name.
        """
        inside(self.root, project, ARC, label)  # refuses unsafe names
        return f"{ARCHIVE}/{project}/{ARC}/{label}"

    def folder(self, session: ArchivedSession) -> Path:
        """The archived session's folder."""
        return self.data.root / session.path

    def instance_path(self, folder: Path, record: InstanceRecord) -> Path:
        """Where a file of the session in ``folder`` lives: ``SCANS/SCAN/DICOM/FILE``."""
        return inside(folder, "SCANS", record.scan, "DICOM", record.file_name)

    def place(self, source: Path, target: Path) -> None:
        """Move one file into the archive; a re-run after a crash finds it already there."""
        if not source.exists() and target.exists():
            return
        move_durably(source, target, self.data.root)

    def remove_file(self, path: Path) -> None:
        """Remove an archived file (a replaced one); gone already is fine."""
        path.unlink(missing_ok=True)

    def read_instance_header(
        self, folder: Path, record: InstanceRecord, tags: frozenset[int]
    ) -> dict[int, str]:
        """The given tags of an archived file's header."""
        return read_header(str(self.instance_path(folder, record)), tags)

    def write_documents(self, folder: Path, label: str, document: SessionDocument) -> None:
        """Write the scan catalogs and the session document ``LABEL.xml``, durably."""
        for scan in document.scans:
            write_durably(folder / scan.catalog_uri, catalog_xml(scan), self.data.root)
        write_durably(folder / f"{label}.xml", session_xml(document), self.data.root)

    def write_sidecar(self, session: ArchivedSession) -> None:
        """Write the sidecar reindex reads back: the session's row, less what is derived."""
        values = asdict(session)
        values["status"] = session.status.value
        for derived in ("scans", "files", "bytes", "path"):
            values.pop(derived)
        sidecar.write(self.folder(session), values, self.data.root)

    def purge(self, session: ArchivedSession) -> str:
        """Move the session's folder under ``deleted/``; returns its new relative path."""
        relative = f"{DELETED}/{session.path}-{session.id}"
        target = self.data.root / relative
        makedirs_durable(target.parent, self.data.root)
        os.replace(self.folder(session), target)
        fsync_dir(target.parent)
        return relative
