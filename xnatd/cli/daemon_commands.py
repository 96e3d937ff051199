"""Commands that run or check the daemon: ``run``, ``check-config``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xnatd import config as config_module
from xnatd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    load_config,
)
from xnatd.config import ConfigError
from xnatd.store import DataDirError
from xnatd.store.layout import DataDir


# -- commands ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """``xnatd run``: run the daemon in the foreground until SIGTERM; 1 when it cannot
    start (a port in use, the data directory not writable).
    """
    from xnatd.memory import configure_allocator

    configure_allocator()  # before any thread: see xnatd/memory.py
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
    """``xnatd check-config``: validate the configuration and that the data directory
    is writable; writes nothing (a missing ``site.uid_secret`` is reported, for run).
    """
    config = load_config(args, create_secret=False)
    problem = DataDir(config.site.data_dir).writable_problem()
    if problem is not None:
        raise ConfigError(config.path, [f"site.data_dir: {problem}"])
    print(
        f"{config.path}: ok ({len(config.receivers)} receivers, {len(config.projects)} projects,"
        f" index {config.index if config.index == 'sqlite' else 'postgresql'})"
    )
    if config.site.uid_secret_missing:
        print(f"  site.uid_secret: {config.site.uid_secret} does not exist yet; run creates it")
    return EXIT_OK
