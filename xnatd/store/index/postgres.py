"""The PostgreSQL index: several nodes share it (psycopg 3, a connection pool).

Same SQL as SQLite (sql.py). Node cooperation lives here, never in process memory
or file locks: claims use ``FOR UPDATE SKIP LOCKED``, decisions lock the rows they
read, and find-or-create is serialised per key with a transaction advisory lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from xnatd.store.index.base import SCHEMA_VERSION
from xnatd.store.index.sql import SqlIndex

# Each entry moves the schema from version N to N+1, as the SQLite list does.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE prearchive (
        id BIGSERIAL PRIMARY KEY,
        project TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        label TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        study_uid TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        auto_archive INTEGER,
        source TEXT,
        files BIGINT NOT NULL DEFAULT 0,
        bytes BIGINT NOT NULL DEFAULT 0,
        created DOUBLE PRECISION NOT NULL,
        last_modified DOUBLE PRECISION NOT NULL,
        claimed_by TEXT,
        claim_until DOUBLE PRECISION,
        xsi_type TEXT,
        UNIQUE (project, timestamp, label)
    );
    CREATE INDEX prearchive_key ON prearchive (project, study_uid, label);
    CREATE INDEX prearchive_status ON prearchive (status, last_modified);
    CREATE TABLE instances (
        session_id BIGINT NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        series_number TEXT NOT NULL,
        instance_number TEXT NOT NULL,
        modality TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        size BIGINT NOT NULL,
        md5 TEXT NOT NULL,
        received DOUBLE PRECISION NOT NULL,
        calling_ae TEXT,
        PRIMARY KEY (session_id, sop_instance_uid)
    );
    CREATE TABLE associations (
        id TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        called_ae TEXT,
        calling_ae TEXT,
        peer TEXT,
        opened DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE association_sessions (
        association_id TEXT NOT NULL REFERENCES associations (id) ON DELETE CASCADE,
        session_id BIGINT NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        PRIMARY KEY (association_id, session_id)
    );
    CREATE INDEX association_sessions_session ON association_sessions (session_id);
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        event TEXT NOT NULL,
        actor TEXT,
        session TEXT,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_session ON audit (session)
    """,
    """
    ALTER TABLE prearchive ADD COLUMN archive_mode TEXT;
    CREATE TABLE subjects (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        label TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
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
        archived DOUBLE PRECISION NOT NULL,
        modified DOUBLE PRECISION NOT NULL,
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
        size BIGINT NOT NULL,
        md5 TEXT NOT NULL,
        received DOUBLE PRECISION NOT NULL,
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
        files BIGINT NOT NULL,
        PRIMARY KEY (session_id, scan)
    );
    CREATE TABLE id_counters (kind TEXT PRIMARY KEY, last BIGINT NOT NULL)
    """,
]
assert len(MIGRATIONS) == SCHEMA_VERSION

_PLACEHOLDER = re.compile(r"\?")


@cache
def _native(sql: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (no literal ? or % occur)."""
    return _PLACEHOLDER.sub("%s", sql)


class _Connection:
    """What sql.py needs of a connection: execute and executemany with ``?``."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Any = ()) -> psycopg.Cursor:
        return self.connection.execute(_native(sql), params)

    def executemany(self, sql: str, rows: list[Any]) -> None:
        if rows:
            with self.connection.cursor() as cursor:
                cursor.executemany(_native(sql), rows)


class PostgresIndex(SqlIndex):
    FOR_UPDATE = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    LIKE = "ILIKE"
    GREATEST = "GREATEST"

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = url
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=True, kwargs={"autocommit": False}
        )
        self._migrate()

    @classmethod
    def open(cls, spec: str, data_dir: Path) -> PostgresIndex:
        return cls(spec)

    @contextmanager
    def _write(self) -> Iterator[_Connection]:
        with self.pool.connection() as connection, connection.transaction():
            yield _Connection(connection)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with (
            self.pool.connection() as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(_native(sql), params)
            return list(cursor.fetchall())

    def _serialize(self, connection: Any, key: str) -> None:
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))

    def _migrate(self) -> None:
        with self._write() as connection:
            # One node migrates at a time; the others wait and find the work done.
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('xnatd-migrate'))")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"index has schema version {version}, newer than this xnatd "
                    f"({SCHEMA_VERSION}); upgrade xnatd"
                )
            for step in MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        connection.execute(statement)
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def schema_version(self) -> int:
        return int(self._rows("SELECT value FROM meta WHERE key = 'schema_version'")[0]["value"])

    def close(self) -> None:
        self.pool.close()
