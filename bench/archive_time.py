"""Time to archive a 1,000-instance session, against copying the same files in the same run.

Receives the session into a fresh data directory through intake (as C-STORE does),
builds it, then runs ``xnatd prearchive archive`` (the real command: claim, IDs, file
moves, documents with MD5 digests, index commit, audit) and, as a disk reference,
``cp -r`` + ``sync`` of the same session folder:

    python3 bench/archive_time.py [--instances 1000] [--size 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dicomgen import SeriesSpec, StudySpec, write_study  # noqa: E402
from helpers import Site  # noqa: E402


def one_run(work: Path, paths: list[Path]) -> dict[str, float]:
    site = Site(work, {"BENCH": {"prearchive": "manual"}})
    try:
        assert set(site.receive(paths)) == {"stored"}
        site.build_all()
        [session] = site.prearchive()
        folder = site.store.prearchive.session_dir(session.name)
        copy_started = time.perf_counter()
        subprocess.run(["cp", "-r", str(folder), str(work / "copy")], check=True)
        subprocess.run(["sync"], check=True)
        copy_seconds = time.perf_counter() - copy_started
        config = site.config_path
    finally:
        site.close()
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xnatd",
            "prearchive",
            "archive",
            str(session.name),
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    archive_seconds = time.perf_counter() - started
    assert "archived as" in done.stdout, done.stdout + done.stderr
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import xnatd.cli"], check=True)
    startup = time.perf_counter() - started
    return {
        "archive_seconds": archive_seconds,
        "cli_startup_seconds": startup,
        "copy_sync_seconds": copy_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256, help="rows and columns (16-bit)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "archive_time.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xnatd-archive-bench-"))
    spec = StudySpec(
        "archive-bench",
        study_description="BENCH",
        series=[
            SeriesSpec(n, instances=args.instances // 4, rows=args.size, columns=args.size)
            for n in range(1, 5)
        ],
    )
    paths = write_study(spec, work / "input")
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    runs = []
    for n in range(args.runs):
        (work / f"run{n}").mkdir()
        runs.append(one_run(work / f"run{n}", paths))
    shutil.rmtree(work)

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    result = {
        "instances": len(paths),
        "megabytes": round(megabytes, 1),
        "runs": runs,
        "archive_seconds": round(median("archive_seconds"), 3),
        "archive_seconds_without_cli_startup": round(
            median("archive_seconds") - median("cli_startup_seconds"), 3
        ),
        "copy_sync_seconds": round(median("copy_sync_seconds"), 3),
        "ratio_to_copy": round(median("archive_seconds") / median("copy_sync_seconds"), 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"archive {len(paths)} instances ({megabytes:.0f} MB, 4 scans), median of {args.runs}")
    print(
        f"  xnatd prearchive archive  {result['archive_seconds']:.2f} s "
        f"({result['archive_seconds_without_cli_startup']:.2f} s without interpreter start)"
    )
    print(
        f"  cp -r + sync (reference)  {result['copy_sync_seconds']:.2f} s "
        f"-> archive takes {result['ratio_to_copy']:.2f}x the copy"
    )
    print(f"  JSON: {args.json}")


if __name__ == "__main__":
    main()
