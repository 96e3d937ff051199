"""The index's SQL, shared by SQLite and PostgreSQL: one text, small dialect hooks.

Writes run inside one transaction each (``_write``); a compare-and-set is an UPDATE
guarded by the status it expects, and the rows a decision reads are locked first
(``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from xnatd.store.index.base import (
    ACCEPTS_FILES,
    PENDING_DIGEST,
    SCHEMA_VERSION,
    ArchivedSession,
    ArchiveStatus,
    AuditEvent,
    Finding,
    Index,
    InstanceRecord,
    PendingCommitment,
    PrearchiveSession,
    RecordResult,
    ScanRow,
    SessionClosed,
    SessionFilter,
    SessionKey,
    Status,
)
from xnatd.store.layout import PrearchiveName, next_timestamp

# One schema for both backends. Each entry moves it from version N to N+1; never edit
# a released one. {serial}, {real} and {big} are filled with each dialect's types.
SCHEMA: list[str] = [
    """
    CREATE TABLE prearchive (
        id {serial},
        project TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        label TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        study_uid TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        auto_archive INTEGER,
        source TEXT,
        files {big} NOT NULL DEFAULT 0,
        bytes {big} NOT NULL DEFAULT 0,
        created {real} NOT NULL,
        last_modified {real} NOT NULL,
        claimed_by TEXT,
        claim_until {real},
        xsi_type TEXT,
        UNIQUE (project, timestamp, label)
    );
    CREATE INDEX prearchive_key ON prearchive (project, study_uid, label);
    CREATE INDEX prearchive_status ON prearchive (status, last_modified);
    CREATE TABLE instances (
        session_id {big} NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        series_number TEXT NOT NULL,
        instance_number TEXT NOT NULL,
        modality TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        size {big} NOT NULL,
        md5 TEXT NOT NULL,
        received {real} NOT NULL,
        calling_ae TEXT,
        PRIMARY KEY (session_id, sop_instance_uid)
    );
    CREATE TABLE associations (
        id TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        called_ae TEXT,
        calling_ae TEXT,
        peer TEXT,
        opened {real} NOT NULL,
        lease_until {real} NOT NULL
    );
    CREATE TABLE association_sessions (
        association_id TEXT NOT NULL REFERENCES associations (id) ON DELETE CASCADE,
        session_id {big} NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        PRIMARY KEY (association_id, session_id)
    );
    CREATE INDEX association_sessions_session ON association_sessions (session_id);
    CREATE TABLE audit (
        id {serial},
        time {real} NOT NULL,
        event TEXT NOT NULL,
        actor TEXT,
        session TEXT,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_session ON audit (session);
    """,
    """
    ALTER TABLE prearchive ADD COLUMN archive_mode TEXT;
    CREATE TABLE subjects (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        label TEXT NOT NULL,
        created {real} NOT NULL,
        UNIQUE (project, label)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        subject_id TEXT NOT NULL REFERENCES subjects (id),
        label TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        xsi_type TEXT NOT NULL,
        modality TEXT,
        date TEXT,
        status TEXT NOT NULL,
        path TEXT NOT NULL,
        archived {real} NOT NULL,
        modified {real} NOT NULL,
        autorun TEXT NOT NULL DEFAULT '[]'
    );
    CREATE UNIQUE INDEX sessions_live_label ON sessions (project, label)
        WHERE status != 'deleted';
    CREATE INDEX sessions_study ON sessions (study_uid);
    CREATE INDEX sessions_subject ON sessions (subject_id);
    CREATE TABLE archive_instances (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        series_number TEXT NOT NULL,
        instance_number TEXT NOT NULL,
        modality TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        size {big} NOT NULL,
        md5 TEXT NOT NULL,
        received {real} NOT NULL,
        calling_ae TEXT,
        PRIMARY KEY (session_id, sop_instance_uid)
    );
    CREATE TABLE archive_scans (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        scan TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        type TEXT,
        series_description TEXT,
        modality TEXT,
        files {big} NOT NULL,
        PRIMARY KEY (session_id, scan)
    );
    CREATE TABLE id_counters (kind TEXT PRIMARY KEY, last {big} NOT NULL)
    """,
    """
    CREATE INDEX sessions_label ON sessions (label);
    CREATE INDEX sessions_date ON sessions (date);
    CREATE INDEX subjects_label ON subjects (label)
    """,
    """
    CREATE TABLE findings (
        session_id {big} NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        kind TEXT NOT NULL,
        stage TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        location TEXT NOT NULL,
        what TEXT NOT NULL
    );
    CREATE INDEX findings_session ON findings (session_id, sop_instance_uid)
    """,
    """
    CREATE TABLE commitments (
        transaction_uid TEXT PRIMARY KEY,
        calling_ae TEXT NOT NULL,
        called_ae TEXT NOT NULL,
        mode TEXT NOT NULL,
        instances TEXT NOT NULL,
        requested {real} NOT NULL,
        next_try {real} NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT,
        claim_until {real}
    );
    CREATE INDEX instances_sop ON instances (sop_instance_uid);
    CREATE INDEX archive_instances_sop ON archive_instances (sop_instance_uid)
    """,
    """
    ALTER TABLE prearchive ADD COLUMN build_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE prearchive ADD COLUMN retry_at {real}
    """,
]
assert len(SCHEMA) == SCHEMA_VERSION


def _insert_findings(connection: Any, session_id: int, findings: Sequence[Finding]) -> None:
    for finding in findings:
        connection.execute(
            "INSERT INTO findings (session_id, sop_instance_uid, kind, stage, scan, file_name,"
            " location, what) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, finding.sop_instance_uid, finding.kind, finding.stage, finding.scan,
             finding.file, finding.where, finding.what),
        )  # fmt: skip


_SESSION_COLUMNS = (
    "id, project, timestamp, label, subject, study_uid, status, reason, auto_archive, source,"
    " (SELECT COUNT(DISTINCT scan) FROM instances i WHERE i.session_id = p.id) AS scans,"
    " files, bytes, created, last_modified, xsi_type, build_attempts, retry_at"
)


_ARCHIVED_COLUMNS = (
    "s.id, s.project, s.subject_id, j.label AS subject, s.label, s.study_uid, s.xsi_type,"
    " s.modality, s.date, s.status, s.path, s.archived, s.modified, s.autorun,"
    " (SELECT COUNT(*) FROM archive_scans c WHERE c.session_id = s.id) AS scans,"
    " (SELECT COUNT(*) FROM archive_instances i WHERE i.session_id = s.id) AS files,"
    " (SELECT COALESCE(SUM(size), 0) FROM archive_instances i WHERE i.session_id = s.id)"
    " AS bytes FROM sessions s JOIN subjects j ON j.id = s.subject_id"
)
_INSTANCE_COLUMNS = (
    "sop_instance_uid, sop_class_uid, series_uid, series_number, instance_number, modality,"
    " scan, file_name, size, md5, received, calling_ae"
)


# An open association (or import) delivering to a session holds its idle timer.
_HOLD_SESSION = (
    "INSERT INTO association_sessions (association_id, session_id)"
    " SELECT ?, ? WHERE EXISTS (SELECT 1 FROM associations WHERE id = ?)"
    " ON CONFLICT DO NOTHING"
)
_INSERT_INSTANCE = (
    f"INSERT INTO instances (session_id, {_INSTANCE_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_INSTANCE = (
    _INSERT_INSTANCE
    + " ON CONFLICT (session_id, sop_instance_uid) DO UPDATE SET"
    + ",".join(
        f" {column} = excluded.{column}"
        for column in (
            "sop_class_uid",
            "series_uid",
            "series_number",
            "instance_number",
            "modality",
            "scan",
            "file_name",
            "size",
            "md5",
            "received",
            "calling_ae",
        )
    )
)


def _names(cursor: Any) -> list[str]:
    return [getattr(column, "name", None) or column[0] for column in cursor.description]


def _archived(row: dict[str, Any]) -> ArchivedSession:
    return ArchivedSession(
        id=row["id"],
        project=row["project"],
        subject_id=row["subject_id"],
        subject=row["subject"],
        label=row["label"],
        study_uid=row["study_uid"],
        xsi_type=row["xsi_type"],
        modality=row["modality"],
        date=row["date"],
        status=ArchiveStatus(row["status"]),
        path=row["path"],
        archived=row["archived"],
        modified=row["modified"],
        scans=row["scans"],
        files=row["files"],
        bytes=row["bytes"],
        autorun=tuple(json.loads(row["autorun"] or "[]")),
    )


def _instance_values(owner: object, record: InstanceRecord) -> tuple[Any, ...]:
    return (
        owner,
        record.sop_instance_uid,
        record.sop_class_uid,
        record.series_uid,
        record.series_number,
        record.instance_number,
        record.modality,
        record.scan,
        record.file_name,
        record.size,
        record.md5,
        record.received,
        record.calling_ae,
    )


def _session(row: dict[str, Any]) -> PrearchiveSession:
    auto = row["auto_archive"]
    return PrearchiveSession(
        id=row["id"],
        project=row["project"],
        timestamp=row["timestamp"],
        label=row["label"],
        subject=row["subject"],
        study_uid=row["study_uid"],
        status=Status(row["status"]),
        reason=row["reason"],
        auto_archive=None if auto is None else bool(auto),
        source=row["source"],
        scans=row["scans"],
        files=row["files"],
        bytes=row["bytes"],
        created=row["created"],
        last_modified=row["last_modified"],
        xsi_type=row["xsi_type"],
        build_attempts=row["build_attempts"],
        retry_at=row["retry_at"],
    )


class SqlIndex(Index):
    """Every index call, in SQL both backends run."""

    FOR_UPDATE = ""  # locks the rows a decision reads (PostgreSQL)
    SKIP_LOCKED = ""  # claims skip rows another node is claiming (PostgreSQL)
    LIKE = "LIKE"  # case-insensitive match
    GREATEST = "MAX"

    @abc.abstractmethod
    def _write(self, *, flush: bool = True) -> AbstractContextManager[Any]:
        """One write transaction; yields something with ``execute`` and ``executemany``.

        ``flush=False``: the commit may return before the database's log reaches the
        disk. The rows are committed all the same (every reader sees them, and they
        survive this process being killed); a power cut may lose them until the next
        flushed commit, which flushes all earlier ones too. ``_flush_on_commit``
        inside the transaction takes the relaxation back.
        """

    @abc.abstractmethod
    def _flush_on_commit(self, connection: Any) -> None:
        """Make the open transaction's commit (and every earlier one) reach the disk."""

    @abc.abstractmethod
    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """A read, as dictionaries."""

    def _serialize(self, connection: Any, key: str) -> None:
        """Serialise transactions on one key (find-or-create); SQLite's lock suffices."""

    TYPES = {"serial": "INTEGER PRIMARY KEY", "real": "REAL", "big": "INTEGER"}

    def _migrate(self) -> None:
        """Bring the schema to this xnatd's version; one process at a time."""
        with self._write() as connection:
            self._serialize(connection, "xnatd-migrate")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"index {self} has schema version {version}, newer than this xnatd "
                    f"({SCHEMA_VERSION}); upgrade xnatd"
                )
            for step in SCHEMA[version:]:
                for statement in step.format(**self.TYPES).split(";"):
                    if statement.strip():
                        connection.execute(statement)
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    # -- storage commitment ------------------------------------------------------
    def add_commitment(self, commitment: PendingCommitment, *, next_try: float) -> None:
        with self._write() as connection:
            connection.execute(
                "DELETE FROM commitments WHERE transaction_uid = ?", (commitment.transaction_uid,)
            )
            connection.execute(
                "INSERT INTO commitments (transaction_uid, calling_ae, called_ae, mode,"
                " instances, requested, next_try) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    commitment.transaction_uid,
                    commitment.calling_ae,
                    commitment.called_ae,
                    commitment.mode,
                    json.dumps([list(pair) for pair in commitment.instances]),
                    commitment.requested,
                    next_try,
                ),
            )

    def claim_commitments(self, *, now: float, node: str, lease: float) -> list[PendingCommitment]:
        with self._write() as connection:
            rows = connection.execute(
                "SELECT transaction_uid, calling_ae, called_ae, mode, instances, requested,"
                " attempts FROM commitments WHERE next_try <= ?"
                " AND (claim_until IS NULL OR claim_until < ?) ORDER BY next_try LIMIT 50"
                + self.SKIP_LOCKED,
                (now, now),
            ).fetchall()
            for row in rows:
                connection.execute(
                    "UPDATE commitments SET claimed_by = ?, claim_until = ?"
                    " WHERE transaction_uid = ?",
                    (node, now + lease, row[0]),
                )
        return [
            PendingCommitment(
                transaction_uid=row[0],
                calling_ae=row[1],
                called_ae=row[2],
                mode=row[3],
                instances=tuple((str(c), str(i)) for c, i in json.loads(row[4])),
                requested=row[5],
                attempts=row[6],
            )
            for row in rows
        ]

    def finish_commitment(self, transaction_uid: str) -> None:
        with self._write() as connection:
            connection.execute(
                "DELETE FROM commitments WHERE transaction_uid = ?", (transaction_uid,)
            )

    def retry_commitment(self, transaction_uid: str, *, next_try: float) -> None:
        with self._write(flush=False) as connection:
            connection.execute(
                "UPDATE commitments SET next_try = ?, attempts = attempts + 1,"
                " claimed_by = NULL, claim_until = NULL WHERE transaction_uid = ?",
                (next_try, transaction_uid),
            )

    def held_instances(self, sop_instance_uids: list[str]) -> dict[str, tuple[str, bool]]:
        held: dict[str, tuple[str, bool]] = {}
        for start in range(0, len(sop_instance_uids), 500):  # SQLite's bound-variable limit
            chunk = tuple(sop_instance_uids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for row in self._rows(
                f"SELECT sop_instance_uid, sop_class_uid FROM instances"
                f" WHERE sop_instance_uid IN ({marks})",
                chunk,
            ):
                held.setdefault(row["sop_instance_uid"], (row["sop_class_uid"], False))
            for row in self._rows(
                f"SELECT a.sop_instance_uid, a.sop_class_uid FROM archive_instances a"
                f" JOIN sessions s ON s.id = a.session_id"
                f" WHERE s.status != 'deleted' AND a.sop_instance_uid IN ({marks})",
                chunk,
            ):
                held[row["sop_instance_uid"]] = (row["sop_class_uid"], True)
        return held

    # -- receipts ----------------------------------------------------------------
    def received_instances(self, *, calling_ae: str | None, since: float) -> list[dict[str, Any]]:
        who = " AND i.calling_ae = ?" if calling_ae is not None else ""
        params: tuple[Any, ...] = (since, calling_ae) if calling_ae is not None else (since,)
        prearchived = self._rows(
            "SELECT i.calling_ae, i.sop_instance_uid, i.received, 'prearchive' AS place,"
            " p.project || '/' || p.timestamp || '/' || p.label AS session, p.project,"
            " p.label, p.status FROM instances i JOIN prearchive p ON p.id = i.session_id"
            " WHERE i.received >= ?" + who,
            params,
        )
        archived = self._rows(
            "SELECT i.calling_ae, i.sop_instance_uid, i.received, 'archive' AS place,"
            " s.id AS session, s.project, s.label, s.status FROM archive_instances i"
            " JOIN sessions s ON s.id = i.session_id WHERE i.received >= ?" + who,
            params,
        )
        return sorted(prearchived + archived, key=lambda row: (row["received"], row["session"]))

    def audit_events_since(
        self, events: tuple[str, ...], *, since: float, actor: str | None
    ) -> list[AuditEvent]:
        marks = ", ".join("?" * len(events))
        who = " AND actor = ?" if actor is not None else ""
        rows = self._rows(
            f"SELECT * FROM audit WHERE event IN ({marks}) AND time >= ?{who} ORDER BY id",
            (*events, since, *((actor,) if actor is not None else ())),
        )
        return [
            AuditEvent(
                id=row["id"],
                time=row["time"],
                event=row["event"],
                actor=row["actor"],
                session=row["session"],
                details=json.loads(row["details"]),
            )
            for row in rows
        ]

    def schema_version(self) -> int:
        return int(self._rows("SELECT value FROM meta WHERE key = 'schema_version'")[0]["value"])

    # -- prearchive sessions ----------------------------------------------------
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
        accepting = tuple(status.value for status in ACCEPTS_FILES)
        marks = ",".join("?" * len(accepting))
        with self._write() as connection:
            self._serialize(connection, f"{key.project}/{key.label}")
            row = connection.execute(
                f"SELECT id, status FROM prearchive WHERE project = ? AND study_uid = ?"
                f" AND label = ? AND status IN ({marks}) ORDER BY id DESC LIMIT 1",
                (key.project, key.study_uid, key.label, *accepting),
            ).fetchone()
            if row is not None:
                connection.execute(
                    "UPDATE prearchive SET status = 'RECEIVING', reason = NULL,"
                    " claimed_by = NULL, claim_until = NULL, last_modified = ? WHERE id = ?",
                    (now, row[0]),
                )
                session_id = row[0]
            else:
                while connection.execute(
                    "SELECT 1 FROM prearchive WHERE project = ? AND timestamp = ? AND label = ?",
                    (key.project, timestamp, key.label),
                ).fetchone():
                    timestamp = next_timestamp(timestamp)
                session_id = connection.execute(
                    "INSERT INTO prearchive (project, timestamp, label, subject,"
                    " study_uid, status, auto_archive, source, created, last_modified)"
                    " VALUES (?, ?, ?, ?, ?, 'RECEIVING', ?, ?, ?, ?) RETURNING id",
                    (
                        key.project,
                        timestamp,
                        key.label,
                        subject,
                        key.study_uid,
                        None if auto_archive is None else int(auto_archive),
                        source,
                        now,
                        now,
                    ),
                ).fetchone()[0]
            if association_id is not None:
                connection.execute(_HOLD_SESSION, (association_id, session_id, association_id))
            found = connection.execute(
                f"SELECT {_SESSION_COLUMNS} FROM prearchive p WHERE id = ?", (session_id,)
            )
            columns = _names(found)
            return _session(dict(zip(columns, found.fetchone(), strict=True)))

    def record_instance(
        self,
        session_id: int,
        record: InstanceRecord,
        association_id: str | None,
        now: float,
        findings: Sequence[Finding] = (),
    ) -> RecordResult:
        # The one write per received file, so its commit is not flushed: the file
        # itself already is, and a row a power cut loses is recorded again from the
        # file when the session is built (Prearchive.adopt_unrecorded). Any other
        # change (a session reopened, an instance replaced) is flushed: the build
        # could not tell it from the files.
        with self._write(flush=False) as connection:
            row = connection.execute(
                "SELECT status FROM prearchive WHERE id = ?" + self.FOR_UPDATE, (session_id,)
            ).fetchone()
            if row is None or Status(row[0]) not in ACCEPTS_FILES:
                raise SessionClosed(f"session {session_id} no longer accepts files")
            old = connection.execute(
                "SELECT scan, file_name, size FROM instances"
                " WHERE session_id = ? AND sop_instance_uid = ?",
                (session_id, record.sop_instance_uid),
            ).fetchone()
            # Findings are flushed with the row: a power cut must not keep the file and
            # lose what the PHI check found in it.
            if old or findings or Status(row[0]) is not Status.RECEIVING:
                self._flush_on_commit(connection)
            connection.execute(
                _UPSERT_INSTANCE,
                _instance_values(session_id, record),
            )
            if old:
                connection.execute(
                    "DELETE FROM findings WHERE session_id = ? AND sop_instance_uid = ?"
                    " AND stage = 'receive'",
                    (session_id, record.sop_instance_uid),
                )
            _insert_findings(connection, session_id, findings)
            added_files = 0 if old else 1
            added_bytes = record.size - (old[2] if old else 0)
            connection.execute(
                "UPDATE prearchive SET status = 'RECEIVING', reason = NULL, claimed_by = NULL,"
                " claim_until = NULL, last_modified = ?, files = files + ?, bytes = bytes + ?"
                " WHERE id = ?",
                (now, added_files, added_bytes, session_id),
            )
            if association_id is not None:
                connection.execute(_HOLD_SESSION, (association_id, session_id, association_id))
        replaced = None
        if old and (old[0], old[1]) != (record.scan, record.file_name):
            replaced = f"SCANS/{old[0]}/DICOM/{old[1]}"
        return RecordResult(new_instance=old is None, replaced_path=replaced)

    def claim_idle_sessions(
        self, *, now: float, idle_timeout: float, node: str, lease: float, limit: int = 16
    ) -> list[PrearchiveSession]:
        with self._write() as connection:
            ids = [
                row[0]
                for row in connection.execute(
                    "SELECT id FROM prearchive p WHERE"
                    " ((status = 'RECEIVING' AND last_modified <= ?)"
                    "  OR (status = 'BUILDING' AND claim_until < ?)"
                    "  OR (status = 'ERROR' AND retry_at <= ?))"
                    " AND NOT EXISTS (SELECT 1 FROM association_sessions s"
                    "   JOIN associations a ON a.id = s.association_id"
                    "   WHERE s.session_id = p.id AND a.lease_until > ?)"
                    " ORDER BY last_modified LIMIT ?" + self.SKIP_LOCKED,
                    (now - idle_timeout, now, now, now, limit),
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            connection.execute(
                f"UPDATE prearchive SET status = 'BUILDING', claimed_by = ?, claim_until = ?"
                f" WHERE id IN ({marks})",
                (node, now + lease, *ids),
            )
            cursor = connection.execute(
                f"SELECT {_SESSION_COLUMNS} FROM prearchive p WHERE id IN ({marks})", ids
            )
            columns = _names(cursor)
            return [_session(dict(zip(columns, r, strict=True))) for r in cursor.fetchall()]

    def calling_aes(self, session_id: int) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT calling_ae FROM instances WHERE session_id = ?"
            " AND calling_ae IS NOT NULL ORDER BY calling_ae",
            (session_id,),
        )
        return [r["calling_ae"] for r in rows]

    def findings(self, session_id: int) -> list[Finding]:
        rows = self._rows(
            "SELECT kind, scan, file_name, location, what, sop_instance_uid, stage"
            " FROM findings WHERE session_id = ? ORDER BY scan, file_name, location",
            (session_id,),
        )
        return [
            Finding(
                kind=r["kind"],
                scan=r["scan"],
                file=r["file_name"],
                where=r["location"],
                what=r["what"],
                sop_instance_uid=r["sop_instance_uid"],
                stage=r["stage"],
            )
            for r in rows
        ]

    def replace_findings(self, session_id: int, stage: str, findings: Sequence[Finding]) -> None:
        with self._write() as connection:
            connection.execute(
                "DELETE FROM findings WHERE session_id = ? AND stage = ?", (session_id, stage)
            )
            _insert_findings(connection, session_id, findings)

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
        again = 0 if retry_at is None else 1  # count one more failure, or start again
        with self._write() as connection:
            cursor = connection.execute(
                "UPDATE prearchive SET status = ?, reason = ?, xsi_type = ?,"
                " claimed_by = NULL, claim_until = NULL, retry_at = ?,"
                " build_attempts = build_attempts * ? + ?"
                " WHERE id = ? AND status = 'BUILDING' AND claimed_by = ?",
                (status.value, reason, xsi_type, retry_at, again, again, session_id, node),
            )
            return cursor.rowcount == 1

    def release_claims(self, node: str) -> int:
        with self._write() as connection:
            cursor = connection.execute(
                "UPDATE prearchive SET status = 'RECEIVING', claimed_by = NULL,"
                " claim_until = NULL WHERE status = 'BUILDING' AND claimed_by = ?",
                (node,),
            )
            return cursor.rowcount

    def delete_session_if_empty(self, session_id: int) -> bool:
        with self._write() as connection:
            cursor = connection.execute(
                "DELETE FROM prearchive WHERE id = ? AND files = 0"
                " AND NOT EXISTS (SELECT 1 FROM instances WHERE session_id = ?)",
                (session_id, session_id),
            )
            return cursor.rowcount == 1

    def instances(self, session_id: int) -> list[InstanceRecord]:
        rows = self._rows(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE session_id = ? ORDER BY received",
            (session_id,),
        )
        return [InstanceRecord(**row) for row in rows]

    def set_digests(self, session_id: int, digests: list[tuple[str, float, str]]) -> None:
        with self._write() as connection:
            connection.executemany(
                "UPDATE instances SET md5 = ? WHERE session_id = ? AND sop_instance_uid = ?"
                " AND received = ? AND md5 = ?",
                [
                    (md5, session_id, uid, received, PENDING_DIGEST)
                    for uid, received, md5 in digests
                ],
            )

    def forget_instances(self, session_id: int, written: list[tuple[str, float]]) -> set[str]:
        gone: set[str] = set()
        size = 0
        with self._write() as connection:
            for uid, received in written:
                row = connection.execute(
                    "DELETE FROM instances WHERE session_id = ? AND sop_instance_uid = ?"
                    " AND received = ? RETURNING size",
                    (session_id, uid, received),
                ).fetchone()
                if row is not None:
                    gone.add(uid)
                    size += row[0]
            connection.execute(
                "UPDATE prearchive SET files = files - ?, bytes = bytes - ? WHERE id = ?",
                (len(gone), size, session_id),
            )
        return gone

    def adopt_instances(self, session_id: int, records: list[InstanceRecord]) -> None:
        with self._write() as connection:
            added = [
                record
                for record in records
                if connection.execute(
                    _INSERT_INSTANCE + " ON CONFLICT (session_id, sop_instance_uid) DO NOTHING",
                    _instance_values(session_id, record),
                ).rowcount
                == 1
            ]
            connection.execute(
                "UPDATE prearchive SET files = files + ?, bytes = bytes + ? WHERE id = ?",
                (len(added), sum(record.size for record in added), session_id),
            )

    def replace_instances(self, session_id: int, records: list[InstanceRecord]) -> None:
        with self._write() as connection:
            connection.execute("DELETE FROM instances WHERE session_id = ?", (session_id,))
            connection.executemany(
                _INSERT_INSTANCE,
                [_instance_values(session_id, record) for record in records],
            )
            connection.execute(
                "UPDATE prearchive SET files = ?, bytes = ? WHERE id = ?",
                (len(records), sum(r.size for r in records), session_id),
            )

    def move_instances_to_scan(self, session_id: int, sop_uids: list[str], scan: str) -> None:
        with self._write() as connection:
            connection.executemany(
                "UPDATE instances SET scan = ? WHERE session_id = ? AND sop_instance_uid = ?",
                [(scan, session_id, uid) for uid in sop_uids],
            )

    def get_session(self, name: PrearchiveName) -> PrearchiveSession | None:
        rows = self._rows(
            f"SELECT {_SESSION_COLUMNS} FROM prearchive p"
            " WHERE project = ? AND timestamp = ? AND label = ?",
            (name.project, name.timestamp, name.label),
        )
        return _session(rows[0]) if rows else None

    def list_sessions(
        self, *, project: str | None = None, status: str | None = None
    ) -> list[PrearchiveSession]:
        where, params = [], []
        if project is not None:
            where.append("project = ?")
            params.append(project)
        if status is not None:
            where.append("status = ?")
            params.append(status.upper())
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(
            f"SELECT {_SESSION_COLUMNS} FROM prearchive p{clause}"
            " ORDER BY project, timestamp, label",
            tuple(params),
        )
        return [_session(row) for row in rows]

    def count_by_status(self) -> dict[str, int]:
        rows = self._rows("SELECT status, COUNT(*) AS n FROM prearchive GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    # -- associations ------------------------------------------------------------
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
        with self._write() as connection:
            connection.execute(
                "INSERT INTO associations (id, node, called_ae, calling_ae, peer,"
                " opened, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET node = excluded.node,"
                " lease_until = excluded.lease_until",
                (association_id, node, called_ae, calling_ae, peer, lease_until, lease_until),
            )

    def close_association(self, association_id: str) -> None:
        with self._write() as connection:
            connection.execute("DELETE FROM associations WHERE id = ?", (association_id,))

    def renew_leases(self, node: str, lease_until: float) -> None:
        with self._write() as connection:
            connection.execute(
                "UPDATE associations SET lease_until = ? WHERE node = ?", (lease_until, node)
            )

    def drop_node_associations(self, node: str) -> int:
        with self._write() as connection:
            return connection.execute("DELETE FROM associations WHERE node = ?", (node,)).rowcount

    # -- operations on prearchive sessions -----------------------------------------
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
        with self._write() as connection:
            row = connection.execute(
                "SELECT id, status FROM prearchive WHERE project = ? AND timestamp = ?"
                " AND label = ?" + self.FOR_UPDATE,
                (name.project, name.timestamp, name.label),
            ).fetchone()
            if row is None:
                return None
            if Status(row[1]) not in allowed:
                return Status(row[1])
            connection.execute(
                "UPDATE prearchive SET status = ?, claimed_by = ?, claim_until = ?,"
                " archive_mode = COALESCE(?, archive_mode) WHERE id = ?",
                (to.value, node, now + lease, archive_mode, row[0]),
            )
        return self.get_session(name)

    def claim_stale_archives(
        self, *, now: float, node: str, lease: float
    ) -> list[PrearchiveSession]:
        with self._write() as connection:
            ids = [
                row[0]
                for row in connection.execute(
                    "SELECT id FROM prearchive WHERE status = 'ARCHIVING' AND claim_until < ?"
                    + self.SKIP_LOCKED,
                    (now,),
                )
            ]
            for session_id in ids:
                connection.execute(
                    "UPDATE prearchive SET claimed_by = ?, claim_until = ? WHERE id = ?",
                    (node, now + lease, session_id),
                )
        return [s for s in self.list_sessions(status="ARCHIVING") if s.id in ids]

    def archive_mode(self, session_id: int) -> str | None:
        rows = self._rows("SELECT archive_mode FROM prearchive WHERE id = ?", (session_id,))
        return rows[0]["archive_mode"] if rows else None

    def set_status(
        self, session_id: int, *, expected: Status, to: Status, reason: str | None = None
    ) -> bool:
        with self._write() as connection:
            cursor = connection.execute(
                "UPDATE prearchive SET status = ?, reason = ?, claimed_by = NULL,"
                " claim_until = NULL, retry_at = NULL WHERE id = ? AND status = ?",
                (to.value, reason, session_id, expected.value),
            )
            return cursor.rowcount == 1

    def relocate_session(self, session_id: int, *, project: str, timestamp: str) -> None:
        with self._write() as connection:
            connection.execute(
                "UPDATE prearchive SET project = ?, timestamp = ? WHERE id = ?",
                (project, timestamp, session_id),
            )

    def delete_session(self, session_id: int) -> None:
        with self._write() as connection:
            connection.execute("DELETE FROM prearchive WHERE id = ?", (session_id,))

    # -- the archive -----------------------------------------------------------------
    def subject_id(self, project: str, label: str) -> str | None:
        rows = self._rows(
            "SELECT id FROM subjects WHERE project = ? AND label = ?", (project, label)
        )
        return rows[0]["id"] if rows else None

    def _next_id(self, connection: Any, kind: str, prefix: str) -> str:
        number = connection.execute(
            "INSERT INTO id_counters (kind, last) VALUES (?, 1)"
            " ON CONFLICT (kind) DO UPDATE SET last = id_counters.last + 1 RETURNING last",
            (kind,),
        ).fetchone()[0]
        return f"{prefix}_{kind}{number:05d}"

    def allocate_id(self, kind: str, prefix: str) -> str:
        with self._write() as connection:
            return self._next_id(connection, kind, prefix)

    def create_subject(
        self, project: str, label: str, *, prefix: str, now: float
    ) -> tuple[str, bool]:
        with self._write() as connection:
            self._serialize(connection, f"subject:{project}/{label}")
            row = connection.execute(
                "SELECT id FROM subjects WHERE project = ? AND label = ?", (project, label)
            ).fetchone()
            if row is not None:
                return row[0], False
            subject_id = self._next_id(connection, "S", prefix)
            connection.execute(
                "INSERT INTO subjects (id, project, label, created) VALUES (?, ?, ?, ?)",
                (subject_id, project, label, now),
            )
            return subject_id, True

    def find_archived(self, project: str, label: str) -> ArchivedSession | None:
        rows = self._rows(
            f"SELECT {_ARCHIVED_COLUMNS} WHERE s.project = ? AND s.label = ?"
            " ORDER BY s.status = 'deleted', s.archived DESC LIMIT 1",
            (project, label),
        )
        return _archived(rows[0]) if rows else None

    def get_archived(self, session_id: str) -> ArchivedSession | None:
        rows = self._rows(f"SELECT {_ARCHIVED_COLUMNS} WHERE s.id = ?", (session_id,))
        return _archived(rows[0]) if rows else None

    def list_archived(self, query: SessionFilter) -> list[ArchivedSession]:
        where = [f"s.status IN ({','.join('?' * len(query.statuses))})"]
        params: list[Any] = [status.value for status in query.statuses]
        for clause, value in (
            ("s.project = ?", query.project),
            ("(j.label = ? OR j.id = ?)", query.subject),
            ("s.label = ?", query.label),
            ("UPPER(s.modality) = UPPER(?)", query.modality),
            ("s.date >= ?", query.since),
            ("s.date <= ?", query.until),
            ("s.study_uid = ?", query.study_uid),
        ):
            if value is not None:
                where.append(clause)
                params.extend([value] * clause.count("?"))
        if query.scan_type is not None:
            where.append(
                "EXISTS (SELECT 1 FROM archive_scans c WHERE c.session_id = s.id"
                f" AND (c.type {self.LIKE} ? OR c.series_description {self.LIKE} ?))"
            )
            params.extend([f"%{query.scan_type}%"] * 2)
        rows = self._rows(
            f"SELECT {_ARCHIVED_COLUMNS} WHERE {' AND '.join(where)} ORDER BY s.id",
            tuple(params),
        )
        return [_archived(row) for row in rows]

    def archived_instances(self, session_id: str) -> list[InstanceRecord]:
        rows = self._rows(
            f"SELECT {_INSTANCE_COLUMNS} FROM archive_instances WHERE session_id = ?"
            " ORDER BY received",
            (session_id,),
        )
        return [InstanceRecord(**row) for row in rows]

    def archived_scans(self, session_id: str) -> list[ScanRow]:
        rows = self._rows(
            "SELECT scan, series_uid, type, series_description, modality, files"
            " FROM archive_scans WHERE session_id = ?",
            (session_id,),
        )
        return [ScanRow(**row) for row in rows]

    def commit_archive(
        self,
        session: ArchivedSession,
        instances: list[InstanceRecord],
        scans: list[ScanRow],
        *,
        prearchive_id: int | None,
    ) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO sessions (id, project, subject_id, label, study_uid, xsi_type,"
                " modality, date, status, path, archived, modified, autorun)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET xsi_type = excluded.xsi_type,"
                " modality = excluded.modality, date = excluded.date,"
                " status = excluded.status, path = excluded.path,"
                " modified = excluded.modified",
                (
                    session.id,
                    session.project,
                    session.subject_id,
                    session.label,
                    session.study_uid,
                    session.xsi_type,
                    session.modality,
                    session.date,
                    session.status.value,
                    session.path,
                    session.archived,
                    session.modified,
                    json.dumps(list(session.autorun)),
                ),
            )
            connection.execute("DELETE FROM archive_instances WHERE session_id = ?", (session.id,))
            connection.executemany(
                f"INSERT INTO archive_instances (session_id, {_INSTANCE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_instance_values(session.id, record) for record in instances],
            )
            connection.execute("DELETE FROM archive_scans WHERE session_id = ?", (session.id,))
            connection.executemany(
                "INSERT INTO archive_scans (session_id, scan, series_uid, type,"
                " series_description, modality, files) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        session.id,
                        scan.scan,
                        scan.series_uid,
                        scan.type,
                        scan.series_description,
                        scan.modality,
                        scan.files,
                    )
                    for scan in scans
                ],
            )
            if prearchive_id is not None:
                connection.execute("DELETE FROM prearchive WHERE id = ?", (prearchive_id,))

    def set_archive_status(
        self,
        session_id: str,
        *,
        expected: frozenset[ArchiveStatus],
        to: ArchiveStatus,
        path: str | None = None,
        now: float,
    ) -> ArchivedSession | ArchiveStatus | None:
        with self._write() as connection:
            row = connection.execute(
                "SELECT status FROM sessions WHERE id = ?" + self.FOR_UPDATE, (session_id,)
            ).fetchone()
            if row is None:
                return None
            if ArchiveStatus(row[0]) not in expected:
                return ArchiveStatus(row[0])
            connection.execute(
                "UPDATE sessions SET status = ?, path = COALESCE(?, path), modified = ?"
                " WHERE id = ?",
                (to.value, path, now, session_id),
            )
        return self.get_archived(session_id)

    def set_autorun(self, session_id: str, results: list[dict[str, Any]]) -> None:
        with self._write() as connection:
            connection.execute(
                "UPDATE sessions SET autorun = ? WHERE id = ?", (json.dumps(results), session_id)
            )

    # -- reindex ---------------------------------------------------------------------
    def clear(self) -> None:
        with self._write() as connection:
            for table in (
                "association_sessions",
                "associations",
                "instances",
                "prearchive",
                "archive_instances",
                "archive_scans",
                "sessions",
                "subjects",
                "id_counters",
                "audit",
            ):
                connection.execute(f"DELETE FROM {table}")

    def restore_prearchive(
        self, session: PrearchiveSession, instances: list[InstanceRecord]
    ) -> None:
        with self._write() as connection:
            session_id = connection.execute(
                "INSERT INTO prearchive (project, timestamp, label, subject, study_uid, status,"
                " reason, auto_archive, source, files, bytes, created, last_modified, xsi_type)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    session.project,
                    session.timestamp,
                    session.label,
                    session.subject,
                    session.study_uid,
                    session.status.value,
                    session.reason,
                    None if session.auto_archive is None else int(session.auto_archive),
                    session.source,
                    len(instances),
                    sum(i.size for i in instances),
                    session.created,
                    session.last_modified,
                    session.xsi_type,
                ),
            ).fetchone()[0]
            connection.executemany(
                _INSERT_INSTANCE + " ON CONFLICT DO NOTHING",
                [_instance_values(session_id, record) for record in instances],
            )

    def restore_subject(self, subject_id: str, project: str, label: str, created: float) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO subjects (id, project, label, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (subject_id, project, label, created),
            )

    def restore_audit(self, events: list[AuditEvent]) -> None:
        with self._write() as connection:
            connection.executemany(
                "INSERT INTO audit (time, event, actor, session, details) VALUES (?, ?, ?, ?, ?)",
                [
                    (e.time, e.event, e.actor, e.session, json.dumps(e.details, sort_keys=True))
                    for e in events
                ],
            )

    def raise_id_floor(self, kind: str, number: int) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO id_counters (kind, last) VALUES (?, ?)"
                " ON CONFLICT (kind) DO UPDATE SET"
                f" last = {self.GREATEST}(id_counters.last, excluded.last)",
                (kind, number),
            )

    # -- audit ---------------------------------------------------------------------
    def audit(
        self,
        event: str,
        *,
        actor: str | None,
        session: str | None,
        details: dict[str, Any],
        now: float,
    ) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO audit (time, event, actor, session, details) VALUES (?, ?, ?, ?, ?)",
                (now, event, actor, session, json.dumps(details, sort_keys=True)),
            )

    def audit_events(self, session: str | None = None) -> list[AuditEvent]:
        if session is None:
            rows = self._rows("SELECT * FROM audit ORDER BY id")
        else:
            rows = self._rows("SELECT * FROM audit WHERE session = ? ORDER BY id", (session,))
        return [
            AuditEvent(
                id=row["id"],
                time=row["time"],
                event=row["event"],
                actor=row["actor"],
                session=row["session"],
                details=json.loads(row["details"]),
            )
            for row in rows
        ]
