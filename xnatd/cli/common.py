"""What every command shares: exit codes, the configuration, one way to open the store,
the stages over it, and argument parsing helpers."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xnatd import config as config_module
from xnatd.config import Config
from xnatd.operations import Operations
from xnatd.pipeline import Pipeline, open_store
from xnatd.routing import UNASSIGNED
from xnatd.store import Store
from xnatd.store.layout import DataDir, PrearchiveName

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_REJECTED = 3  # anon apply: the script rejected the file
EXIT_INTERRUPTED = 130  # Ctrl-C


class UsageError(Exception):
    """A command was called with arguments that cannot work."""


def load_config(args: argparse.Namespace, *, create_secret: bool = True) -> Config:
    """The configuration named by ``-c``, ``$XNATD_CONFIG`` or the default places
    (``create_secret``: as :func:`xnatd.config.load`).

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
    return config_module.load(path, create_secret=create_secret)


@contextmanager
def open_store_for_writing(config: Config) -> Iterator[Store]:
    """The store for one command that writes, closed however the command ends."""
    store = open_store(config)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_store_for_reading(config: Config) -> Iterator[Store | None]:
    """The store for a command that only reads; None when there is no data directory
    yet (a read never creates one)."""
    if not DataDir(config.site.data_dir).exists():
        yield None
        return
    with open_store_for_writing(config) as store:
        yield store


def nothing_found(what: str, config: Config) -> str:
    """What an empty listing says: which configuration and data directory it read."""
    data = config.site.data_dir
    state = "" if DataDir(data).exists() else ", which does not exist yet"
    return f"no {what} (configuration {config.path}, data directory {data}{state})"


def project_argument(config: Config, project: str | None) -> str | None:
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


def actor() -> str:
    """Who the audit trail names for this command: ``cli:USER``."""
    return f"cli:{getpass.getuser()}"


def pipeline_of(config: Config, store: Store) -> Pipeline:
    """The stages over ``store``, as this command's own node (``host:cli:pid``)."""
    from xnatd.metrics import Metrics

    node = f"{socket.gethostname()}:cli:{os.getpid()}"
    return Pipeline.assemble(store, lambda: config, Metrics(), node)


def operations_of(config: Config, store: Store) -> Operations:
    """The prearchive and archive operations over ``store``, as this command's node."""
    return pipeline_of(config, store).operations


def prearchive_name(text: str) -> PrearchiveName:
    """A ``PROJECT/TIMESTAMP/LABEL`` argument.

    Raises:
        UsageError: not of that form.
    """
    try:
        return PrearchiveName.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def date_argument(text: str | None) -> str | None:
    """A date argument (``YYYY-MM-DD`` or ``YYYYMMDD``) as ``YYYY-MM-DD``; None stays None.

    Raises:
        UsageError: not a date of that form.
    """
    if text is None:
        return None
    digits = text.replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        raise UsageError(f"{text!r} is not a date (YYYY-MM-DD)")
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:]}"


def print_table(rows: list[dict[str, Any]], columns: Sequence[str], empty: str = "") -> None:
    """Print rows as left-aligned columns under upper-case headings (``empty`` if none)."""
    if not rows:
        print(empty or "(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c) or "").ljust(widths[c]) for c in columns))
