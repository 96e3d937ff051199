"""The argument parser: every command, its options and the function that runs it."""

from __future__ import annotations

import argparse
from pathlib import Path

from xnatd import __version__
from xnatd.archive.policy import OVERWRITE_MODES
from xnatd.cli.anon_commands import cmd_anon_apply, cmd_anon_check
from xnatd.cli.archive_commands import (
    cmd_audit,
    cmd_receipts,
    cmd_reindex,
    cmd_sessions_change,
    cmd_sessions_list,
    cmd_sessions_show,
)
from xnatd.cli.daemon_commands import cmd_check_config, cmd_run
from xnatd.cli.prearchive_commands import (
    cmd_clean_pixels,
    cmd_prearchive_list,
    cmd_prearchive_operation,
    cmd_prearchive_show,
)
from xnatd.cli.transfer_commands import cmd_import, cmd_send
from xnatd.cli.user_commands import cmd_users
from xnatd.store.index.records import (
    ArchiveStatus,
    Status,
)

LOOKUP_HELP = "the lookup[] table: KEY-TYPE/KEY = VALUE lines"


def build_parser() -> argparse.ArgumentParser:
    """The ``xnatd`` argument parser: each command sets ``func``, the function to run."""
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
    for user_action in (add, listing, remove, token):
        user_action.set_defaults(func=cmd_users)

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
