"""What the assembler does to a session's files: claim it when idle, adopt files a dead
writer left unrecorded, split duplicate series into scans, write the session document
and its catalogs, and record the build's outcome."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import structlog

from xnatd.dicom import UnparsableDicom
from xnatd.store import layout
from xnatd.store.durable import (
    fsync_dir,
    makedirs_durable,
    remove_stray_parts,
    write_durably,
)
from xnatd.store.index.records import (
    PENDING_DIGEST,
    InstanceRecord,
    PrearchiveSession,
    Status,
)
from xnatd.store.layout import session_file
from xnatd.store.session_files import SessionFiles, record_of_file
from xnatd.store.xml import SessionDocument, catalog_xml, session_xml

log = structlog.get_logger(__name__)


ADOPT_AFTER = 1.0  # seconds: a writer records its file within milliseconds of naming it


class Assembly(SessionFiles):
    """The prearchive as the builder and the idle sweeper see it."""

    def claim_idle_sessions(
        self, *, idle_timeout: float, node: str, lease: float
    ) -> list[PrearchiveSession]:
        """Claim sessions idle for ``idle_timeout`` (and ERROR ones due a retry) for node:
        they are BUILDING now (``Index.claim_idle_sessions``).
        """
        return self.index.claim_idle_sessions(
            now=time.time(), idle_timeout=idle_timeout, node=node, lease=lease
        )

    def quiet_sessions(self, *, quiet: float) -> list[PrearchiveSession]:
        """Sessions still RECEIVING whose senders have been quiet for ``quiet`` seconds
        (``Index.quiet_sessions``): their files can be digested before the build."""
        return self.index.quiet_sessions(now=time.time(), quiet=quiet)

    def digest_early(self, session: PrearchiveSession) -> int:
        """Take the digests a session's files still lack, before it is built (the build
        then has only what arrives later to read); returns how many were taken."""
        records = self.instances(session)
        pending = sum(1 for record in records if record.md5 == PENDING_DIGEST)
        if pending:
            self.take_digests(session, records)
        return pending

    def adopt_unrecorded(
        self,
        session: PrearchiveSession,
        recorded: list[InstanceRecord],
        *,
        settled: float = ADOPT_AFTER,
    ) -> list[InstanceRecord]:
        """Record the session's files that are not in ``recorded``; returns them.

        A file gets its final name only once it is complete and flushed, so a file
        without a row was written by a process that died before recording it (or,
        after a power cut, whose row was never flushed: see ``record_instance``).
        Whole either way: kept and recorded, as XNAT keeps whatever is in the folder.
        Files younger than ``settled`` seconds may still be recorded by their writer.
        A file whose SOP instance is already recorded under another name is an
        unacknowledged resend: removed.
        """
        folder = self.data.session_dir(session.name)
        known = {(record.scan, record.file_name) for record in recorded}
        recorded_uids = {record.sop_instance_uid for record in recorded}
        adopted: list[InstanceRecord] = []
        newest = time.time() - settled
        for path in layout.instance_files(folder, leave_out=known):
            if path.stat().st_mtime > newest:
                continue
            try:
                record = record_of_file(path)
            except UnparsableDicom as exc:
                log.warning("unrecorded_file_unreadable", path=str(path), error=str(exc))
                continue
            if record.sop_instance_uid in recorded_uids:
                path.unlink(missing_ok=True)
                log.warning("unrecorded_duplicate_removed", path=str(path))
                continue
            recorded_uids.add(record.sop_instance_uid)
            adopted.append(record)
        if adopted:
            self.index.adopt_instances(session.id, adopted)
        return adopted

    def remove_stray_parts(self, session: PrearchiveSession) -> list[Path]:
        """The session's abandoned temporary files (a writer killed before its rename):
        in its folder, and its document's beside the folder."""
        folder = self.data.session_dir(session.name)
        return remove_stray_parts(folder) + remove_stray_parts(folder.parent, recursive=False)

    def move_to_scan(
        self, session: PrearchiveSession, records: list[InstanceRecord], scan: str
    ) -> list[InstanceRecord]:
        """Move files to another scan folder (a duplicate series number got ``N-MR1``);
        returns the records of those moved, as they are now."""
        target = self.data.scan_dir(session.name, scan)
        makedirs_durable(target, self.data.prearchive)
        session_dir = self.data.session_dir(session.name)
        moved = []
        for record in records:
            source = session_dir / session_file(record.scan, record.file_name)
            if source.exists():
                os.replace(source, target / record.file_name)
                moved.append(record.sop_instance_uid)
        fsync_dir(target)
        self.index.move_instances_to_scan(session.id, moved, scan)
        done = set(moved)
        return [replace(r, scan=scan) for r in records if r.sop_instance_uid in done]

    def write_documents(self, session: PrearchiveSession, document: SessionDocument) -> None:
        """Write each scan's catalog, then ``LABEL.xml`` beside the session folder."""
        for scan in document.scans:
            path = self.data.session_dir(session.name) / scan.catalog_uri
            write_durably(path, catalog_xml(scan), self.data.prearchive)
        write_durably(
            self.data.session_document(session.name), session_xml(document), self.data.prearchive
        )

    def finish_build(
        self,
        session: PrearchiveSession,
        *,
        node: str,
        status: Status,
        reason: str | None = None,
        xsi_type: str | None = None,
        retry_at: float | None = None,
    ) -> bool:
        """End a build: BUILDING -> READY or ERROR; False when new files reopened the
        session meanwhile (``Index.finish_build``).
        """
        return self.index.finish_build(
            session.id,
            node=node,
            status=status,
            reason=reason,
            xsi_type=xsi_type,
            retry_at=retry_at,
        )
