"""Workers that die are restarted with back-off, and given up on when they keep dying."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import wait_for
from structlog.testing import capture_logs

from xnatd import workers as workers_module
from xnatd.scp.handoff import Dispatcher, Load


def test_worker_that_keeps_dying_is_restarted_with_backoff_then_given_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each death doubles the wait before the next start; after GIVE_UP_AFTER deaths in
    a row the worker is given up with a reason that names its exit code."""
    crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
    monkeypatch.setattr(workers_module, "worker_command", lambda path, n: (crash, {}))
    monkeypatch.setattr(workers_module, "FIRST_BACKOFF", 0.05)
    workers = workers_module.Workers(tmp_path / "xnatd.yaml", 2, Dispatcher(Load()))
    with capture_logs() as events:
        workers.start()
        try:

            def given_up() -> bool:
                workers.check()
                return bool(workers.given_up)

            wait_for(given_up, timeout=30, interval=0.01)
        finally:
            workers.stop()
    delays = [e["restart_in"] for e in events if e["event"] == "worker_died"]
    assert delays == [0.05 * 2**n for n in range(workers_module.GIVE_UP_AFTER - 1)]
    [gave_up] = [e for e in events if e["event"] == "worker_given_up"]
    assert "exit code 3" in gave_up["reason"] and "exit code 3" in workers.given_up[1]
    assert 1 not in workers.processes  # not started again
