"""Memory under sustained load (issue 16.12): RSS of the daemon, all its processes, each minute.

K senders (DCMTK ``storescu``, one association each, again and again) send their own
study of small MR instances to a fresh xnatd for N minutes; once a minute the script
prints the summed RSS of the daemon's processes (main and workers). The goal: at the
end, within 5 % of the first minute's level.

    python3 bench/soak_rss.py --minutes 10 --associations 24
    python3 bench/soak_rss.py --quick          # 2 minutes, 8 associations

JSON with every sample in ``bench/out/soak_rss.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, free_port, port_accepts, process_tree, rss_bytes, wait_for
from dicomgen import SeriesSpec, StudySpec, write_study

STORESCU = "/usr/bin/storescu"  # DCMTK; pynetdicom installs a Python one of the same name


class Sender(threading.Thread):
    """One storescu association after another, each sending the sender's whole study."""

    def __init__(self, port: int, folder: Path, deadline: float, files: int) -> None:
        super().__init__(daemon=True)
        self.port, self.folder, self.deadline, self.files = port, folder, deadline, files
        self.sent = 0
        self.failures = 0

    def run(self) -> None:
        env = {**os.environ, "TCP_NODELAY": "1"}
        command = [STORESCU, "-aet", "SOAK", "-aec", "XNAT", "+sd", "127.0.0.1"]
        while time.monotonic() < self.deadline:
            result = subprocess.run(
                [*command, str(self.port), str(self.folder)],
                capture_output=True,
                env=env,
                timeout=600,
            )
            if result.returncode == 0:
                self.sent += self.files
            else:
                self.failures += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--associations", type=int, default=24)
    parser.add_argument("--files", type=int, default=50, help="instances per association")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--quick", action="store_true", help="2 minutes, 8 associations")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.associations = 2, 8
    if not Path(STORESCU).is_file():
        sys.exit(f"soak_rss: DCMTK storescu not found at {STORESCU} (apt-get install dcmtk)")

    work = Path(tempfile.mkdtemp(prefix="xnatd-soak-"))
    try:
        for number in range(args.associations):
            spec = StudySpec(
                f"soak{number}",
                study_description="BENCH",
                patient_id=f"SOAK{number:03d}",
                series=[SeriesSpec(1, instances=args.files, rows=64, columns=64)],
            )
            write_study(spec, work / "studies" / str(number))
        port, http = free_port(), free_port()
        config = work / "xnatd.yaml"
        config.write_text(
            "site: {data_dir: data, min_free_disk: 0, session_idle_timeout: 2s}\n"
            f"index: sqlite\nworkers: {args.workers}\n"
            f"receivers: [{{ae_title: XNAT, port: {port}, host: 127.0.0.1}}]\n"
            "projects: {BENCH: {}}\n"
            f"http: {{listen: '127.0.0.1:{http}'}}\nlogging: {{level: warning}}\n"
        )
        with open(work / "xnatd.log", "wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "xnatd", "run", "-c", str(config)],
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )
        try:
            wait_for(lambda: port_accepts(port), timeout=30)
            samples = soak(daemon.pid, port, work, args)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(samples, args)


def soak(pid: int, port: int, work: Path, args: argparse.Namespace) -> list[dict]:
    started = time.monotonic()
    deadline = started + args.minutes * 60
    senders = [
        Sender(port, work / "studies" / str(n), deadline, args.files)
        for n in range(args.associations)
    ]
    for sender in senders:
        sender.start()
    samples = []
    print(f"soak: {args.associations} associations for {args.minutes} min", flush=True)
    for minute in range(1, args.minutes + 1):
        time.sleep(max(0.0, started + minute * 60 - time.monotonic()))
        pids = process_tree(pid)
        sample = {
            "minute": minute,
            "rss_mib": round(rss_bytes(pids) / 2**20, 1),
            "processes": len(pids),
            "instances": sum(s.sent for s in senders),
            "failed_associations": sum(s.failures for s in senders),
        }
        samples.append(sample)
        print(
            f"minute {minute:3d}: RSS {sample['rss_mib']:7.1f} MiB over {len(pids)} processes,"
            f" {sample['instances']} instances, {sample['failed_associations']} failed",
            flush=True,
        )
    for sender in senders:
        sender.join(timeout=120)
    return samples


def report(samples: list[dict], args: argparse.Namespace) -> None:
    first, last = samples[0]["rss_mib"], samples[-1]["rss_mib"]
    growth = (last - first) / first * 100
    peak = max(s["rss_mib"] for s in samples)
    verdict = "within" if abs(growth) <= 5 else "NOT within"
    print(
        f"RSS minute 1 {first} MiB, minute {samples[-1]['minute']} {last} MiB"
        f" ({growth:+.1f} %), peak {peak} MiB: {verdict} 5 % of the first minute"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "soak_rss.json").write_text(
        json.dumps({"args": vars(args), "samples": samples, "growth_percent": growth}, indent=1)
    )


if __name__ == "__main__":
    main()
