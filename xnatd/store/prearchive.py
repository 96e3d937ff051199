"""The durable write into the prearchive, and the prearchive's sessions.

A file is written to a temporary name beside its final one, flushed, renamed and its
folder flushed; only then is it recorded in the index. When this returns, the
instance survives a crash or power loss: that is when a C-STORE may say success.
(Its row is committed without waiting for the index's log to reach the disk; should
a power cut lose it, the session's build records the file again: adopt_unrecorded.)
A file received over DICOM is hashed after its response, and the digest recorded with
the association's next file (``AfterReplyDigests``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Protocol

import structlog

from xnatd.dicom import Header, Tag
from xnatd.payload import Payload
from xnatd.store import layout, sidecar
from xnatd.store.audit import AuditTrail
from xnatd.store.digests import AfterReplyDigests
from xnatd.store.durable import (
    remove_empty_parents,
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
)
from xnatd.store.layout import DataDir, session_file
from xnatd.store.session_files import SessionFiles, sidecar_values

log = structlog.get_logger(__name__)


class StoreRefused(Exception):
    """The file was not stored and the sender may retry (disk full, write failed)."""


class Destination(Protocol):
    """Where routing sent a file (``routing.Route``): the store needs only these."""

    @property
    def project(self) -> str:
        """The project ID, or Unassigned."""
        ...

    @property
    def subject(self) -> str:
        """The subject label."""
        ...

    @property
    def session(self) -> str:
        """The session label."""
        ...

    @property
    def auto_archive(self) -> bool | None:
        """What the sender's ``AA:`` said, if it said anything."""
        ...


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
    """One file written and recorded: its session, where it lies, whether it was new,
    and what is left to do once the sender has its answer (``afterwards``: the MD5)."""

    session: PrearchiveSession
    path: Path
    new_instance: bool
    record: InstanceRecord | None = None
    afterwards: Callable[[], None] | None = None


class Prearchive(SessionFiles):
    """The durable write into the prearchive: opening sessions, storing and recording
    each file, the associations that hold sessions open, and undoing an upload."""

    def __init__(
        self, data: DataDir, index: Index, audit: AuditTrail, *, min_free_disk: int
    ) -> None:
        super().__init__(data, index, audit)
        self.min_free_disk = min_free_disk

    def free_disk(self) -> int:
        """Bytes free for unprivileged writers on the data directory's file system."""
        stats = os.statvfs(self.data.root)
        return stats.f_bavail * stats.f_frsize

    def store(
        self,
        item: IncomingInstance,
        *,
        session: PrearchiveSession | None = None,
        digests: AfterReplyDigests | None = None,
    ) -> StoredInstance:
        """Write one instance durably and record it; ``session`` is a cached guess.

        With ``digests`` (an association's), a file held in memory is hashed by the
        returned ``afterwards``, to be called once the sender has its answer; the
        digests taken so far are recorded with this file's row.

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
        # A session the association's cache gave is one it delivered to already: its
        # hold on the session's idle timer is in the index (one statement less a file).
        holder = None if session is not None else item.association_id
        # Hashed from memory after the answer: the file's pages are let go once flushed.
        hashed = item.data if digests is not None and isinstance(item.data, bytes) else None
        for _attempt in range(3):
            if session is None:
                holder = item.association_id
                try:
                    session = self.open_session(item)
                except StoreRefused:
                    raise
                except Exception as exc:
                    raise StoreRefused(f"index unavailable: {exc}") from exc
            path = self.data.instance_path(session.name, scan, file_name)
            existed = path.exists()
            try:
                inode = write_durably(path, item.data, self.data.prearchive, cached=hashed is None)
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
                md5=PENDING_DIGEST,  # taken after the answer, or when the session is built
                received=time.time(),
                calling_ae=item.calling_ae,
            )
            findings = tuple(
                replace(f, scan=scan, file=file_name, sop_instance_uid=record.sop_instance_uid)
                for f in item.findings
            )
            # The association's earlier digests ride on this row's transaction. They
            # may be another session's rows; on PostgreSQL two associations resending
            # each other's instances at once could then deadlock, and the one aborted
            # is refused and sent again.
            taken = digests.drain() if digests is not None else []
            try:
                result = self.index.record_instance(
                    session.id, record, holder, time.time(), findings, taken
                )
            except SessionClosed:
                if digests is not None:
                    digests.give_back(taken)
                # Archiving or moving began meanwhile: this file starts a new session.
                if not existed:
                    path.unlink(missing_ok=True)
                session = None
                continue
            except Exception as exc:
                if digests is not None:
                    digests.give_back(taken)
                # Not recorded means not acknowledged: leave no file the index does not know.
                if not existed:
                    path.unlink(missing_ok=True)
                raise StoreRefused(f"index write failed: {exc}") from exc
            if result.replaced:
                # Same SOP instance sent again with another series/instance number.
                old = self.data.session_dir(session.name) / session_file(*result.replaced)
                old.unlink(missing_ok=True)
            afterwards = None
            if digests is not None and hashed is not None:
                afterwards = partial(digests.take, session.id, record, hashed, path, inode)
            return StoredInstance(
                session=session,
                path=path,
                new_instance=result.new_instance,
                record=record,
                afterwards=afterwards,
            )
        raise StoreRefused("the session kept closing while the file was being stored")

    def open_session(self, item: IncomingInstance) -> PrearchiveSession:
        """The session this file belongs to, opened (created or reopened) in the index,
        with its folder and sidecar."""
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
                sidecar.write(folder, sidecar_values(session), self.data.root)
            except OSError as exc:
                if self.index.delete_session_if_empty(session.id):
                    remove_empty_parents(folder, self.data.prearchive)
                raise StoreRefused(
                    f"cannot create session folder {folder}: {exc.strerror or exc}"
                ) from exc
        return session

    def senders(self, session: PrearchiveSession) -> list[str]:
        """The calling AE titles that sent the session's files."""
        return self.index.calling_aes(session.id)

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
        """Record an open association: while it lasts, the sessions it delivers to wait."""
        self.index.open_association(
            association_id,
            node=node,
            called_ae=called_ae,
            calling_ae=calling_ae,
            peer=peer,
            lease_until=time.time() + lease,
        )

    def association_closed(
        self, association_id: str, digests: AfterReplyDigests | None = None
    ) -> None:
        """Record the digests of its last files, then drop a closed association's row:
        its sessions' idle timers run again."""
        if digests is not None:
            try:
                digests.finish()
                self.index.record_digests(digests.drain())
            except Exception as exc:  # taken again when the session is built
                log.warning("digests_not_recorded", association=association_id, error=str(exc))
        self.index.close_association(association_id)

    def renew_leases(self, node: str, lease: float) -> None:
        """Extend this node's associations' hold for ``lease`` more seconds."""
        self.index.renew_leases(node, time.time() + lease)

    def forget_node(self, node: str) -> None:
        """At start: this node's associations and builds died with its last process."""
        self.index.drop_node_associations(node)
        self.index.release_claims(node)

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
