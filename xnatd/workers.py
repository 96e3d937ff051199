"""Receiving processes beside the daemon (``workers:``), so C-STORE uses every core.

Each worker is ``xnatd run --worker K``: its own pynetdicom servers for the same
receivers, fed with connections the main process accepts and hands to the least busy
process (``xnatd.scp.handoff``), its own intake and index connection, node name
``NODE/wK``. Building, archiving, HTTP and the inbox stay in the main process; the
index's claims and leases (built for several nodes) keep them consistent. Metrics are
summed over the processes through prometheus-client's multiprocess mode. A worker dies
with the main process (parent death signal) and is restarted if it dies alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog

from xnatd.scp.handoff import HANDOFF_ENV, Dispatcher

log = structlog.get_logger(__name__)

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
STOP_TIMEOUT = 40.0  # a worker drains its associations (30 s) before it exits
FIRST_BACKOFF = 1.0  # a worker that died is restarted after this, doubled each time...
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 60.0  # ...and the delay starts over once a worker lived this long
GIVE_UP_AFTER = 5  # deaths in a row (each before HEALTHY_AFTER) before giving up on it


def worker_command(config_path: Path, number: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of worker ``number``.

    ``-P`` keeps the working directory off the module path: started from /srv, a
    checkout at /srv/xnatd would otherwise shadow the installed package. The folder
    this process imported xnatd from goes first on PYTHONPATH instead, so a worker
    runs the same code as its parent, installed or run from a checkout.
    """
    import xnatd

    package_parent = str(Path(xnatd.__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_parent, *([inherited] if inherited else [])]),
    }
    command = [sys.executable, "-P", "-m", "xnatd", "run", "-c", str(config_path.resolve()),
               "--worker", str(number)]  # fmt: skip
    return command, env


def prepare_metrics_dir(data_dir: Path, node: str) -> Path:
    """An empty folder for the processes' metric files, named in the environment so
    that every process (this one and its workers) picks it up before
    prometheus_client is imported."""
    folder = data_dir / ".metrics" / "".join(c if c.isalnum() else "_" for c in node)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[METRICS_ENV] = str(folder)
    return folder


def shared_metrics_dir() -> Path | None:
    """The folder named in the environment, with prometheus_client switched to it.

    The client picks its value store when first imported; the command line may have
    imported it before the folder was chosen, so choose again here.
    """
    folder = os.environ.get(METRICS_ENV)
    if not folder:
        return None
    from prometheus_client import values

    # Every increment asks for the process id, to notice a fork: a system call each
    # time (four an instance). Ours is known, and kept right across a fork.
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)
    return Path(folder)


_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _process_id() -> int:
    return _pid[0]


class Workers:
    """Starts, signals, reaps and restarts the worker processes."""

    def __init__(self, config_path: Path, count: int, dispatcher: Dispatcher) -> None:
        self.config_path = config_path
        self.count = count
        self.dispatcher = dispatcher
        self.processes: dict[int, subprocess.Popen] = {}
        self.started: dict[int, float] = {}  # monotonic start time of each worker
        self.deaths: dict[int, int] = {}  # deaths in a row, each soon after its start
        self.restart_at: dict[int, float] = {}  # dead workers waiting out their back-off
        self.given_up: dict[int, str] = {}  # workers that kept dying, and why

    def start(self) -> None:
        """Start workers 1 to count - 1 (the main process receives too)."""
        for number in range(1, self.count):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        channel = self.dispatcher.attach(number)
        command, env = worker_command(self.config_path, number)
        try:
            process = subprocess.Popen(
                command,
                pass_fds=[channel.fileno()],
                env={**env, HANDOFF_ENV: str(channel.fileno())},
            )
        finally:
            channel.close()  # the worker holds its own copy
        self.processes[number] = process
        self.started[number] = time.monotonic()
        log.info("worker_started", worker=number, pid=process.pid)

    def signal(self, signum: int) -> None:
        """Send a signal to every worker still running."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signum)

    def check(self) -> None:
        """Restart workers that died, with back-off; give up on one that keeps dying.

        A dead worker's metrics are marked dead and its channel detached at once, so
        the main process takes its connections meanwhile (and for good, once given up).
        """
        now = time.monotonic()
        for number, process in list(self.processes.items()):
            code = process.poll()
            if code is None:
                continue
            del self.processes[number]
            _mark_dead(process.pid)
            self.dispatcher.detach(number)
            lived = now - self.started.get(number, now)
            self.deaths[number] = 1 if lived >= HEALTHY_AFTER else self.deaths.get(number, 0) + 1
            if self.deaths[number] >= GIVE_UP_AFTER:
                reason = (
                    f"worker {number} exited {self.deaths[number]} times in a row soon after"
                    f" starting (last exit code {code}); the main process serves its share"
                )
                self.given_up[number] = reason
                log.error("worker_given_up", worker=number, code=code, reason=reason)
                continue
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self.deaths[number] - 1))
            self.restart_at[number] = now + delay
            log.error("worker_died", worker=number, pid=process.pid, code=code, restart_in=delay)
        for number, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[number]
                self._spawn(number)

    def stop(self) -> None:
        """Ask every worker to stop; one not gone within ``STOP_TIMEOUT`` is killed."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _mark_dead(process.pid)
        self.processes.clear()
        self.restart_at.clear()


def _mark_dead(pid: int) -> None:
    if os.environ.get(METRICS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
