"""The ``users`` command: HTTP API accounts and their roles."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from xnatd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    load_config,
    print_table,
)
from xnatd.config import Config


def users_file(config: Config):
    """The users file the configuration names.

    Raises:
        UsageError: the configuration lists its users inline.
    """
    from xnatd.users import UsersFile

    if config.users_file is None:
        raise UsageError(
            f"{config.path} lists its users inline; set `users: users.yaml` there so that"
            " `xnatd users` can write them"
        )
    return UsersFile(config.users_file)


def roles_argument(config: Config, pairs: Sequence[str]) -> dict[str, str]:
    """``--project PROJECT=ROLE`` values as a mapping of project to role.

    Raises:
        UsageError: a value is not of that form, or names no configured project.
    """
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

    config = load_config(args)
    users = users_file(config)
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
                print_table(rows, ("name", "admin", "projects"))
            return EXIT_OK
        if args.action == "remove":
            users.remove(args.name)
            print(f"user {args.name} removed from {users.path}", file=sys.stderr)
            return EXIT_OK
        if args.action == "add":
            token = users.add(args.name, args.admin, roles_argument(config, args.project))
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
