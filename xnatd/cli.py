"""The ``xnatd`` command line: parses arguments and calls one function per command.

Only this module picks exit codes: 0 done, 1 refused or failed, 2 bad usage or
configuration. Errors go to stderr; ``--json`` gives machine output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xnatd import __version__
from xnatd import config as config_module
from xnatd.config import Config, ConfigError
from xnatd.store.index import open_index
from xnatd.store.index.base import Index, PrearchiveSession, Status
from xnatd.store.layout import DataDir, PrearchiveName

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def prearchive_row(session: PrearchiveSession) -> dict[str, Any]:
    """The fields of ``prearchive list --json`` (SPEC 7)."""
    return {
        "name": str(session.name),
        "project": session.project,
        "timestamp": session.timestamp,
        "label": session.label,
        "subject": session.subject,
        "study_uid": session.study_uid,
        "status": session.status.value,
        "reason": session.reason,
        "scans": session.scans,
        "files": session.files,
        "last_modified": _iso(session.last_modified),
    }


def _load_config(args: argparse.Namespace) -> Config:
    return config_module.load(args.config or config_module.default_config_path())


def _open_index(config: Config) -> Index:
    data = DataDir(config.site.data_dir)
    data.root.mkdir(parents=True, exist_ok=True)
    return open_index(config.index, data.root)


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c) or "").ljust(widths[c]) for c in columns))


# -- commands ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from xnatd.daemon import Daemon

    Daemon(Path(args.config or config_module.default_config_path())).run()
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_config(args)
    print(
        f"{config.path}: ok ({len(config.receivers)} receivers, {len(config.projects)} projects,"
        f" index {config.index if config.index == 'sqlite' else 'postgresql'})"
    )
    return EXIT_OK


def cmd_prearchive_list(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if args.status and args.status.upper() not in Status.__members__:
        raise UsageError(f"--status {args.status!r} is not one of {', '.join(Status)}")
    index = _open_index(config)
    try:
        rows = [
            prearchive_row(s) for s in index.list_sessions(project=args.project, status=args.status)
        ]
    finally:
        index.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(
            rows, ("name", "status", "subject", "scans", "files", "last_modified", "reason")
        )
    return EXIT_OK


def cmd_prearchive_show(args: argparse.Namespace) -> int:
    config = _load_config(args)
    try:
        name = PrearchiveName.parse(args.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    index = _open_index(config)
    try:
        session = index.get_session(name)
        if session is None:
            print(f"xnatd: no prearchive session {name}", file=sys.stderr)
            return EXIT_FAILED
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
    finally:
        index.close()
    data = DataDir(config.site.data_dir)
    detail = {
        **prearchive_row(session),
        "auto_archive": session.auto_archive,
        "source": session.source,
        "xsi_type": session.xsi_type,
        "path": str(data.session_dir(name)),
        "document": str(data.session_document(name)),
        "scan_list": sorted(scans.values(), key=lambda s: (len(s["id"]), s["id"])),
    }
    if args.json:
        print(json.dumps(detail, indent=2))
        return EXIT_OK
    for key, value in detail.items():
        if key != "scan_list":
            print(f"{key:>14}: {'' if value is None else value}")
    print()
    _print_table(detail["scan_list"], ("id", "modality", "files", "bytes", "series_uid"))
    return EXIT_OK


class UsageError(Exception):
    """A command was called with arguments that cannot work."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        help="configuration file (default: $XNATD_CONFIG, /etc/xnatd/xnatd.yaml, etc/xnatd.yaml)",
    )
    parser = argparse.ArgumentParser(
        prog="xnatd", description="DICOM intake appliance: XNAT's upload pipeline as one daemon."
    )
    parser.add_argument("--version", action="version", version=f"xnatd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.set_defaults(func=cmd_run)
    check = commands.add_parser("check-config", parents=[common], help="validate the configuration")
    check.set_defaults(func=cmd_check_config)

    prearchive = commands.add_parser("prearchive", help="sessions waiting in the prearchive")
    actions = prearchive.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="list prearchive sessions")
    listing.add_argument("--project")
    listing.add_argument("--status", help=f"one of {', '.join(Status)}")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_prearchive_list)
    show = actions.add_parser("show", parents=[common], help="one prearchive session")
    show.add_argument("name", metavar="PROJECT/TIMESTAMP/LABEL")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_prearchive_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"xnatd: configuration {exc.path} is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED
