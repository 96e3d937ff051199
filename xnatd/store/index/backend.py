"""What each SQL backend gives the shared SQL: its transactions, its reads, its words.

Owns no table. The table groups (``sessions.py``, ``instances.py``,
``associations.py``, ``archived.py``, ``audit_trail.py``) build on ``SqlBackend``;
``sqlite.py`` and ``postgres.py`` fill it in.
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager
from typing import Any


class SqlBackend(abc.ABC):
    """The hooks and dialect words one SQL text needs to run on SQLite and PostgreSQL."""

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

    def _serialize(self, connection: Any, key: str) -> None:  # noqa: B027 - a no-op default
        """Serialise transactions on one key (find-or-create); SQLite's lock suffices."""

    # The schema's {serial}, {real} and {big} column types in this dialect.
    TYPES = {"serial": "INTEGER PRIMARY KEY", "real": "REAL", "big": "INTEGER"}
