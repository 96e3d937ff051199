"""The embedded SQLite index (sqlite-utils over one WAL-mode connection); SQL in sql.py.

Writes run inside ``BEGIN IMMEDIATE`` so a compare-and-set is atomic across threads,
the command line and other processes. ``synchronous=FULL``: a committed row (the
C-STORE acknowledgement depends on it) survives power loss, not only a crash.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from xnatd.store.index.base import SCHEMA_VERSION
from xnatd.store.index.sql import SqlIndex
from xnatd.store.layout import INDEX_FILE

# Each entry moves the schema from version N to N+1; never edit a released one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE prearchive (
        id INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        label TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        study_uid TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        auto_archive INTEGER,
        source TEXT,
        files INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        last_modified REAL NOT NULL,
        claimed_by TEXT,
        claim_until REAL,
        xsi_type TEXT,
        UNIQUE (project, timestamp, label)
    );
    CREATE INDEX prearchive_key ON prearchive (project, study_uid, label);
    CREATE INDEX prearchive_status ON prearchive (status, last_modified);
    CREATE TABLE instances (
        session_id INTEGER NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        series_number TEXT NOT NULL,
        instance_number TEXT NOT NULL,
        modality TEXT NOT NULL,
        scan TEXT NOT NULL,
        file_name TEXT NOT NULL,
        size INTEGER NOT NULL,
        md5 TEXT NOT NULL,
        received REAL NOT NULL,
        calling_ae TEXT,
        PRIMARY KEY (session_id, sop_instance_uid)
    );
    CREATE TABLE associations (
        id TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        called_ae TEXT,
        calling_ae TEXT,
        peer TEXT,
        opened REAL NOT NULL,
        lease_until REAL NOT NULL
    );
    CREATE TABLE association_sessions (
        association_id TEXT NOT NULL REFERENCES associations (id) ON DELETE CASCADE,
        session_id INTEGER NOT NULL REFERENCES prearchive (id) ON DELETE CASCADE,
        PRIMARY KEY (association_id, session_id)
    );
    CREATE INDEX association_sessions_session ON association_sessions (session_id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
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
        created REAL NOT NULL,
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
        archived REAL NOT NULL,
        modified REAL NOT NULL,
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
        size INTEGER NOT NULL,
        md5 TEXT NOT NULL,
        received REAL NOT NULL,
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
        files INTEGER NOT NULL,
        PRIMARY KEY (session_id, scan)
    );
    CREATE TABLE id_counters (kind TEXT PRIMARY KEY, last INTEGER NOT NULL)
    """,
]
assert len(MIGRATIONS) == SCHEMA_VERSION


class SqliteIndex(SqlIndex):
    """One connection shared by the process's threads, serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=30000")
        self.db = sqlite_utils.Database(connection)
        self._lock = threading.RLock()
        self._migrate()

    @classmethod
    def open(cls, spec: str, data_dir: Path) -> SqliteIndex:
        return cls(data_dir / INDEX_FILE)

    # -- plumbing ----------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once, so reads inside it see a stable state."""
        with self._lock:
            connection = self.db.conn
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict]:
        with self._lock:
            return list(self.db.query(sql, params))

    def _migrate(self) -> None:
        with self._write() as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            row = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"index {self.path} has schema version {version}, newer than this "
                    f"xnatd ({SCHEMA_VERSION}); upgrade xnatd"
                )
            for step in MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        connection.execute(statement)
            connection.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def schema_version(self) -> int:
        rows = self._rows("SELECT value FROM meta WHERE key = 'schema_version'")
        return int(rows[0]["value"])

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
