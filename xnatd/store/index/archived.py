"""The archive (tables ``sessions``, ``archive_instances`` and ``archive_scans``), its
subjects (``subjects``) and the accession IDs both are given (``id_counters``).
"""

from __future__ import annotations

import json
from typing import Any

from xnatd.store.index.backend import SqlBackend
from xnatd.store.index.records import (
    ArchivedSession,
    ArchiveStatus,
    InstanceRecord,
    ScanRow,
    SessionFilter,
)
from xnatd.store.index.schema import (
    INSTANCE_COLUMNS,
    from_row,
    insert_instance,
    instance_values,
)

_ARCHIVED_COLUMNS = (
    "s.id, s.project, s.subject_id, j.label AS subject, s.label, s.study_uid, s.xsi_type,"
    " s.modality, s.date, s.status, s.path, s.archived, s.modified, s.autorun,"
    " (SELECT COUNT(*) FROM archive_scans c WHERE c.session_id = s.id) AS scans,"
    " (SELECT COUNT(*) FROM archive_instances i WHERE i.session_id = s.id) AS files,"
    " (SELECT COALESCE(SUM(size), 0) FROM archive_instances i WHERE i.session_id = s.id)"
    " AS bytes FROM sessions s JOIN subjects j ON j.id = s.subject_id"
)


def _archived(row: dict[str, Any]) -> ArchivedSession:
    return from_row(
        ArchivedSession,
        row,
        status=ArchiveStatus(row["status"]),
        autorun=tuple(json.loads(row["autorun"] or "[]")),
    )


class ArchiveTables(SqlBackend):
    """The index calls on archived sessions, subjects and accession IDs."""

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
            f"SELECT {INSTANCE_COLUMNS} FROM archive_instances WHERE session_id = ?"
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
                insert_instance("archive_instances"),
                [instance_values(session.id, record) for record in instances],
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
    def restore_subject(self, subject_id: str, project: str, label: str, created: float) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO subjects (id, project, label, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (subject_id, project, label, created),
            )

    def raise_id_floor(self, kind: str, number: int) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO id_counters (kind, last) VALUES (?, ?)"
                " ON CONFLICT (kind) DO UPDATE SET"
                f" last = {self.GREATEST}(id_counters.last, excluded.last)",
                (kind, number),
            )
