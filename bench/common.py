"""Shared by the benchmarks: a fresh xnatd on loopback, and DCMTK storescu as the sender."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import free_port, port_accepts, wait_for  # noqa: E402


def send(storescu: str, port: int, folder: Path, aec: str, nodelay: bool = True) -> float:
    """Seconds for storescu to send a folder over one association."""
    env = {**os.environ, "TCP_NODELAY": "1" if nodelay else "0"}
    started = time.perf_counter()
    subprocess.run(
        [storescu, "-aet", "BENCH", "-aec", aec, "+sd", "127.0.0.1", str(port), str(folder)],
        check=True,
        capture_output=True,
        env=env,
    )
    return time.perf_counter() - started


@contextmanager
def xnatd(
    work: Path, site: str = "", projects: str = "BENCH: {}", index: str = "sqlite"
) -> Iterator[int]:
    """A fresh daemon in work/; yields its DICOM port."""
    port, http = free_port(), free_port()
    config = work / "xnatd.yaml"
    if "data_dir" not in site:
        site = "data_dir: data" + (f", {site}" if site else "")
    config.write_text(
        f"site: {{min_free_disk: 0, {site}}}\nindex: '{index}'\n"
        f"receivers: [{{ae_title: XNAT, port: {port}, host: 127.0.0.1}}]\n"
        f"projects: {{{projects}}}\nhttp: {{listen: '127.0.0.1:{http}'}}\n"
    )
    with open(work / "xnatd.log", "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "xnatd", "run", "-c", str(config)], stdout=log, stderr=log
        )
        try:
            wait_for(lambda: port_accepts(port), timeout=30)
            yield port
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (the receiving workers)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                todo.extend(int(child) for child in children)
        except OSError:
            continue
    return pids


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of the processes (all their threads) and of their
    children that ended and were reaped."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")
