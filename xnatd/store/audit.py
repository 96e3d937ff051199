"""The audit trail: append-only, in the data directory and in the index.

Each event is appended (and flushed) to ``audit.jsonl`` before its index row is
written, so ``reindex`` restores the whole trail; nothing ever edits either.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from xnatd.store.index.base import Index
from xnatd.store.index.records import AuditEvent

JOURNAL = "audit.jsonl"


class AuditTrail:
    """The audit trail of one data directory: ``audit.jsonl`` first, then the index."""

    def __init__(self, root: Path, index: Index) -> None:
        self.path = root / JOURNAL
        self.index = index
        self._lock = threading.Lock()

    def record(self, event: str, *, actor: str | None, session: str | None, **details: Any) -> None:
        """Append one event: who did what to which session."""
        now = time.time()
        line = json.dumps(
            {"time": now, "event": event, "actor": actor, "session": session, "details": details},
            sort_keys=True,
            default=str,
        )
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        self.index.audit(event, actor=actor, session=session, details=details, now=now)

    def events(self, session: str | None = None) -> list[AuditEvent]:
        """Every event, or one session's trail; an archived session's trail includes the
        prearchive sessions that were archived into it."""
        if session is None:
            return self.index.audit_events()
        names = {session}
        for event in self.index.audit_events(session):
            names.update(
                event.details.get("from", []) if event.event in ("archive", "merge") else []
            )
        events = [e for name in names for e in self.index.audit_events(name)]
        return sorted({e.id: e for e in events}.values(), key=lambda e: (e.time, e.id))

    def read_journal(self) -> list[AuditEvent]:
        """The journal as written, for reindex; a torn last line (crash) is skipped."""
        if not self.path.exists():
            return []
        events = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            events.append(
                AuditEvent(
                    id=number,
                    time=raw["time"],
                    event=raw["event"],
                    actor=raw.get("actor"),
                    session=raw.get("session"),
                    details=raw.get("details") or {},
                )
            )
        return events
