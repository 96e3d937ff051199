"""The index interface: one set of calls that SQLite (and later PostgreSQL) satisfy.

Every status change is a compare-and-set: it happens, or it is refused because the
session is no longer in a state that allows it. That is what lets the daemon, the
command line and another node act on one store.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from xnatd.store.layout import PrearchiveName

SCHEMA_VERSION = 6


class Status(StrEnum):
    RECEIVING = "RECEIVING"
    BUILDING = "BUILDING"
    READY = "READY"
    HELD = "HELD"  # built, with possible patient information found (SPEC 10.2)
    ARCHIVING = "ARCHIVING"
    MOVING = "MOVING"
    DELETING = "DELETING"
    CONFLICT = "CONFLICT"
    ERROR = "ERROR"


# The MD5 of a received file is taken when its session is built, not on the receiving
# thread: at four associations hashing was a sixth of the receiver's CPU (issue 5).
PENDING_DIGEST = ""

# New files join a session in these states (reopening it); in any other state
# (ARCHIVING, MOVING, DELETING) they start a new prearchive session.
ACCEPTS_FILES = frozenset(
    {Status.RECEIVING, Status.BUILDING, Status.READY, Status.HELD, Status.CONFLICT, Status.ERROR}
)


class ArchiveStatus(StrEnum):
    ACTIVE = "active"
    QUARANTINE = "quarantine"
    DELETED = "deleted"


@dataclass(frozen=True)
class PendingCommitment:
    """A Storage Commitment request (SPEC 10.4) whose N-EVENT-REPORT is still owed."""

    transaction_uid: str
    calling_ae: str  # the requester, who gets the report
    called_ae: str  # the receiver it asked, which sends it
    mode: str  # durable | archived
    instances: tuple[tuple[str, str], ...]  # (SOP Class UID, SOP Instance UID)
    requested: float
    attempts: int = 0


class SessionClosed(Exception):
    """The session stopped accepting files between lookup and record; open another."""


@dataclass(frozen=True)
class SessionKey:
    """Files are grouped by (project, Study Instance UID, session label)."""

    project: str
    study_uid: str
    label: str


@dataclass(frozen=True)
class PrearchiveSession:
    id: int
    project: str
    timestamp: str
    label: str
    subject: str
    study_uid: str
    status: Status
    reason: str | None
    auto_archive: bool | None
    source: str | None
    scans: int
    files: int
    bytes: int
    created: float
    last_modified: float
    xsi_type: str | None = None
    build_attempts: int = 0  # failed builds in a row that may succeed when retried
    retry_at: float | None = None  # when the next of them is due (an ERROR session)

    @property
    def name(self) -> PrearchiveName:
        return PrearchiveName(self.project, self.timestamp, self.label)


@dataclass(frozen=True)
class InstanceRecord:
    """One stored file of a prearchive session."""

    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    series_number: str
    instance_number: str
    modality: str
    scan: str
    file_name: str
    size: int
    md5: str  # PENDING_DIGEST until the session is built (``Prearchive.instances``)
    received: float
    calling_ae: str | None = None

    @property
    def relative_path(self) -> str:
        return f"SCANS/{self.scan}/DICOM/{self.file_name}"


@dataclass(frozen=True)
class ScanRow:
    """One archived scan, for search by type and series description."""

    scan: str
    series_uid: str
    type: str | None
    series_description: str | None
    modality: str | None
    files: int


@dataclass(frozen=True)
class ArchivedSession:
    id: str  # SITE_E00001
    project: str
    subject_id: str  # SITE_S00001
    subject: str  # the subject's label
    label: str
    study_uid: str
    xsi_type: str
    modality: str | None
    date: str | None  # YYYY-MM-DD
    status: ArchiveStatus
    path: str  # relative to the data directory
    archived: float
    modified: float
    scans: int = 0
    files: int = 0
    bytes: int = 0
    autorun: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SessionFilter:
    project: str | None = None
    subject: str | None = None  # label or accession ID
    label: str | None = None
    modality: str | None = None
    since: str | None = None  # YYYY-MM-DD, on the session date
    until: str | None = None
    study_uid: str | None = None
    scan_type: str | None = None  # matches scan type or series description, any case
    statuses: tuple[ArchiveStatus, ...] = (ArchiveStatus.ACTIVE, ArchiveStatus.QUARANTINE)


@dataclass(frozen=True)
class RecordResult:
    """What recording an instance changed."""

    new_instance: bool
    replaced_path: str | None  # an earlier file of the same SOP instance, now unused


@dataclass(frozen=True)
class Finding:
    """Possible patient information in one file (SPEC 10.2); never the value itself."""

    kind: str  # "header" or "pixels"
    scan: str
    file: str  # the file's name in its scan folder
    where: str  # a tag path "(0040,A730)[0]/(0040,A160)", or a pixel region and frame
    what: str  # what kind of value: "patient name", "birth date", ...
    sop_instance_uid: str = ""
    stage: str = "receive"  # where the check ran: receive (site script), archive, build


@dataclass(frozen=True)
class AuditEvent:
    id: int
    time: float
    event: str
    actor: str | None
    session: str | None
    details: dict[str, Any]


class Index(abc.ABC):
    """The calls every index backend implements."""

    # -- prearchive sessions -------------------------------------------------
    @abc.abstractmethod
    def open_session(
        self,
        key: SessionKey,
        *,
        subject: str,
        auto_archive: bool | None,
        source: str | None,
        timestamp: str,
        now: float,
        association_id: str | None = None,
    ) -> PrearchiveSession:
        """Find the session that accepts files for key and mark it RECEIVING, or create one.

        With ``association_id`` (an open association or import about to write its first
        file here) the session's idle timer waits for it from now on, not only from its
        first recorded file: a large file may take longer to write than the timeout.
        """

    @abc.abstractmethod
    def record_instance(
        self,
        session_id: int,
        record: InstanceRecord,
        association_id: str | None,
        now: float,
        findings: Sequence[Finding] = (),
    ) -> RecordResult:
        """Record a durably written file, with what the PHI check found in it (replacing
        what it found in an earlier copy of the same instance), in one transaction.

        Raises:
            SessionClosed: the session no longer accepts files.
        """

    @abc.abstractmethod
    def calling_aes(self, session_id: int) -> list[str]:
        """The calling AE titles that sent the session's files (empty for imports)."""

    @abc.abstractmethod
    def findings(self, session_id: int) -> list[Finding]:
        """The PHI check's findings for a prearchive session, by scan and file."""

    @abc.abstractmethod
    def replace_findings(self, session_id: int, stage: str, findings: Sequence[Finding]) -> None:
        """Replace every finding one stage of the check made (the check run again)."""

    @abc.abstractmethod
    def claim_idle_sessions(
        self, *, now: float, idle_timeout: float, node: str, lease: float, limit: int = 16
    ) -> list[PrearchiveSession]:
        """Move idle sessions with no open delivering association to BUILDING, for node;
        and ERROR sessions whose retry is due."""

    @abc.abstractmethod
    def finish_build(
        self,
        session_id: int,
        *,
        node: str,
        status: Status,
        reason: str | None,
        xsi_type: str | None,
        retry_at: float | None = None,
    ) -> bool:
        """BUILDING (claimed by node) -> READY or ERROR; False when files reopened it.

        ``retry_at``: an ERROR that may pass (no space, an I/O error): the session is
        claimed again from that time and its ``build_attempts`` counts one more; without
        it the count starts again from zero.
        """

    @abc.abstractmethod
    def release_claims(self, node: str) -> int:
        """Return sessions node was building to RECEIVING (shutdown); their timers resume."""

    @abc.abstractmethod
    def delete_session_if_empty(self, session_id: int) -> bool:
        """Remove a session row that never received a file."""

    @abc.abstractmethod
    def instances(self, session_id: int) -> list[InstanceRecord]:
        """Every recorded file of the session."""

    @abc.abstractmethod
    def set_digests(self, session_id: int, digests: list[tuple[str, float, str]]) -> None:
        """Record (SOP Instance UID, received, MD5) for rows still without a digest;
        a row replaced since (another ``received``) keeps waiting for its own."""

    @abc.abstractmethod
    def forget_instances(self, session_id: int, written: list[tuple[str, float]]) -> set[str]:
        """Remove the rows (SOP Instance UID, received) that are still as written (a
        later write of the same instance has another ``received`` and stays); returns
        the UIDs removed. The session's counts follow; its status stays."""

    @abc.abstractmethod
    def adopt_instances(self, session_id: int, records: list[InstanceRecord]) -> None:
        """Record files found in the session's folder without rows; its status stays."""

    @abc.abstractmethod
    def replace_instances(self, session_id: int, records: list[InstanceRecord]) -> None:
        """The session's files after they were rewritten (project anonymization)."""

    @abc.abstractmethod
    def move_instances_to_scan(self, session_id: int, sop_uids: list[str], scan: str) -> None:
        """Record that these instances now live under another scan folder."""

    @abc.abstractmethod
    def get_session(self, name: PrearchiveName) -> PrearchiveSession | None: ...

    @abc.abstractmethod
    def list_sessions(
        self, *, project: str | None = None, status: str | None = None
    ) -> list[PrearchiveSession]: ...

    @abc.abstractmethod
    def count_by_status(self) -> dict[str, int]: ...

    # -- associations (the idle timer waits while one is open) ---------------
    @abc.abstractmethod
    def open_association(
        self,
        association_id: str,
        *,
        node: str,
        called_ae: str,
        calling_ae: str,
        peer: str,
        lease_until: float,
    ) -> None: ...

    @abc.abstractmethod
    def close_association(self, association_id: str) -> None: ...

    @abc.abstractmethod
    def renew_leases(self, node: str, lease_until: float) -> None: ...

    @abc.abstractmethod
    def drop_node_associations(self, node: str) -> int:
        """Forget a node's associations (they died with its previous process)."""

    # -- operations on prearchive sessions (each a compare-and-set) -----------
    @abc.abstractmethod
    def claim_session(
        self,
        name: PrearchiveName,
        *,
        allowed: frozenset[Status],
        to: Status,
        node: str,
        lease: float,
        now: float,
        archive_mode: str | None = None,
    ) -> PrearchiveSession | Status | None:
        """Move a session from one of ``allowed`` to ``to`` for node.

        Returns the claimed session, or its current status when refused, or None when
        there is no such session.
        """

    @abc.abstractmethod
    def claim_stale_archives(
        self, *, now: float, node: str, lease: float
    ) -> list[PrearchiveSession]:
        """ARCHIVING sessions whose claim expired (their process died), now claimed by node."""

    @abc.abstractmethod
    def archive_mode(self, session_id: int) -> str | None: ...

    @abc.abstractmethod
    def set_status(
        self, session_id: int, *, expected: Status, to: Status, reason: str | None = None
    ) -> bool:
        """Compare-and-set a prearchive status (e.g. ARCHIVING -> CONFLICT with its reason)."""

    @abc.abstractmethod
    def relocate_session(self, session_id: int, *, project: str, timestamp: str) -> None:
        """A moved session's new project and timestamp (its files moved with it)."""

    @abc.abstractmethod
    def delete_session(self, session_id: int) -> None:
        """Forget a prearchive session and its instance rows."""

    # -- the archive ---------------------------------------------------------------
    @abc.abstractmethod
    def subject_id(self, project: str, label: str) -> str | None: ...

    @abc.abstractmethod
    def create_subject(
        self, project: str, label: str, *, prefix: str, now: float
    ) -> tuple[str, bool]:
        """The subject's accession ID, allocating one the first time; (id, created)."""

    @abc.abstractmethod
    def allocate_id(self, kind: str, prefix: str) -> str:
        """A new accession ID ``PREFIX_K00001``; never handed out twice, deleted ones included."""

    @abc.abstractmethod
    def find_archived(self, project: str, label: str) -> ArchivedSession | None:
        """The session holding project/label (deleted ones included, newest first)."""

    @abc.abstractmethod
    def get_archived(self, session_id: str) -> ArchivedSession | None: ...

    @abc.abstractmethod
    def list_archived(self, query: SessionFilter) -> list[ArchivedSession]: ...

    @abc.abstractmethod
    def archived_instances(self, session_id: str) -> list[InstanceRecord]: ...

    @abc.abstractmethod
    def archived_scans(self, session_id: str) -> list[ScanRow]: ...

    @abc.abstractmethod
    def commit_archive(
        self,
        session: ArchivedSession,
        instances: list[InstanceRecord],
        scans: list[ScanRow],
        *,
        prearchive_id: int | None,
    ) -> None:
        """In one transaction: the archived session's rows replace what it had, and the
        prearchive session it came from is gone."""

    @abc.abstractmethod
    def set_archive_status(
        self,
        session_id: str,
        *,
        expected: frozenset[ArchiveStatus],
        to: ArchiveStatus,
        path: str | None = None,
        now: float,
    ) -> ArchivedSession | ArchiveStatus | None:
        """Compare-and-set an archived session's status; the updated row, or the current
        status when refused, or None when there is no such session."""

    @abc.abstractmethod
    def set_autorun(self, session_id: str, results: list[dict[str, Any]]) -> None: ...

    # -- reindex ---------------------------------------------------------------------
    @abc.abstractmethod
    def clear(self) -> None:
        """Remove every row (reindex rebuilds them from the data directory)."""

    @abc.abstractmethod
    def restore_prearchive(
        self, session: PrearchiveSession, instances: list[InstanceRecord]
    ) -> None: ...

    @abc.abstractmethod
    def restore_subject(
        self, subject_id: str, project: str, label: str, created: float
    ) -> None: ...

    @abc.abstractmethod
    def restore_audit(self, events: list[AuditEvent]) -> None: ...

    @abc.abstractmethod
    def raise_id_floor(self, kind: str, number: int) -> None:
        """Make sure the next ``kind`` ID is above number."""

    # -- audit -------------------------------------------------------------------
    @abc.abstractmethod
    def audit(
        self,
        event: str,
        *,
        actor: str | None,
        session: str | None,
        details: dict[str, Any],
        now: float,
    ) -> None:
        """Append an event; the trail is never edited."""

    @abc.abstractmethod
    def audit_events(self, session: str | None = None) -> list[AuditEvent]: ...

    # -- storage commitment ------------------------------------------------------
    @abc.abstractmethod
    def add_commitment(self, commitment: PendingCommitment, *, next_try: float) -> None:
        """Keep a request until its report is sent (a repeated Transaction UID replaces)."""

    @abc.abstractmethod
    def claim_commitments(self, *, now: float, node: str, lease: float) -> list[PendingCommitment]:
        """Requests due a look, claimed for ``lease`` seconds so one node sends each."""

    @abc.abstractmethod
    def finish_commitment(self, transaction_uid: str) -> None:
        """The report was delivered: forget the request."""

    @abc.abstractmethod
    def retry_commitment(self, transaction_uid: str, *, next_try: float) -> None:
        """Not yet: let go of the claim and look again at ``next_try``."""

    @abc.abstractmethod
    def held_instances(self, sop_instance_uids: list[str]) -> dict[str, tuple[str, bool]]:
        """Of these UIDs, those xnatd holds: (SOP Class UID, archived) for each."""

    # -- receipts ----------------------------------------------------------------
    @abc.abstractmethod
    def received_instances(self, *, calling_ae: str | None, since: float) -> list[dict[str, Any]]:
        """Instances received since ``since`` (from ``calling_ae``, or anyone), where they
        are now: calling_ae, sop_instance_uid, received, place (prearchive or archive),
        session (prearchive PROJECT/TIMESTAMP/LABEL or the archived session's ID),
        project, label, status."""

    @abc.abstractmethod
    def audit_events_since(
        self, events: tuple[str, ...], *, since: float, actor: str | None
    ) -> list[AuditEvent]:
        """Events of these kinds since ``since``, by ``actor`` (or anyone)."""

    # -- who holds the index ---------------------------------------------------------
    @abc.abstractmethod
    def hold(self, *, exclusive: bool) -> bool:
        """Hold the index until ``close`` (or this process dies): shared by each running
        daemon, exclusive by ``reindex``. False, holding nothing, when it is held the
        other way. The lock dies with its holder (a file lock, a PostgreSQL session's
        advisory lock), so a killed daemon never leaves it behind."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...
