"""Receipts (issue 22): per sender, what xnatd received, rejected, committed and where
each instance is now, the answer to "the scanner says it sent 412 images; where are
they?". Built from the index (instances in the prearchive and the archive) and the
audit trail (rejections, Storage Commitment reports)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from xnatd.store.index.base import Index
from xnatd.units import iso

REJECTIONS = ("reject",)  # intake's rejections and the site script's reject[]
UNKNOWN_SENDER = ""  # instances imported or uploaded, not sent over DICOM


def receipts(index: Index, *, calling_ae: str | None = None, since: float = 0.0) -> list[dict]:
    """One entry per calling AE title, sorted by title.

    Each: ``calling_ae``; ``received`` (instances held now, prearchive and archive);
    ``rejected`` and ``rejections`` (reason: count); ``committed`` (instances reported
    committed, distinct) and ``commitment_failures``; ``sessions`` (where the received
    instances are: place, session, project, label, status, instances, first and last
    received); ``instances`` (each SOP Instance UID with its session and whether it
    was reported committed).
    """
    senders: dict[str, dict[str, Any]] = {}

    def sender(title: str | None) -> dict[str, Any]:
        title = title or UNKNOWN_SENDER
        if title not in senders:
            senders[title] = {
                "calling_ae": title,
                "received": 0,
                "rejected": 0,
                "rejections": Counter(),
                "committed": 0,
                "commitment_failures": 0,
                "sessions": {},
                "instances": [],
                "_committed": set(),
            }
        return senders[title]

    for event in index.audit_events_since(("commitment",), since=since, actor=calling_ae):
        entry = sender(event.actor)
        entry["_committed"].update(event.details.get("committed", []))
        entry["commitment_failures"] += len(event.details.get("failed", []))
    for event in index.audit_events_since(REJECTIONS, since=since, actor=calling_ae):
        entry = sender(event.actor)
        entry["rejected"] += 1
        entry["rejections"][str(event.details.get("reason", "unknown"))] += 1
    for row in index.received_instances(calling_ae=calling_ae, since=since):
        entry = sender(row["calling_ae"])
        entry["received"] += 1
        key = (row["place"], row["session"])
        session = entry["sessions"].get(key)
        if session is None:
            session = entry["sessions"][key] = {
                "place": row["place"],
                "session": row["session"],
                "project": row["project"],
                "label": row["label"],
                "status": row["status"],
                "instances": 0,
                "first": row["received"],
                "last": row["received"],
            }
        session["instances"] += 1
        session["last"] = max(session["last"], row["received"])
        entry["instances"].append(
            {
                "sop_instance_uid": row["sop_instance_uid"],
                "place": row["place"],
                "session": row["session"],
                "received": row["received"],
                "committed": row["sop_instance_uid"] in entry["_committed"],
            }
        )
    result = []
    for title in sorted(senders):
        entry = senders[title]
        entry["committed"] = len(entry.pop("_committed"))
        entry["rejections"] = dict(entry["rejections"])
        entry["sessions"] = sorted(entry["sessions"].values(), key=lambda s: s["first"])
        result.append(entry)
    return result


def parse_since(text: str | None) -> float:
    """``YYYY-MM-DD`` or an ISO 8601 date and time (UTC unless it says otherwise).

    Raises:
        ValueError: one line saying what is wrong.
    """
    if not text:
        return 0.0
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or an ISO 8601 time)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def with_iso_times(entries: list[dict]) -> list[dict]:
    """The receipts with every time as ISO 8601 UTC, for JSON and people."""
    for entry in entries:
        for session in entry["sessions"]:
            session["first"], session["last"] = iso(session["first"]), iso(session["last"])
        for instance in entry["instances"]:
            instance["received"] = iso(instance["received"])
    return entries
