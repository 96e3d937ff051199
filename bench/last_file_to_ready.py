"""Time from the last file of a 1,000-instance session to READY, and the ingest rate.

Sends one MR session with DCMTK storescu (TCP_NODELAY=1) to a fresh xnatd, and in
the same run to DCMTK ``storescp`` as the peer, then prints and writes JSON:

    python3 bench/last_file_to_ready.py [--instances 1000] [--idle 2s] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import ROOT, send, xnatd
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import dcmtk_tool, free_port, port_accepts, wait_for

from xnatd.units import parse_duration


def ready_at(index: Path) -> float | None:
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT status FROM prearchive").fetchone()
    except sqlite3.Error:
        return None
    return time.perf_counter() if row and row[0] == "READY" else None


def run_xnatd(work: Path, folder: Path, storescu: str, idle: str) -> dict:
    with xnatd(work, site=f"session_idle_timeout: {idle}") as port:
        seconds = send(storescu, port, folder, "XNAT")
        last_file = time.perf_counter()
        ready = wait_for(
            lambda: ready_at(work / "data" / "index.sqlite"), timeout=600, interval=0.01
        )
    built = [
        json.loads(line)
        for line in (work / "xnatd.log").read_text().splitlines()
        if '"session_built"' in line
    ]
    return {
        "send_seconds": seconds,
        "last_file_to_ready": ready - last_file,
        "build_seconds": built[-1]["seconds"] if built else None,
    }


def run_storescp(work: Path, folder: Path, storescu: str) -> float:
    port = free_port()
    out = work / "storescp"
    out.mkdir()
    peer = subprocess.Popen(
        [dcmtk_tool("storescp"), "--fork", "-od", str(out), "-aet", "PEER", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TCP_NODELAY": "1"},  # the peer at its best: Nagle off
    )
    try:
        wait_for(lambda: port_accepts(port), timeout=30)
        return send(storescu, port, folder, "PEER")
    finally:
        peer.terminate()
        peer.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--idle", default="2s", help="session_idle_timeout for xnatd")
    parser.add_argument("--size", type=int, default=256, help="rows and columns (16-bit)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "out" / "last_file_to_ready.json"
    )
    args = parser.parse_args()

    storescu = dcmtk_tool("storescu")
    work = Path(tempfile.mkdtemp(prefix="xnatd-bench-"))
    study = StudySpec(
        "bench",
        study_description="BENCH",
        series=[SeriesSpec(1, instances=args.instances, rows=args.size, columns=args.size)],
    )
    folder = work / "input"
    paths = write_study(study, folder)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    idle = parse_duration(args.idle)

    runs = []
    for n in range(args.runs):
        (work / f"xnatd{n}").mkdir()
        (work / f"peer{n}").mkdir()
        xnatd = run_xnatd(work / f"xnatd{n}", folder, storescu, args.idle)
        peer = run_storescp(work / f"peer{n}", folder, storescu)
        runs.append({**xnatd, "storescp_send_seconds": peer})
    shutil.rmtree(work)

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    result = {
        "instances": args.instances,
        "megabytes": round(megabytes, 1),
        "idle_timeout": idle,
        "runs": runs,
        "xnatd_instances_per_second": round(args.instances / median("send_seconds"), 1),
        "storescp_instances_per_second": round(args.instances / median("storescp_send_seconds"), 1),
        "ratio_to_storescp": round(median("storescp_send_seconds") / median("send_seconds"), 3),
        "last_file_to_ready_seconds": round(median("last_file_to_ready"), 3),
        "beyond_idle_timeout_seconds": round(median("last_file_to_ready") - idle, 3),
        "build_seconds": median("build_seconds"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(
        f"{args.instances} instances, {megabytes:.0f} MB, one association, DCMTK storescu, "
        f"median of {args.runs}"
    )
    print(
        f"  xnatd    {result['xnatd_instances_per_second']:8.1f} inst/s  "
        f"({result['ratio_to_storescp']:.2f} x storescp --fork)"
    )
    print(f"  storescp {result['storescp_instances_per_second']:8.1f} inst/s")
    print(
        f"  last file -> READY {result['last_file_to_ready_seconds']:.2f} s "
        f"(idle timeout {idle:g} s + {result['beyond_idle_timeout_seconds']:.2f} s; "
        f"build {result['build_seconds']:.2f} s)"
    )
    print(f"  JSON: {args.json}")


if __name__ == "__main__":
    main()
