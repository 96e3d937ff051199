"""The ``prearchive`` commands: list, show, archive, move, rebuild, delete, clean-pixels."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from xnatd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    actor,
    load_config,
    nothing_found,
    open_store_for_reading,
    open_store_for_writing,
    operations_of,
    prearchive_name,
    print_table,
    project_argument,
)
from xnatd.rows import finding_row, prearchive_row
from xnatd.store.index.records import (
    Status,
)

if TYPE_CHECKING:
    from xnatd.phi.clean import Region


def cmd_prearchive_list(args: argparse.Namespace) -> int:
    """``xnatd prearchive list``: prearchive sessions, of one project or status if given."""
    config = load_config(args)
    if args.status and args.status.upper() not in Status.__members__:
        raise UsageError(f"--status {args.status!r} is not one of {', '.join(Status)}")
    project = project_argument(config, args.project)
    with open_store_for_reading(config) as store:
        sessions = store.index.list_sessions(project=project, status=args.status) if store else []
        rows = [prearchive_row(s) for s in sessions]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(
            rows,
            ("name", "status", "subject", "scans", "files", "last_modified", "reason"),
            empty=nothing_found("prearchive sessions", config),
        )
    return EXIT_OK


def cmd_prearchive_show(args: argparse.Namespace) -> int:
    """``xnatd prearchive show``: one prearchive session with its scans and findings;
    1 when there is no such session.
    """
    config = load_config(args)
    name = prearchive_name(args.name)
    with open_store_for_reading(config) as store:
        session = store.index.get_session(name) if store else None
        if store is None or session is None:
            print(f"xnatd: {nothing_found(f'prearchive session {name}', config)}", file=sys.stderr)
            return EXIT_FAILED
        index = store.index
        scans: dict[str, dict[str, Any]] = {}
        for record in index.instances(session.id):
            scan = scans.setdefault(
                record.scan,
                {
                    "id": record.scan,
                    "series_uid": record.series_uid,
                    "modality": record.modality,
                    "files": 0,
                    "bytes": 0,
                },
            )
            scan["files"] += 1
            scan["bytes"] += record.size
        findings = [finding_row(f) for f in store.prearchive.findings(session)]
    data = store.data
    detail = {
        **prearchive_row(session),
        "auto_archive": session.auto_archive,
        "source": session.source,
        "xsi_type": session.xsi_type,
        "path": str(data.session_dir(name)),
        "document": str(data.session_document(name)),
        "scan_list": sorted(scans.values(), key=lambda s: (len(s["id"]), s["id"])),
        "findings": findings,
    }
    if args.json:
        print(json.dumps(detail, indent=2))
        return EXIT_OK
    for key, value in detail.items():
        if key not in ("scan_list", "findings"):
            print(f"{key:>14}: {'' if value is None else value}")
    print()
    print_table(detail["scan_list"], ("id", "modality", "files", "bytes", "series_uid"))
    if detail["findings"]:
        print(f"\nfindings ({len(detail['findings'])}):")
        print_table(detail["findings"], ("kind", "scan", "file", "where", "what"))
    return EXIT_OK


def cmd_prearchive_operation(args: argparse.Namespace) -> int:
    """``xnatd prearchive archive|rebuild|delete|move``: one operation on a session; 1
    when an archive ends in CONFLICT, ERROR or HELD.
    """
    config = load_config(args)
    name = prearchive_name(args.name)
    with open_store_for_writing(config) as store:
        operations = operations_of(config, store)
        if args.action == "archive":
            outcome = operations.archive(
                name, args.overwrite, actor(), accept_findings=args.accept_findings
            )
            if outcome.result in ("conflict", "error", "held"):
                print(f"xnatd: {name}: {outcome.result.upper()}: {outcome.reason}", file=sys.stderr)
                return EXIT_FAILED
            print(f"{name} {outcome.result} as {outcome.session_id} ({outcome.files} files)")
        elif args.action == "rebuild":
            status = operations.rebuild(name, actor())
            print(f"{name} rebuilt: {status.value if status else 'reopened by new files'}")
        elif args.action == "move":
            print(f"{name} moved to {operations.move(name, args.to, actor())}")
        else:
            print(f"{name} deleted; files kept in {operations.delete(name, actor())}")
    return EXIT_OK


def regions_argument(texts: Sequence[str]) -> list[tuple[str, Region]]:
    """``--region SCAN,FRAME,x,y,w,h`` values as (scan, region) pairs.

    Raises:
        UsageError: a value is not of that form, or not a region.
    """
    from xnatd.phi.clean import Region

    regions = []
    for text in texts:
        scan, *numbers = text.split(",")
        try:
            frame, x, y, width, height = (int(n) for n in numbers)
        except ValueError:
            raise UsageError(f"--region {text!r} is not SCAN,FRAME,x,y,w,h") from None
        if frame < 1 or width < 1 or height < 1 or x < 0 or y < 0:
            raise UsageError(f"--region {text!r}: frame from 1, w and h from 1, x and y from 0")
        regions.append((scan, Region(frame, x, y, width, height)))
    return regions


def cmd_clean_pixels(args: argparse.Namespace) -> int:
    """``xnatd prearchive clean-pixels``: blank the given regions (or every region the
    pixel check found), then check the session again.
    """
    config = load_config(args)
    name = prearchive_name(args.name)
    regions = None if args.all_findings else regions_argument(args.region)
    with open_store_for_writing(config) as store:
        files, status = operations_of(config, store).clean_pixels(name, regions, actor())
    state = status.value if status else "reopened by new files"
    print(f"{name}: pixels blanked in {files} files; checked again: {state}")
    return EXIT_OK
