"""Several receiving processes on one port (``workers:``; connections handed over by load)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import wait_for
from pynetdicom import AE
from pynetdicom.sop_class import Verification


def processes(config: Path) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"xnatd run -c {config}"], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in found.split()]


def start_two_processes(make_xnatd):
    """A daemon with one worker, once the worker serves (until then the main process
    takes every connection, as it should)."""
    xnatd = make_xnatd(hook=lambda s: s.update(workers=2), node="n1")
    wait_for(lambda: len(processes(xnatd.config_path)) == 2, timeout=20)
    wait_for(lambda: xnatd.events("worker_ready"), timeout=30)
    return xnatd


def send_concurrently(storescu: str, port: int, folders: list[Path]) -> list[int]:
    senders = [
        subprocess.Popen(
            [storescu, "-aec", "XNAT", "+sd", "127.0.0.1", str(port), str(folder)],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for folder in folders
    ]
    return [sender.wait(timeout=120) for sender in senders]


def test_two_processes_share_the_port_the_index_and_the_metrics(
    make_xnatd, storescu: str, tmp_path: Path
) -> None:
    xnatd = start_two_processes(make_xnatd)
    folders = []
    for n in range(16):
        folder = tmp_path / f"study{n}"
        spec = StudySpec(f"workers{n}", patient_id=f"W{n}", study_description="DEMO")
        spec.series = [SeriesSpec(1, instances=10)]
        write_study(spec, folder)
        folders.append(folder)
    assert send_concurrently(storescu, xnatd.port, folders) == [0] * 16
    rows = xnatd.wait_status("READY", count=16)
    assert sorted(r["files"] for r in rows) == [10] * 16
    stored = re.search(
        r'xnatd_instances_received_total\{ae="XNAT",calling_ae="STORESCU",status="stored"\} (\S+)',
        xnatd.metrics(),
    )
    assert stored and float(stored.group(1)) == 160  # summed over both processes
    accepted = xnatd.events("association_accepted")  # one log, both processes
    assert len(accepted) == 16
    assert {e["node"] for e in accepted} == {"n1", "n1/w1"}  # both took associations
    assert xnatd.stop() == 0
    wait_for(lambda: not processes(xnatd.config_path), timeout=20)


def test_open_associations_are_spread_evenly_over_the_processes(make_xnatd) -> None:
    """Four associations held open at once land 2 and 2: each goes to the process with
    the fewest open (a hash of the address, as SO_REUSEPORT did, gave 3/1 or 4/0 in
    five cases of eight)."""
    xnatd = start_two_processes(make_xnatd)
    scu = AE(ae_title="BALANCE")
    scu.add_requested_context(Verification)
    held = []
    try:
        for _ in range(4):
            assoc = scu.associate("127.0.0.1", xnatd.port, ae_title="XNAT")
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0x0000  # served, not just accepted
            held.append(assoc)
        accepted = wait_for(
            lambda: (e := xnatd.events("association_accepted")) and len(e) == 4 and e
        )
        assert Counter(e["node"] for e in accepted) == {"n1": 2, "n1/w1": 2}
    finally:
        for assoc in held:
            assoc.release()
    assert xnatd.stop() == 0


def test_a_worker_dies_with_a_killed_daemon_and_is_restarted_when_it_dies_alone(
    make_xnatd,
) -> None:
    xnatd = make_xnatd(hook=lambda s: s.update(workers=2))
    pids = wait_for(lambda: (p := processes(xnatd.config_path)) and len(p) == 2 and p)
    worker = next(pid for pid in pids if pid != xnatd.process.pid)
    os.kill(worker, signal.SIGKILL)
    restarted = wait_for(
        lambda: [p for p in processes(xnatd.config_path) if p not in pids] or None, timeout=20
    )
    assert xnatd.events("worker_died")
    xnatd.kill()  # kill -9 of the main process: the worker must not outlive it
    wait_for(lambda: not any(p in processes(xnatd.config_path) for p in restarted), timeout=20)
