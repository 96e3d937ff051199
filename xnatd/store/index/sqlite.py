"""The embedded SQLite index (sqlite-utils over one WAL-mode connection); SQL in sql.py
and the table modules it composes.

Writes run inside ``BEGIN IMMEDIATE`` so a compare-and-set is atomic across threads,
the command line and other processes. A committed row survives power loss, not only
a crash: after the commit, and before the write lock is let go, the WAL is fsynced,
which is what ``synchronous=FULL`` does in WAL mode. A ``flush=False`` write skips that
fsync (about 0.03 ms instead of 0.45 ms here), and the next flushed commit flushes it
with the rest of the WAL. The connection stays at ``synchronous=NORMAL`` (SQLite still
syncs around checkpoints), so a write changes no setting: two statements fewer for each
received file (issue 23).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from xnatd.store.index.sql import SqlIndex


class SqliteIndex(SqlIndex):
    """One connection shared by the process's threads, serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # _write fsyncs the WAL itself
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=30000")
        self.db = sqlite_utils.Database(connection)
        self._lock = threading.RLock()
        self._flush_wal = False
        # Writers of every process queue on this file's lock, woken the moment it is
        # free. Left to SQLite, a writer that finds the database locked sleeps 1, 2,
        # 5, 10 ... ms and tries again: with two receiving processes that was most
        # of a C-STORE's time at four associations (issue 5).
        self._writers = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115
        self._holder: Any = None
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def __str__(self) -> str:
        return str(self.path)

    @classmethod
    def open(cls, spec: str, sqlite_file: Path) -> SqliteIndex:
        """Open the index in ``sqlite_file`` (``spec`` is just the name "sqlite")."""
        return cls(sqlite_file)

    # -- plumbing ----------------------------------------------------------------
    @contextmanager
    def _write(self, *, flush: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once, so reads inside it see a stable state."""
        with self._lock:
            fcntl.flock(self._writers, fcntl.LOCK_EX)
            try:
                connection = self.db.conn
                self._flush_wal = flush
                changes = connection.total_changes
                try:
                    connection.execute("BEGIN IMMEDIATE")
                    try:
                        yield connection
                    except BaseException:
                        connection.execute("ROLLBACK")
                        raise
                    connection.execute("COMMIT")
                finally:
                    if connection.in_transaction:  # a COMMIT that failed (disk full)
                        connection.execute("ROLLBACK")
                if self._flush_wal and connection.total_changes != changes:
                    # What a FULL commit does in WAL mode: fsync the log it appended to
                    # (a transaction that changed nothing appended nothing).
                    descriptor = os.open(f"{self.path}-wal", os.O_RDONLY)
                    try:
                        os.fsync(descriptor)
                    finally:
                        os.close(descriptor)
            finally:
                fcntl.flock(self._writers, fcntl.LOCK_UN)

    def _flush_on_commit(self, connection: sqlite3.Connection) -> None:
        self._flush_wal = True  # under self._lock: this transaction's own flag

    def _rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict]:
        with self._lock:
            return list(self.db.query(sql, params))

    def hold(self, *, exclusive: bool) -> bool:
        holder = open(self.path.with_name(self.path.name + ".holders"), "ab")  # noqa: SIM115
        try:
            fcntl.flock(holder, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder.close()
            return False
        self._holder = holder
        return True

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()
            self._writers.close()
            if self._holder is not None:
                self._holder.close()
