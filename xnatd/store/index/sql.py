"""The index's SQL, shared by SQLite and PostgreSQL: one text, small dialect hooks.

``SqlIndex`` puts the table groups together (``sessions.py``, ``instances.py``,
``associations.py``, ``archived.py``, ``audit_trail.py``) and keeps what spans them
all: bringing the schema (``schema.py``) up to date, its version, and clearing it.

Writes run inside one transaction each (``_write``); a compare-and-set is an UPDATE
guarded by the status it expects, and the rows a decision reads are locked first
(``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises).
"""

from __future__ import annotations

from xnatd.store.index.archived import ArchiveTables
from xnatd.store.index.associations import AssociationTables
from xnatd.store.index.audit_trail import AuditTable
from xnatd.store.index.base import Index
from xnatd.store.index.instances import InstanceTables
from xnatd.store.index.schema import SCHEMA, SCHEMA_VERSION
from xnatd.store.index.sessions import SessionTables


class SqlIndex(SessionTables, InstanceTables, AssociationTables, ArchiveTables, AuditTable, Index):
    """Every index call, in SQL both backends run."""

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

    def schema_version(self) -> int:
        return int(self._rows("SELECT value FROM meta WHERE key = 'schema_version'")[0]["value"])

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
