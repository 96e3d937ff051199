"""Prearchive sessions (table ``prearchive``): opening, build claims, compare-and-set
status changes, listing, and their restore by reindex.

A session's files and findings are ``instances.py``'s; the associations holding its
idle timer are ``associations.py``'s.
"""

from __future__ import annotations

from typing import Any

from xnatd.store.index.associations import hold_session
from xnatd.store.index.backend import SqlBackend
from xnatd.store.index.records import (
    ACCEPTS_FILES,
    InstanceRecord,
    PrearchiveSession,
    SessionKey,
    Status,
)
from xnatd.store.index.schema import from_row, insert_instance, instance_values
from xnatd.store.layout import PrearchiveName, next_timestamp

_SESSION_COLUMNS = (
    "id, project, timestamp, label, subject, study_uid, status, reason, auto_archive, source,"
    " (SELECT COUNT(DISTINCT scan) FROM instances i WHERE i.session_id = p.id) AS scans,"
    " files, bytes, created, last_modified, xsi_type, build_attempts, retry_at"
)


def _session(row: dict[str, Any]) -> PrearchiveSession:
    auto = row["auto_archive"]
    return from_row(
        PrearchiveSession,
        row,
        status=Status(row["status"]),
        auto_archive=None if auto is None else bool(auto),
    )


def _sessions(cursor: Any) -> list[PrearchiveSession]:
    """The sessions a cursor over ``_SESSION_COLUMNS`` holds (inside a write)."""
    columns = [getattr(column, "name", None) or column[0] for column in cursor.description]
    return [_session(dict(zip(columns, row, strict=True))) for row in cursor.fetchall()]


class SessionTables(SqlBackend):
    """The index calls on prearchive sessions."""

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
                hold_session(connection, association_id, session_id)
            found = connection.execute(
                f"SELECT {_SESSION_COLUMNS} FROM prearchive p WHERE id = ?", (session_id,)
            )
            return _sessions(found)[0]

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
            return _sessions(cursor)

    def quiet_sessions(
        self, *, now: float, quiet: float, limit: int = 16
    ) -> list[PrearchiveSession]:
        rows = self._rows(
            f"SELECT {_SESSION_COLUMNS} FROM prearchive p"
            " WHERE status = 'RECEIVING' AND last_modified <= ?"
            " AND NOT EXISTS (SELECT 1 FROM association_sessions s"
            "   JOIN associations a ON a.id = s.association_id"
            "   WHERE s.session_id = p.id AND a.lease_until > ?)"
            " ORDER BY last_modified LIMIT ?",
            (now - quiet, now, limit),
        )
        return [_session(row) for row in rows]

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

    # -- reindex ---------------------------------------------------------------------
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
                insert_instance("instances") + " ON CONFLICT DO NOTHING",
                [instance_values(session_id, record) for record in instances],
            )
