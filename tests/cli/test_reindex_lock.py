"""Issue 16.10: ``xnatd reindex`` refuses while a daemon holds the index.

Run during a send, it rebuilt the index under the daemon, which split one study into
two sessions. The daemon holds the index for its life (a file lock for SQLite, a
session advisory lock for PostgreSQL), so a daemon killed with -9 lets go at once.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, postgres_schema, storescu_send

from xnatd import config as config_module
from xnatd.pipeline import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def index_hook(request: pytest.FixtureRequest) -> Iterator[Callable[[dict], None]]:
    if request.param == "sqlite":
        yield lambda settings: None
        return
    with postgres_schema() as url:

        def use_postgres(settings: dict) -> None:
            settings["index"] = url

        yield use_postgres


def test_reindex_refuses_while_a_daemon_runs(
    make_xnatd, index_hook: Callable[[dict], None], storescu: str, dcm_dir: Path
) -> None:
    xnatd: Xnatd = make_xnatd(hook=index_hook)
    paths = write_study(
        StudySpec("held", study_description="DEMO", series=[SeriesSpec(1, instances=2)]),
        dcm_dir,
    )
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    [before] = xnatd.wait_status("READY")

    refused = xnatd.cli("reindex", check=False)
    assert refused.returncode == 1
    assert refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert "running daemon" in line and "nothing was changed" in line
    assert xnatd.prearchive() == [before]

    xnatd.kill()  # the lock dies with its holder: no stale lease to wait out
    done = xnatd.cli("reindex", check=False)
    assert done.returncode == 0, done.stderr
    assert "1 prearchive sessions" in done.stdout


def test_a_daemon_does_not_start_while_reindex_holds_the_index(make_xnatd) -> None:
    xnatd: Xnatd = make_xnatd(start=False)
    config = config_module.load(xnatd.config_path)
    store = open_store(config)
    try:
        assert store.index.hold(exclusive=True)  # as reindex does
        started = subprocess.run(
            [sys.executable, "-m", "xnatd", "run", "-c", str(xnatd.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        store.close()
    assert started.returncode == 1
    assert "is being rebuilt (xnatd reindex)" in started.stderr.splitlines()[-1]
