"""Commands on the archive and its records: ``sessions``, ``audit``, ``receipts``, ``reindex``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from xnatd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    actor,
    date_argument,
    load_config,
    nothing_found,
    open_store_for_reading,
    open_store_for_writing,
    operations_of,
    print_table,
    project_argument,
)
from xnatd.operations import Refused
from xnatd.rows import archived_row
from xnatd.store.index.records import (
    ArchiveStatus,
    SessionFilter,
)
from xnatd.units import iso


def cmd_sessions_list(args: argparse.Namespace) -> int:
    """``xnatd sessions list``: search archived sessions (active and quarantined unless
    ``--status`` says otherwise).
    """
    config = load_config(args)
    statuses = (
        tuple(ArchiveStatus)
        if args.status == "all"
        else (ArchiveStatus(args.status),)
        if args.status
        else (ArchiveStatus.ACTIVE, ArchiveStatus.QUARANTINE)
    )
    query = SessionFilter(
        project=project_argument(config, args.project),
        subject=args.subject,
        label=args.label,
        modality=args.modality,
        since=date_argument(args.since),
        until=date_argument(args.until),
        study_uid=args.study_uid,
        scan_type=args.scan_type,
        statuses=statuses,
    )
    with open_store_for_reading(config) as store:
        rows = [archived_row(s, store) for s in store.index.list_archived(query)] if store else []
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(
            rows,
            ("id", "project", "subject", "label", "date", "modality", "scans", "files", "status"),
            empty=nothing_found("archived sessions", config),
        )
    return EXIT_OK


def cmd_sessions_show(args: argparse.Namespace) -> int:
    """``xnatd sessions show``: one archived session with its scans and autorun results;
    1 when there is no such session.
    """
    config = load_config(args)
    with open_store_for_reading(config) as store:
        session = store.index.get_archived(args.id) if store else None
        if store is None or session is None:
            print(f"xnatd: {nothing_found(f'archived session {args.id}', config)}", file=sys.stderr)
            return EXIT_FAILED
        scans = store.index.archived_scans(session.id)
        detail = {
            **archived_row(session, store),
            "bytes": session.bytes,
            "archived": iso(session.archived),
            "modified": iso(session.modified),
            "scan_list": [scan.__dict__ for scan in scans],
            "autorun": list(session.autorun),
        }
    if args.json:
        print(json.dumps(detail, indent=2))
        return EXIT_OK
    for key, value in detail.items():
        if key not in ("scan_list", "autorun"):
            print(f"{key:>12}: {'' if value is None else value}")
    print()
    print_table(detail["scan_list"], ("scan", "type", "modality", "files", "series_uid"))
    for result in detail["autorun"]:
        print(f"autorun {result['step']}: {result['result']}")
    return EXIT_OK


def cmd_sessions_change(args: argparse.Namespace) -> int:
    """``xnatd sessions release|delete``: quarantine to active, or mark deleted (and
    with ``--purge-files`` move its folder under ``deleted/``).
    """
    config = load_config(args)
    with open_store_for_writing(config) as store:
        operations = operations_of(config, store)
        if args.action == "release":
            changed = operations.release(args.id, actor())
        else:
            changed = operations.delete_archived(args.id, purge=args.purge_files, actor=actor())
    print(f"{changed.id}: {changed.status.value} ({store.data.root / changed.path})")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """``xnatd audit``: the audit trail, of one session with ``--session``."""
    config = load_config(args)
    with open_store_for_reading(config) as store:
        events = store.audit.events(args.session) if store else []
    rows: list[dict[str, Any]] = [
        {
            "time": iso(e.time),
            "event": e.event,
            "actor": e.actor,
            "session": e.session,
            "details": e.details,
        }
        for e in events
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(nothing_found("audit events", config))
    else:
        for row in rows:
            details = " ".join(f"{k}={v}" for k, v in sorted(row["details"].items()))
            print(
                f"{row['time']}  {row['event']:<15} {row['actor'] or '':<16} "
                f"{row['session'] or '':<40} {details}"
            )
    return EXIT_OK


def cmd_receipts(args: argparse.Namespace) -> int:
    """``xnatd receipts``: per sender, what was received, rejected and committed since a
    time, and where each session is now.
    """
    from xnatd.store.receipts import parse_since, receipts, with_iso_times

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    config = load_config(args)
    with open_store_for_writing(config) as store:
        entries = with_iso_times(receipts(store.index, calling_ae=args.calling_ae, since=since))
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    if not entries:
        print("(none)")
    for entry in entries:
        reasons = "; ".join(f"{count} {reason}" for reason, count in entry["rejections"].items())
        print(
            f"{entry['calling_ae'] or '(no DICOM sender)'}: received {entry['received']}, "
            f"rejected {entry['rejected']}{f' ({reasons})' if reasons else ''}, "
            f"committed {entry['committed']}"
        )
        for session in entry["sessions"]:
            print(
                f"  {session['place']:<10} {session['session']:<40} {session['status']:<10} "
                f"{session['instances']:>6} instances  {session['first']} .. {session['last']}"
            )
    return EXIT_OK


def cmd_reindex(args: argparse.Namespace) -> int:
    """``xnatd reindex``: rebuild the index from the data directory; refused while a
    daemon holds it, 1 when a folder had to be skipped.
    """
    from xnatd.store.reindex import reindex

    config = load_config(args)
    with open_store_for_writing(config) as store:
        if not store.index.hold(exclusive=True):
            raise Refused(
                f"a running daemon holds {store.index}: stop it (every node), then reindex;"
                " nothing was changed"
            )
        report = reindex(store)
    print(
        f"reindexed {report.archived} archived and {report.prearchive} prearchive sessions, "
        f"{report.instances} instances, {report.audit_events} audit events"
    )
    for problem in report.skipped:
        print(f"xnatd: skipped {problem}", file=sys.stderr)
    return EXIT_FAILED if report.skipped else EXIT_OK
