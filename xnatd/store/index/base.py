"""The index interface: one set of calls that SQLite and PostgreSQL satisfy.

Every status change is a compare-and-set: it happens, or it is refused because the
session is no longer in a state that allows it. That is what lets the daemon, the
command line and another node act on one store. The values it takes and returns
are in ``records.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from xnatd.store.index.records import (
    ArchivedSession,
    ArchiveStatus,
    AuditEvent,
    Finding,
    InstanceRecord,
    PendingCommitment,
    PrearchiveSession,
    RecordResult,
    ScanRow,
    SessionFilter,
    SessionKey,
    Status,
    TakenDigest,
)
from xnatd.store.layout import PrearchiveName


class Index(abc.ABC):
    """The calls every index backend implements.

    A refused compare-and-set is a return value (False, None or the current status),
    never an exception; a failing database raises the backend's own error
    (``sqlite3.Error``, ``psycopg.Error``).
    """

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
        digests: Sequence[TakenDigest] = (),
    ) -> RecordResult:
        """Record a durably written file, with what the PHI check found in it (replacing
        what it found in an earlier copy of the same instance), in one transaction;
        ``association_id``, if given, comes to hold the session's idle timer. The same
        transaction fills in ``digests`` of files recorded before (``record_digests``).

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
    def quiet_sessions(
        self, *, now: float, quiet: float, limit: int = 16
    ) -> list[PrearchiveSession]:
        """RECEIVING sessions no file has reached for ``quiet`` seconds and no open
        association holds: their senders may be done, their build not due yet."""

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
    def record_digests(self, digests: Sequence[TakenDigest]) -> None:
        """Record MD5s taken as files were received, each only on a row that is still
        the one its file made (same ``received`` and ``size``) and has none yet. Not
        flushed: a digest a power cut loses is taken again from the file at the build."""

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
    def get_session(self, name: PrearchiveName) -> PrearchiveSession | None:
        """The prearchive session PROJECT/TIMESTAMP/LABEL, or None when there is none."""

    @abc.abstractmethod
    def list_sessions(
        self, *, project: str | None = None, status: str | None = None
    ) -> list[PrearchiveSession]:
        """Prearchive sessions, of one project and one status (any case) when given,
        ordered by project, timestamp and label.
        """

    @abc.abstractmethod
    def count_by_status(self) -> dict[str, int]:
        """The number of prearchive sessions in each status that has any."""

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
    ) -> None:
        """Record an open association on node (the same ID again renews it): sessions it
        delivers to wait for it to close or for ``lease_until`` to pass before they build.
        """

    @abc.abstractmethod
    def close_association(self, association_id: str) -> None:
        """Forget a closed association; the idle timers of the sessions it held run again."""

    @abc.abstractmethod
    def renew_leases(self, node: str, lease_until: float) -> None:
        """Extend the lease of every association open on node (the node is still alive)."""

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
    def archive_mode(self, session_id: int) -> str | None:
        """The overwrite mode the session's ARCHIVING claim was made with (None: no claim)."""

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
    def subject_id(self, project: str, label: str) -> str | None:
        """The accession ID of the subject project/label, or None when it has none yet."""

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
    def get_archived(self, session_id: str) -> ArchivedSession | None:
        """The archived session with this accession ID (deleted ones included), or None."""

    @abc.abstractmethod
    def list_archived(self, query: SessionFilter) -> list[ArchivedSession]:
        """Archived sessions matching every criterion the filter sets, ordered by ID."""

    @abc.abstractmethod
    def archived_instances(self, session_id: str) -> list[InstanceRecord]:
        """The files of an archived session, in the order they were received."""

    @abc.abstractmethod
    def archived_scans(self, session_id: str) -> list[ScanRow]:
        """The scans of an archived session (empty for an unknown ID)."""

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
    def set_autorun(self, session_id: str, results: list[dict[str, Any]]) -> None:
        """Record the results of the project's autorun steps for an archived session."""

    # -- reindex ---------------------------------------------------------------------
    @abc.abstractmethod
    def clear(self) -> None:
        """Remove every row (reindex rebuilds them from the data directory)."""

    @abc.abstractmethod
    def restore_prearchive(
        self, session: PrearchiveSession, instances: list[InstanceRecord]
    ) -> None:
        """Add a prearchive session and its files as found on disk (reindex); a new row ID."""

    @abc.abstractmethod
    def restore_subject(self, subject_id: str, project: str, label: str, created: float) -> None:
        """Add a subject with its accession ID as found on disk (kept if already there)."""

    @abc.abstractmethod
    def restore_audit(self, events: list[AuditEvent]) -> None:
        """Append events read back from the audit log (reindex), in their order."""

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
    def audit_events(self, session: str | None = None) -> list[AuditEvent]:
        """The audit trail, of one session when given (ID or prearchive name), oldest first."""

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
    def schema_version(self) -> int:
        """The schema version the index's tables are at (see ``schema.py``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of the hold and every connection; the index is unusable afterwards."""
