"""What people and the archiver do to a prearchive session's files: move it to another
project, delete it (kept under ``deleted/``), rewrite its files through a script,
replace one file, and clear its folder once archived."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import structlog

from xnatd.dicom import INTAKE_TAGS, Tag, read_header
from xnatd.payload import Payload, file_payload, readable
from xnatd.store import layout, sidecar
from xnatd.store.digests import payload_md5
from xnatd.store.durable import (
    fsync_dir,
    makedirs_durable,
    remove_empty_parents,
    write_durably,
)
from xnatd.store.index.records import (
    InstanceRecord,
    PrearchiveSession,
)
from xnatd.store.layout import PrearchiveName, inside, session_file
from xnatd.store.session_files import SessionFiles, sidecar_values

log = structlog.get_logger(__name__)


class SessionEdits(SessionFiles):
    """The prearchive as operations and the archiver change it."""

    def relocate(self, session: PrearchiveSession, project: str) -> PrearchiveName:
        """Move a session's folder and document under another project (status MOVING).

        Raises:
            OSError: the folders could not be moved; nothing was recorded.
        """
        stamp = session.timestamp
        while self.index.get_session(PrearchiveName(project, stamp, session.label)) is not None:
            stamp = layout.next_timestamp(stamp)
        target = PrearchiveName(project, stamp, session.label)
        source_dir = self.data.session_dir(session.name)
        target_dir = self.data.session_dir(target)
        makedirs_durable(target_dir.parent, self.data.prearchive)
        os.replace(source_dir, target_dir)
        document = self.data.session_document(session.name)
        if document.exists():
            os.replace(document, self.data.session_document(target))
        fsync_dir(target_dir.parent)
        self.index.relocate_session(session.id, project=project, timestamp=stamp)
        values = sidecar.read(target_dir) or sidecar_values(session)
        sidecar.write(target_dir, {**values, "project": project}, self.data.root)
        remove_empty_parents(source_dir.parent, self.data.prearchive)
        return target

    def remove(self, session: PrearchiveSession) -> Path:
        """Delete a session (status DELETING): its files go under ``deleted/``, kept."""
        source_dir = self.data.session_dir(session.name)
        target = inside(
            self.data.root / layout.DELETED,
            layout.PREARCHIVE,
            session.project,
            session.timestamp,
            session.label,
        )
        makedirs_durable(target.parent, self.data.root)
        if source_dir.exists():
            os.replace(source_dir, target)
        document = self.data.session_document(session.name)
        if document.exists():
            os.replace(document, target.with_name(session.label + ".xml"))
        fsync_dir(target.parent)
        self.index.delete_session(session.id)
        remove_empty_parents(source_dir.parent, self.data.prearchive)
        return target

    def rewrite_instances(
        self,
        session: PrearchiveSession,
        transform: Callable[[Payload], Payload | None],
        *,
        done_as: str,
    ) -> tuple[list[InstanceRecord], int]:
        """Rewrite every file through transform (None drops the file), once per ``done_as``.

        Returns the records that remain and how many files were dropped. The sidecar
        remembers ``done_as``, so a resumed archive never applies a script twice.
        """
        folder = self.data.session_dir(session.name)
        values = sidecar.read(folder) or sidecar_values(session)
        records = self.index.instances(session.id)
        if values.get("rewritten_by") == done_as:
            return records, 0
        kept: list[InstanceRecord] = []
        dropped = 0
        for record in records:
            path = folder / session_file(record.scan, record.file_name)
            rewritten = transform(file_payload(path))  # a large file is not read whole
            if rewritten is None:
                path.unlink(missing_ok=True)
                dropped += 1
                continue
            with readable(rewritten) as source:
                header = read_header(source, INTAKE_TAGS)
            # Before the write: a large result reads its pixel data from ``path``,
            # which the write replaces or the rename below removes.
            md5, size = payload_md5(rewritten), len(rewritten)
            file_name = layout.instance_file_name(header)
            target = self.data.instance_path(session.name, record.scan, file_name)
            write_durably(target, rewritten, self.data.prearchive)
            if target != path:
                path.unlink(missing_ok=True)
            kept.append(
                replace(
                    record,
                    sop_instance_uid=header.get(Tag.SOPInstanceUID, record.sop_instance_uid),
                    sop_class_uid=header.get(Tag.SOPClassUID, record.sop_class_uid),
                    series_uid=header.get(Tag.SeriesInstanceUID, record.series_uid),
                    file_name=file_name,
                    size=size,
                    md5=md5,
                )
            )
        self.index.replace_instances(session.id, kept)
        sidecar.write(folder, {**values, "rewritten_by": done_as}, self.data.root)
        return kept, dropped

    def replace_file(self, session: PrearchiveSession, record: InstanceRecord, data: bytes) -> None:
        """Write a new version of one recorded file durably in its place, and record its
        size and digest (taken here: a digest of the old version, still waiting on an
        open association, must find the row taken)."""
        write_durably(self.instance_file(session, record), data, self.data.prearchive)
        md5 = payload_md5(data)
        records = [
            replace(r, size=len(data), md5=md5)
            if r.sop_instance_uid == record.sop_instance_uid
            else r
            for r in self.index.instances(session.id)
        ]
        self.index.replace_instances(session.id, records)

    def discard_folder(self, session: PrearchiveSession) -> None:
        """After archiving: remove what is left of the prearchive session's folder."""
        folder = self.data.session_dir(session.name)
        if folder.exists():
            shutil.rmtree(folder)
        self.data.session_document(session.name).unlink(missing_ok=True)
        remove_empty_parents(folder.parent, self.data.prearchive)
