"""The audit trail (table ``audit``): appended to, read back, never edited; reindex
restores it from the data directory.
"""

from __future__ import annotations

import json
from typing import Any

from xnatd.store.index.backend import SqlBackend
from xnatd.store.index.records import AuditEvent
from xnatd.store.index.schema import from_row


def _event(row: dict[str, Any]) -> AuditEvent:
    return from_row(AuditEvent, row, details=json.loads(row["details"]))


class AuditTable(SqlBackend):
    """The index calls on the audit trail."""

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
        return [_event(row) for row in rows]

    def audit_events_since(
        self, events: tuple[str, ...], *, since: float, actor: str | None
    ) -> list[AuditEvent]:
        marks = ", ".join("?" * len(events))
        who = " AND actor = ?" if actor is not None else ""
        rows = self._rows(
            f"SELECT * FROM audit WHERE event IN ({marks}) AND time >= ?{who} ORDER BY id",
            (*events, since, *((actor,) if actor is not None else ())),
        )
        return [_event(row) for row in rows]

    # -- reindex ---------------------------------------------------------------------
    def restore_audit(self, events: list[AuditEvent]) -> None:
        with self._write() as connection:
            connection.executemany(
                "INSERT INTO audit (time, event, actor, session, details) VALUES (?, ?, ?, ?, ?)",
                [
                    (e.time, e.event, e.actor, e.session, json.dumps(e.details, sort_keys=True))
                    for e in events
                ],
            )
