"""The durable write into the prearchive, and the prearchive's sessions.

A file is written to a temporary name beside its final one, flushed, renamed and its
folder flushed; only then is it recorded in the index. When this returns, the
instance survives a crash or power loss: that is when a C-STORE may say success.
(Its row is committed without waiting for the index's log to reach the disk; should
a power cut lose it, the session's build records the file again: adopt_unrecorded.)
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import structlog

from xnatd.dicom import INTAKE_TAGS, Header, Tag, UnparsableDicom, read_header
from xnatd.payload import Payload, file_payload, readable
from xnatd.store import layout, sidecar
from xnatd.store.audit import AuditTrail
from xnatd.store.digests import file_md5, files_md5, payload_md5
from xnatd.store.durable import (
    fsync_dir,
    makedirs_durable,
    remove_empty_parents,
    remove_stray_parts,
    write_durably,
)
from xnatd.store.index.base import Index
from xnatd.store.index.records import (
    PENDING_DIGEST,
    Finding,
    InstanceRecord,
    PrearchiveSession,
    SessionClosed,
    SessionKey,
    Status,
)
from xnatd.store.layout import DataDir, PrearchiveName, inside, session_file
from xnatd.store.xml import SessionDocument, catalog_xml, session_xml

log = structlog.get_logger(__name__)


ADOPT_AFTER = 1.0  # seconds: a writer records its file within milliseconds of naming it


class StoreRefused(Exception):
    """The file was not stored and the sender may retry (disk full, write failed)."""


class Destination(Protocol):
    """Where routing sent a file (``routing.Route``): the store needs only these."""

    @property
    def project(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def session(self) -> str: ...
    @property
    def auto_archive(self) -> bool | None: ...


@dataclass(frozen=True)
class IncomingInstance:
    """One routed file, framed as Part 10 bytes, on its way into the prearchive."""

    header: Header
    route: Destination
    data: Payload  # a large object stays on disk until it is written
    source: str  # receiving AE title, or "import"
    calling_ae: str | None = None
    association_id: str | None = None
    # What the PHI check found after the site script (scan, file and SOP instance are
    # filled in here, where the file is named).
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class StoredInstance:
    session: PrearchiveSession
    path: Path
    new_instance: bool
    record: InstanceRecord | None = None


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


class Prearchive:
    """Sessions waiting for review: the durable write and the session rows behind it."""

    def __init__(
        self, data: DataDir, index: Index, audit: AuditTrail, *, min_free_disk: int
    ) -> None:
        self.data = data
        self.index = index
        self.audit_trail = audit
        self.min_free_disk = min_free_disk

    def free_disk(self) -> int:
        stats = os.statvfs(self.data.root)
        return stats.f_bavail * stats.f_frsize

    def store(
        self, item: IncomingInstance, *, session: PrearchiveSession | None = None
    ) -> StoredInstance:
        """Write one instance durably and record it; ``session`` is a cached guess.

        Raises:
            StoreRefused: low disk or a failed write; nothing was kept.
        """
        if self.free_disk() - len(item.data) < self.min_free_disk:
            raise StoreRefused(
                f"free disk below site.min_free_disk ({self.min_free_disk} bytes) in "
                f"{self.data.root}"
            )
        header = item.header
        scan = layout.scan_name(header)
        file_name = layout.instance_file_name(header)
        for _attempt in range(3):
            if session is None:
                try:
                    session = self.open_session(item)
                except StoreRefused:
                    raise
                except Exception as exc:
                    raise StoreRefused(f"index unavailable: {exc}") from exc
            path = self.data.instance_path(session.name, scan, file_name)
            existed = path.exists()
            try:
                write_durably(path, item.data, self.data.prearchive)
            except OSError as exc:
                raise StoreRefused(f"cannot write {path}: {exc.strerror or exc}") from exc
            record = InstanceRecord(
                sop_instance_uid=header[Tag.SOPInstanceUID],
                sop_class_uid=header[Tag.SOPClassUID],
                series_uid=header.get(Tag.SeriesInstanceUID, ""),
                series_number=header.get(Tag.SeriesNumber, ""),
                instance_number=header.get(Tag.InstanceNumber, ""),
                modality=header.get(Tag.Modality, ""),
                scan=scan,
                file_name=file_name,
                size=len(item.data),
                md5=PENDING_DIGEST,  # taken when the session is built: off this thread
                received=time.time(),
                calling_ae=item.calling_ae,
            )
            findings = tuple(
                replace(f, scan=scan, file=file_name, sop_instance_uid=record.sop_instance_uid)
                for f in item.findings
            )
            try:
                result = self.index.record_instance(
                    session.id, record, item.association_id, time.time(), findings
                )
            except SessionClosed:
                # Archiving or moving began meanwhile: this file starts a new session.
                if not existed:
                    path.unlink(missing_ok=True)
                session = None
                continue
            except Exception as exc:
                # Not recorded means not acknowledged: leave no file the index does not know.
                if not existed:
                    path.unlink(missing_ok=True)
                raise StoreRefused(f"index write failed: {exc}") from exc
            if result.replaced:
                # Same SOP instance sent again with another series/instance number.
                old = self.data.session_dir(session.name) / session_file(*result.replaced)
                old.unlink(missing_ok=True)
            return StoredInstance(
                session=session, path=path, new_instance=result.new_instance, record=record
            )
        raise StoreRefused("the session kept closing while the file was being stored")

    def open_session(self, item: IncomingInstance) -> PrearchiveSession:
        route = item.route
        session = self.index.open_session(
            SessionKey(route.project, item.header.get(Tag.StudyInstanceUID, ""), route.session),
            subject=route.subject,
            auto_archive=route.auto_archive,
            source=item.source,
            timestamp=layout.timestamp(),
            now=time.time(),
            association_id=item.association_id,
        )
        if session.files == 0:
            # New (or still empty): record the routing decisions reindex cannot re-derive.
            # The row and the folder exist together or not at all: a row whose folder
            # cannot be made would only ever become an ERROR session without files.
            folder = self.data.session_dir(session.name)
            try:
                sidecar.write(folder, _sidecar(session), self.data.root)
            except OSError as exc:
                if self.index.delete_session_if_empty(session.id):
                    remove_empty_parents(folder, self.data.prearchive)
                raise StoreRefused(
                    f"cannot create session folder {folder}: {exc.strerror or exc}"
                ) from exc
        return session

    def session_dir(self, name: PrearchiveName) -> Path:
        return self.data.session_dir(name)

    def senders(self, session: PrearchiveSession) -> list[str]:
        """The calling AE titles that sent the session's files."""
        return self.index.calling_aes(session.id)

    def findings(self, session: PrearchiveSession) -> list[Finding]:
        """What the PHI check found in the session's files."""
        return self.index.findings(session.id)

    def record_findings(
        self, session: PrearchiveSession, stage: str, findings: list[Finding]
    ) -> None:
        """Replace what one stage of the PHI check found in the session."""
        self.index.replace_findings(session.id, stage, findings)

    # -- what the assembler uses ---------------------------------------------------
    def claim_idle_sessions(
        self, *, idle_timeout: float, node: str, lease: float
    ) -> list[PrearchiveSession]:
        return self.index.claim_idle_sessions(
            now=time.time(), idle_timeout=idle_timeout, node=node, lease=lease
        )

    def instances(self, session: PrearchiveSession) -> list[InstanceRecord]:
        """The session's records as the index holds them (a read, nothing more: a
        digest not taken yet is ``PENDING_DIGEST``; ``take_digests`` takes it)."""
        return self.index.instances(session.id)

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

    def replace_file(self, session: PrearchiveSession, record: InstanceRecord, data: bytes) -> None:
        """Write a new version of one recorded file durably in its place, and record its
        size (its digest is taken again at the next build)."""
        write_durably(self.instance_file(session, record), data, self.data.prearchive)
        records = [
            replace(r, size=len(data), md5=PENDING_DIGEST)
            if r.sop_instance_uid == record.sop_instance_uid
            else r
            for r in self.index.instances(session.id)
        ]
        self.index.replace_instances(session.id, records)

    def instance_file(self, session: PrearchiveSession, record: InstanceRecord) -> Path:
        """Where one recorded file of a session lies (for a check that reads pixels)."""
        return self.data.session_dir(session.name) / session_file(record.scan, record.file_name)

    def remove_stray_parts(self, session: PrearchiveSession) -> list[Path]:
        """The session's abandoned temporary files (a writer killed before its rename):
        in its folder, and its document's beside the folder."""
        folder = self.data.session_dir(session.name)
        return remove_stray_parts(folder) + remove_stray_parts(folder.parent, recursive=False)

    def read_instance_header(
        self, session: PrearchiveSession, record: InstanceRecord, tags: frozenset[int]
    ) -> dict[int, str]:
        """Header of one stored file (UnparsableDicom if it was damaged on disk)."""
        return read_header(
            str(self.data.session_dir(session.name) / session_file(record.scan, record.file_name)),
            tags,
        )

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
        return self.index.finish_build(
            session.id,
            node=node,
            status=status,
            reason=reason,
            xsi_type=xsi_type,
            retry_at=retry_at,
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

    # -- associations: while one is open, its sessions' idle timers wait ---------
    def association_opened(
        self,
        association_id: str,
        *,
        node: str,
        called_ae: str,
        calling_ae: str,
        peer: str,
        lease: float,
    ) -> None:
        self.index.open_association(
            association_id,
            node=node,
            called_ae=called_ae,
            calling_ae=calling_ae,
            peer=peer,
            lease_until=time.time() + lease,
        )

    def association_closed(self, association_id: str) -> None:
        self.index.close_association(association_id)

    def renew_leases(self, node: str, lease: float) -> None:
        self.index.renew_leases(node, time.time() + lease)

    def forget_node(self, node: str) -> None:
        """At start: this node's associations and builds died with its last process."""
        self.index.drop_node_associations(node)
        self.index.release_claims(node)

    def audit(
        self, event: str, *, actor: str | None, session: str | None, **details: object
    ) -> None:
        self.audit_trail.record(event, actor=actor, session=session, **details)

    # -- operations ----------------------------------------------------------------
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
        values = sidecar.read(target_dir) or _sidecar(session)
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
        values = sidecar.read(folder) or _sidecar(session)
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

    def roll_back(
        self, written: list[tuple[PrearchiveSession, InstanceRecord]], created: set[int]
    ) -> tuple[int, list[str]]:
        """Remove exactly these instances (an upload that failed wrote them): each row
        that is still the one written, and its file; then each session in ``created``
        left without a file. Instances others sent meanwhile, to these sessions or any
        other, stay. Returns how many instances went and the sessions that went."""
        removed = 0
        by_session: dict[int, tuple[PrearchiveSession, list[InstanceRecord]]] = {}
        for session, record in written:
            by_session.setdefault(session.id, (session, []))[1].append(record)
        for session, records in by_session.values():
            gone = self.index.forget_instances(
                session.id, [(r.sop_instance_uid, r.received) for r in records]
            )
            folder = self.data.session_dir(session.name)
            for record in records:
                if record.sop_instance_uid in gone:
                    (folder / session_file(record.scan, record.file_name)).unlink(missing_ok=True)
                    removed += 1
        discarded = []
        for session, _ in by_session.values():
            if session.id in created and self.discard_if_empty(session):
                discarded.append(str(session.name))
        return removed, discarded

    def discard_session(self, session: PrearchiveSession) -> None:
        """Forget a session an aborted upload created: never acknowledged, so not kept."""
        self.index.delete_session(session.id)
        self.discard_folder(session)

    def discard_folder(self, session: PrearchiveSession) -> None:
        """After archiving: remove what is left of the prearchive session's folder."""
        folder = self.data.session_dir(session.name)
        if folder.exists():
            shutil.rmtree(folder)
        self.data.session_document(session.name).unlink(missing_ok=True)
        remove_empty_parents(folder.parent, self.data.prearchive)


def _sidecar(session: PrearchiveSession) -> dict[str, object]:
    return {
        "project": session.project,
        "subject": session.subject,
        "study_uid": session.study_uid,
        "auto_archive": session.auto_archive,
        "source": session.source,
        "created": session.created,
    }
