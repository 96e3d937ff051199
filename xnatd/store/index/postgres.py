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

from xnatd.store.index.sql import SqlIndex

_PLACEHOLDER = re.compile(r"\?")
HOLDER_LOCK = 0x58_4E_41_54  # the advisory lock's first key ("XNAT"); the schema is the second


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
    """A psycopg connection pool; an advisory lock on a held connection is the hold."""

    FOR_UPDATE = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    LIKE = "ILIKE"
    GREATEST = "GREATEST"
    TYPES = {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION", "big": "BIGINT"}

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = url
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=True, kwargs={"autocommit": False}
        )
        self._holder: psycopg.Connection | None = None
        self._migrate()

    @classmethod
    def open(cls, spec: str, sqlite_file: Path) -> PostgresIndex:
        """Open the index at a PostgreSQL URL (``sqlite_file`` is not used)."""
        return cls(spec)

    @contextmanager
    def _write(self, *, flush: bool = True) -> Iterator[_Connection]:
        with self.pool.connection() as connection, connection.transaction():
            if not flush:  # commit without waiting for the WAL flush
                connection.execute("SET LOCAL synchronous_commit = off")
            yield _Connection(connection)

    def _flush_on_commit(self, connection: _Connection) -> None:
        connection.execute("SET LOCAL synchronous_commit = on")  # read at COMMIT

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with (
            self.pool.connection() as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(_native(sql), params)
            return list(cursor.fetchall())

    def _serialize(self, connection: Any, key: str) -> None:
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))

    def hold(self, *, exclusive: bool) -> bool:
        # A session-level advisory lock on a connection of its own, per schema (several
        # indexes may share a database): released when that session ends, however.
        holder = psycopg.connect(self.url, autocommit=True)
        take = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
        row = holder.execute(f"SELECT {take}({HOLDER_LOCK}, hashtext(current_schema()))").fetchone()
        if not row or not row[0]:
            holder.close()
            return False
        self._holder = holder
        return True

    def __str__(self) -> str:
        return "the PostgreSQL index"

    def close(self) -> None:
        self.pool.close()
        if self._holder is not None:
            self._holder.close()
