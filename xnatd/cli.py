"""The ``xnatd`` command line: parses arguments and calls one function per command.

Only this module picks exit codes: 0 done, 1 refused or failed, 2 bad usage or
configuration. Errors go to stderr; ``--json`` gives machine output.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xnatd import __version__, logs
from xnatd import config as config_module
from xnatd.archive.policy import OVERWRITE_MODES
from xnatd.config import Config, ConfigError
from xnatd.operations import Refused
from xnatd.routing import UNASSIGNED
from xnatd.rows import archived_row, finding_row, iso, prearchive_row
from xnatd.store import DataDirError, Store
from xnatd.store.index.records import ArchiveStatus, SessionFilter, Status

if TYPE_CHECKING:
    from xnatd.anon.script import Script
    from xnatd.phi.clean import Region
from xnatd.store.layout import DataDir, PrearchiveName

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _load_config(args: argparse.Namespace) -> Config:
    """The configuration named by ``-c``, ``$XNATD_CONFIG`` or the default places.

    Raises:
        UsageError: no file was named and none is at the default places.
        ConfigError: the file does not validate.
    """
    path = args.config or config_module.default_config_path()
    if args.config is None and not os.environ.get("XNATD_CONFIG") and not path.is_file():
        raise UsageError(
            "no configuration: none at /etc/xnatd/xnatd.yaml nor at etc/xnatd.yaml under"
            f" {Path.cwd()}; give -c CONFIG or set XNATD_CONFIG"
        )
    return config_module.load(path)


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    """The store for one command that writes, closed however the command ends."""
    store = Store.open(config)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _reading(config: Config) -> Iterator[Store | None]:
    """The store for a command that only reads; None when there is no data directory
    yet (a read never creates one)."""
    if not DataDir(config.site.data_dir).exists():
        yield None
        return
    with _store(config) as store:
        yield store


def _nothing(what: str, config: Config) -> str:
    """What an empty listing says: which configuration and data directory it read."""
    data = config.site.data_dir
    state = "" if DataDir(data).exists() else ", which does not exist yet"
    return f"no {what} (configuration {config.path}, data directory {data}{state})"


def _project(config: Config, project: str | None) -> str | None:
    """A ``--project`` value as a configured project ID (aliases too) or Unassigned.

    Raises:
        UsageError: no such project.
    """
    if project is None or project == UNASSIGNED or project in config.projects:
        return project
    resolved = config.resolve_project(project)
    if resolved is None:
        known = ", ".join([*sorted(config.projects), UNASSIGNED])
        raise UsageError(f"--project {project}: no such project in {config.path} ({known})")
    return resolved


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _operations(config: Config, store: Store):
    from xnatd.metrics import Metrics
    from xnatd.operations import Operations

    node = f"{socket.gethostname()}:cli:{os.getpid()}"
    return Operations(store, lambda: config, Metrics(), node)


def _name(text: str) -> PrearchiveName:
    try:
        return PrearchiveName.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _date(text: str | None) -> str | None:
    if text is None:
        return None
    digits = text.replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        raise UsageError(f"{text!r} is not a date (YYYY-MM-DD)")
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str], empty: str = "") -> None:
    if not rows:
        print(empty or "(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c) or "").ljust(widths[c]) for c in columns))


# -- commands ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from xnatd.memory import limit_arenas

    limit_arenas()  # before any thread: see xnatd/memory.py
    path = Path(args.config or config_module.default_config_path())
    if not args.worker:
        config = config_module.load(path)
        problem = DataDir(config.site.data_dir).writable_problem()
        if problem is not None:
            raise DataDirError(problem)
        if config.workers > 1:  # before prometheus_client is imported (by the daemon)
            from xnatd.workers import prepare_metrics_dir

            prepare_metrics_dir(config.site.data_dir, config.site.node)
    from xnatd.daemon import Daemon, StartupError

    try:
        Daemon(path, worker=args.worker).run()
    except StartupError as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_config(args)
    problem = DataDir(config.site.data_dir).writable_problem()
    if problem is not None:
        raise ConfigError(config.path, [f"site.data_dir: {problem}"])
    print(
        f"{config.path}: ok ({len(config.receivers)} receivers, {len(config.projects)} projects,"
        f" index {config.index if config.index == 'sqlite' else 'postgresql'})"
    )
    return EXIT_OK


def cmd_prearchive_list(args: argparse.Namespace) -> int:
    config = _load_config(args)
    if args.status and args.status.upper() not in Status.__members__:
        raise UsageError(f"--status {args.status!r} is not one of {', '.join(Status)}")
    project = _project(config, args.project)
    with _reading(config) as store:
        sessions = store.index.list_sessions(project=project, status=args.status) if store else []
        rows = [prearchive_row(s) for s in sessions]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(
            rows,
            ("name", "status", "subject", "scans", "files", "last_modified", "reason"),
            empty=_nothing("prearchive sessions", config),
        )
    return EXIT_OK


def cmd_prearchive_show(args: argparse.Namespace) -> int:
    config = _load_config(args)
    name = _name(args.name)
    with _reading(config) as store:
        session = store.index.get_session(name) if store else None
        if store is None or session is None:
            print(f"xnatd: {_nothing(f'prearchive session {name}', config)}", file=sys.stderr)
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
    _print_table(detail["scan_list"], ("id", "modality", "files", "bytes", "series_uid"))
    if detail["findings"]:
        print(f"\nfindings ({len(detail['findings'])}):")
        _print_table(detail["findings"], ("kind", "scan", "file", "where", "what"))
    return EXIT_OK


def cmd_prearchive_operation(args: argparse.Namespace) -> int:
    config = _load_config(args)
    name = _name(args.name)
    with _store(config) as store:
        operations = _operations(config, store)
        if args.action == "archive":
            outcome = operations.archive(
                name, args.overwrite, _actor(), accept_findings=args.accept_findings
            )
            if outcome.result in ("conflict", "error", "held"):
                print(f"xnatd: {name}: {outcome.result.upper()}: {outcome.reason}", file=sys.stderr)
                return EXIT_FAILED
            print(f"{name} {outcome.result} as {outcome.session_id} ({outcome.files} files)")
        elif args.action == "rebuild":
            status = operations.rebuild(name, _actor())
            print(f"{name} rebuilt: {status.value if status else 'reopened by new files'}")
        elif args.action == "move":
            print(f"{name} moved to {operations.move(name, args.to, _actor())}")
        else:
            print(f"{name} deleted; files kept in {operations.delete(name, _actor())}")
    return EXIT_OK


def _regions(texts: Sequence[str]) -> list[tuple[str, Region]]:
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
    config = _load_config(args)
    name = _name(args.name)
    regions = None if args.all_findings else _regions(args.region)
    with _store(config) as store:
        files, status = _operations(config, store).clean_pixels(name, regions, _actor())
    state = status.value if status else "reopened by new files"
    print(f"{name}: pixels blanked in {files} files; checked again: {state}")
    return EXIT_OK


def cmd_sessions_list(args: argparse.Namespace) -> int:
    config = _load_config(args)
    statuses = (
        tuple(ArchiveStatus)
        if args.status == "all"
        else (ArchiveStatus(args.status),)
        if args.status
        else (ArchiveStatus.ACTIVE, ArchiveStatus.QUARANTINE)
    )
    query = SessionFilter(
        project=_project(config, args.project),
        subject=args.subject,
        label=args.label,
        modality=args.modality,
        since=_date(args.since),
        until=_date(args.until),
        study_uid=args.study_uid,
        scan_type=args.scan_type,
        statuses=statuses,
    )
    with _reading(config) as store:
        rows = [archived_row(s, store) for s in store.index.list_archived(query)] if store else []
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(
            rows,
            ("id", "project", "subject", "label", "date", "modality", "scans", "files", "status"),
            empty=_nothing("archived sessions", config),
        )
    return EXIT_OK


def cmd_sessions_show(args: argparse.Namespace) -> int:
    config = _load_config(args)
    with _reading(config) as store:
        session = store.index.get_archived(args.id) if store else None
        if store is None or session is None:
            print(f"xnatd: {_nothing(f'archived session {args.id}', config)}", file=sys.stderr)
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
    _print_table(detail["scan_list"], ("scan", "type", "modality", "files", "series_uid"))
    for result in detail["autorun"]:
        print(f"autorun {result['step']}: {result['result']}")
    return EXIT_OK


def cmd_sessions_change(args: argparse.Namespace) -> int:
    config = _load_config(args)
    with _store(config) as store:
        operations = _operations(config, store)
        if args.action == "release":
            changed = operations.release(args.id, _actor())
        else:
            changed = operations.delete_archived(args.id, purge=args.purge_files, actor=_actor())
    print(f"{changed.id}: {changed.status.value} ({store.data.root / changed.path})")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    config = _load_config(args)
    with _reading(config) as store:
        events = store.audit.events(args.session) if store else []
    rows = [
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
        print(_nothing("audit events", config))
    else:
        for row in rows:
            details = " ".join(f"{k}={v}" for k, v in sorted(row["details"].items()))
            print(
                f"{row['time']}  {row['event']:<15} {row['actor'] or '':<16} "
                f"{row['session'] or '':<40} {details}"
            )
    return EXIT_OK


def cmd_receipts(args: argparse.Namespace) -> int:
    from xnatd.store.receipts import parse_since, receipts, with_iso_times

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    config = _load_config(args)
    with _store(config) as store:
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
    from xnatd.store.reindex import reindex

    config = _load_config(args)
    with _store(config) as store:
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


EXIT_REJECTED = 3
EXIT_INTERRUPTED = 130


def cmd_import(args: argparse.Namespace) -> int:
    from xnatd.intake.importer import Importer, ImportFailed, ImportRequest, Interruption
    from xnatd.intake.intake import Intake

    config = _load_config(args)
    with _store(config) as store:
        operations = _operations(config, store)
        intake = Intake(lambda: config, store.prearchive, operations.metrics)
        importer = Importer(store, intake, operations, lambda: config, operations.node)
        request = ImportRequest(
            path=args.path,
            project=args.project,
            subject=args.subject,
            session=args.session,
            archive=args.archive,
            ignore_unparsable=args.ignore_unparsable,
            actor=_actor(),
            interruption=(interruption := Interruption()),
        )
        previous = signal.signal(signal.SIGINT, lambda *_: interruption.interrupt())
        try:
            summary = importer.run(request, quiet=args.json)
        except ImportFailed as exc:
            print(f"xnatd: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("xnatd: import interrupted; nothing was imported", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps(summary.__dict__, indent=2))
        return EXIT_OK
    created, merged = len(summary.sessions_created), len(summary.sessions_merged)
    print(
        f"imported {summary.files} files ({summary.bytes / 1e6:.1f} MB) in "
        f"{summary.seconds:.1f} s: {created} sessions created, {merged} merged"
        + (f", archived as {', '.join(summary.archived)}" if summary.archived else "")
    )
    for name in summary.sessions_created + summary.sessions_merged:
        print(f"  {name}")
    for skipped in summary.skipped:
        print(f"  skipped {skipped['entry']}: {skipped['reason']}")
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from xnatd.intake.staging import HostileArchive
    from xnatd.sender import SendError, Target, collect, send
    from xnatd.tls import TLSError, client_context

    tls = None
    if args.tls or args.cert or args.key or args.ca:
        try:
            tls = client_context(args.ca, args.cert, args.key)
        except TLSError as exc:
            print(f"xnatd: --{exc.key}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    staging = Path(tempfile.mkdtemp(prefix="xnatd-send-"))
    try:
        try:
            files = collect(args.path, staging)
        except (HostileArchive, OSError) as exc:
            print(f"xnatd: {exc}", file=sys.stderr)
            return EXIT_FAILED
        try:
            summary = send(
                files,
                Target(args.host, args.port, args.aec, args.aet, tls),
                associations=max(1, args.associations),
                retries=args.retries,
                quiet=args.json,
            )
        except SendError as exc:
            print(f"xnatd: {exc}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = {
        "sent": summary.sent,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "statuses": dict(summary.statuses),
        "retries": summary.retries,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(summary.statuses.items()))
        print(
            f"sent {summary.sent}, failed {len(summary.failed)}, skipped {len(summary.skipped)}"
            f" ({statuses or 'no responses'}; {summary.retries} retries)"
        )
        for failure in summary.failed:
            print(f"  failed {failure['entry']}: {failure['status']} {failure['reason']}")
        for skipped in summary.skipped:
            print(f"  skipped {skipped['entry']}: {skipped['reason']}")
    return EXIT_OK if not summary.failed else EXIT_FAILED


def _load_script(args: argparse.Namespace) -> Script:
    """The script named on the command line, with its --lookup table.

    Raises:
        ScriptError, LookupTableError, OSError: naming the file.
    """
    from xnatd.anon.lookup import load_lookup_table
    from xnatd.anon.script import ScriptError, load

    script = load(args.script)
    if args.lookup is not None:
        return script.with_lookup(load_lookup_table(args.lookup))
    if "lookup" in script.functions:
        raise ScriptError(f"{args.script} calls lookup[]; give its table with --lookup FILE")
    return script


def cmd_anon_check(args: argparse.Namespace) -> int:
    from xnatd.anon.lookup import LookupTableError
    from xnatd.anon.script import ScriptError

    try:
        script = _load_script(args)
    except (ScriptError, LookupTableError, OSError) as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.script}: ok ({len(script.statements)} statements, version {script.version})")
    return EXIT_OK


def cmd_anon_apply(args: argparse.Namespace) -> int:
    from xnatd.anon.apply import apply_to_bytes
    from xnatd.anon.engine import ScriptFailed
    from xnatd.anon.lookup import LookupTableError
    from xnatd.anon.script import ScriptError

    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--var {item!r} is not NAME=VALUE")
        variables[name] = value
    try:
        script = _load_script(args)
        result = apply_to_bytes(script, args.input.read_bytes(), variables)
    except (ScriptError, LookupTableError, ScriptFailed, OSError) as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result is None:
        print(f"xnatd: {args.input}: rejected by {args.script}", file=sys.stderr)
        return EXIT_REJECTED
    args.output.write_bytes(result)
    return EXIT_OK


def _users_file(config: Config):
    from xnatd.users import UsersFile

    if config.users_file is None:
        raise UsageError(
            f"{config.path} lists its users inline; set `users: users.yaml` there so that"
            " `xnatd users` can write them"
        )
    return UsersFile(config.users_file)


def _roles(config: Config, pairs: Sequence[str]) -> dict[str, str]:
    from xnatd.users import ROLES

    roles: dict[str, str] = {}
    for pair in pairs:
        project, sep, role = pair.partition("=")
        if not sep or role not in ROLES:
            raise UsageError(f"--project {pair!r} is not PROJECT={'|'.join(ROLES)}")
        if project not in config.projects:
            raise UsageError(f"--project {project}: not a project of {config.path}")
        roles[project] = role
    return roles


def cmd_users(args: argparse.Namespace) -> int:
    """``xnatd users add|list|remove|token``: the users file the configuration names.

    A new token goes alone to stdout (``TOKEN=$(xnatd users add ...)``), what it is to
    stderr; the running daemon picks the file up within a second.
    """
    from xnatd.users import UsersError

    config = _load_config(args)
    users = _users_file(config)
    try:
        if args.action == "list":
            rows = [
                {"name": e.name, "admin": e.admin, "projects": e.projects} for e in users.entries()
            ]
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for row in rows:
                    row["projects"] = ", ".join(f"{p}={r}" for p, r in row["projects"].items())
                    row["admin"] = "yes" if row["admin"] else ""
                _print_table(rows, ("name", "admin", "projects"))
            return EXIT_OK
        if args.action == "remove":
            users.remove(args.name)
            print(f"user {args.name} removed from {users.path}", file=sys.stderr)
            return EXIT_OK
        if args.action == "add":
            token = users.add(args.name, args.admin, _roles(config, args.project))
            what = f"user {args.name} added to {users.path}"
        else:
            token = users.new_token(args.name)
            what = f"user {args.name} has a new token (the old one no longer works)"
    except UsersError as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{what}; its API token, shown only this once:", file=sys.stderr)
    print(token)
    return EXIT_OK


LOOKUP_HELP = "the lookup[] table: KEY-TYPE/KEY = VALUE lines"


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
    run.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # xnatd.workers
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
    for action, summary in (
        ("archive", "archive a session"),
        ("rebuild", "build a session now"),
        ("delete", "delete a session (files kept under deleted/)"),
        ("move", "move a session to another project"),
    ):
        operation = actions.add_parser(action, parents=[common], help=summary)
        operation.add_argument("name", metavar="PROJECT/TIMESTAMP/LABEL")
        if action == "archive":
            operation.add_argument("--overwrite", choices=OVERWRITE_MODES, default="none")
            operation.add_argument(
                "--accept-findings",
                action="store_true",
                help="archive a HELD session, accepting its findings (audited)",
            )
        if action == "move":
            operation.add_argument("--to", required=True, metavar="PROJECT")
        operation.set_defaults(func=cmd_prearchive_operation)
    clean = actions.add_parser(
        "clean-pixels",
        parents=[common],
        help="blank pixel regions (burned-in text), then check the session again",
    )
    clean.add_argument("name", metavar="PROJECT/TIMESTAMP/LABEL")
    which = clean.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--all-findings", action="store_true", help="every region the pixel check found"
    )
    which.add_argument(
        "--region", action="append", metavar="SCAN,FRAME,x,y,w,h", help="a region (repeatable)"
    )
    clean.set_defaults(func=cmd_clean_pixels)

    sessions = commands.add_parser("sessions", help="archived sessions")
    verbs = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = verbs.add_parser("list", parents=[common], help="search archived sessions")
    for option in ("project", "subject", "label", "modality", "study-uid", "scan-type"):
        listing.add_argument(f"--{option}")
    listing.add_argument("--since", metavar="DATE")
    listing.add_argument("--until", metavar="DATE")
    listing.add_argument("--status", choices=[*ArchiveStatus, "all"])
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_sessions_list)
    show = verbs.add_parser("show", parents=[common], help="one archived session")
    show.add_argument("id", metavar="SESSION_ID")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_sessions_show)
    release = verbs.add_parser("release", parents=[common], help="quarantine to active")
    release.add_argument("id", metavar="SESSION_ID")
    release.set_defaults(func=cmd_sessions_change)
    delete = verbs.add_parser("delete", parents=[common], help="mark deleted")
    delete.add_argument("id", metavar="SESSION_ID")
    delete.add_argument("--purge-files", action="store_true", help="move files under deleted/")
    delete.set_defaults(func=cmd_sessions_change)

    audit = commands.add_parser("audit", parents=[common], help="the audit trail")
    audit.add_argument("--session", metavar="SESSION_ID")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)
    receipts = commands.add_parser(
        "receipts", parents=[common], help="per sender: received, rejected, committed, where"
    )
    receipts.add_argument("--calling-ae", metavar="AE")
    receipts.add_argument("--since", metavar="DATE", help="YYYY-MM-DD or ISO 8601 time (UTC)")
    receipts.add_argument("--json", action="store_true")
    receipts.set_defaults(func=cmd_receipts)
    reindex = commands.add_parser(
        "reindex",
        parents=[common],
        help="rebuild the index from the data directory (refused while a daemon runs)",
    )
    reindex.set_defaults(func=cmd_reindex)

    upload = commands.add_parser(
        "import", parents=[common], help="import a zip, tar, folder or file, all or nothing"
    )
    upload.add_argument("path", type=Path)
    upload.add_argument("--project", required=True)
    upload.add_argument("--subject")
    upload.add_argument("--session", metavar="LABEL")
    upload.add_argument("--archive", action="store_true", help="archive at once")
    upload.add_argument("--ignore-unparsable", action="store_true")
    upload.add_argument("--json", action="store_true")
    upload.set_defaults(func=cmd_import)

    sender = commands.add_parser("send", help="C-STORE a folder or archive, with progress")
    sender.add_argument("path", type=Path)
    sender.add_argument("--host", required=True)
    sender.add_argument("--port", type=int, required=True)
    sender.add_argument("--aec", required=True, help="called AE title")
    sender.add_argument("--aet", default="XNATD_SEND", help="calling AE title")
    sender.add_argument("--associations", type=int, default=1)
    sender.add_argument("--retries", type=int, default=2)
    sender.add_argument("--json", action="store_true")
    sender.add_argument("--tls", action="store_true", help="DICOM over TLS (1.2 or later)")
    sender.add_argument("--cert", type=Path, help="our certificate (PEM), with --key")
    sender.add_argument("--key", type=Path, help="the certificate's private key (PEM)")
    sender.add_argument("--ca", type=Path, help="CA that signed the receiver's certificate")
    sender.set_defaults(func=cmd_send)

    users = commands.add_parser("users", help="HTTP users and their API tokens")
    user_actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = user_actions.add_parser("add", parents=[common], help="add a user; prints its token")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="sees and does everything")
    add.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="P=ROLE",
        help="a role in a project: owner, member or collaborator (repeatable)",
    )
    listing = user_actions.add_parser("list", parents=[common], help="list users")
    listing.add_argument("--json", action="store_true")
    remove = user_actions.add_parser("remove", parents=[common], help="remove a user")
    remove.add_argument("name")
    token = user_actions.add_parser("token", parents=[common], help="give a user a new token")
    token.add_argument("name")
    for action in (add, listing, remove, token):
        action.set_defaults(func=cmd_users)

    anon = commands.add_parser("anon", help="DicomEdit 6 scripts")
    anon_actions = anon.add_subparsers(dest="action", required=True, metavar="ACTION")
    check_script = anon_actions.add_parser("check", help="parse a script: exit 0, or 2")
    check_script.add_argument("script", type=Path)
    check_script.add_argument("--lookup", type=Path, metavar="FILE", help=LOOKUP_HELP)
    check_script.set_defaults(func=cmd_anon_check)
    apply = anon_actions.add_parser(
        "apply", help="apply a script to a file: 0 written, 3 rejected, 2 failed"
    )
    apply.add_argument("script", type=Path)
    apply.add_argument("input", type=Path, metavar="IN")
    apply.add_argument("output", type=Path, metavar="OUT")
    apply.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    apply.add_argument("--lookup", type=Path, metavar="FILE", help=LOOKUP_HELP)
    apply.set_defaults(func=cmd_anon_apply)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        # Commands print their results on stdout; events (warnings up) go to stderr.
        logs.configure("console", "warning")
    try:
        return args.func(args)
    except ConfigError as exc:
        if len(exc.problems) == 1:
            print(f"xnatd: configuration {exc.path}: {exc.problems[0]}", file=sys.stderr)
        else:
            print(f"xnatd: configuration {exc.path} is not valid:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except DataDirError as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as exc:
        print(f"xnatd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
