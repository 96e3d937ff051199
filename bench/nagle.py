"""Small objects from a sender that leaves Nagle on (stock DCMTK storescu), one association:
xnatd against DCMTK storescp --fork, same data, same run, median of 3.

    python3 bench/nagle.py [--instances 500]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import ROOT, send, xnatd
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import dcmtk_tool, free_port, port_accepts, wait_for


def storescp_seconds(work: Path, folder: Path, storescu: str) -> float:
    port = free_port()
    (work / "out").mkdir()
    peer = subprocess.Popen(
        [dcmtk_tool("storescp"), "--fork", "-od", str(work / "out"), "-aet", "PEER", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "TCP_NODELAY": "0"},  # stock: Nagle on
    )
    try:
        wait_for(lambda: port_accepts(port), timeout=30)
        return send(storescu, port, folder, "PEER", nodelay=False)
    finally:
        peer.terminate()
        peer.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "nagle.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xnatd-nagle-bench-"))
    paths = write_study(
        StudySpec(
            "nagle",
            study_description="BENCH",
            series=[SeriesSpec(1, instances=args.instances, rows=64, columns=64)],
        ),
        work / "input",
    )
    storescu = dcmtk_tool("storescu")
    runs = []
    for n in range(args.runs):
        (work / f"x{n}").mkdir()
        (work / f"p{n}").mkdir()
        with xnatd(work / f"x{n}") as port:
            ours = send(storescu, port, work / "input", "XNAT", nodelay=False)
        runs.append(
            {
                "xnatd_seconds": ours,
                "storescp_seconds": storescp_seconds(work / f"p{n}", work / "input", storescu),
            }
        )
    kilobytes = paths[0].stat().st_size / 1000
    shutil.rmtree(work)
    ours = args.instances / statistics.median(r["xnatd_seconds"] for r in runs)
    theirs = args.instances / statistics.median(r["storescp_seconds"] for r in runs)
    result = {
        "instances": args.instances,
        "kilobytes_each": round(kilobytes, 1),
        "runs": runs,
        "xnatd_per_second": round(ours, 1),
        "storescp_per_second": round(theirs, 1),
        "ratio": round(ours / theirs, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(
        f"{args.instances} x {kilobytes:.0f} kB, storescu with Nagle on, one association, "
        f"median of {args.runs}"
    )
    print(f"  xnatd             {ours:7.1f} inst/s ({result['ratio']:.1f}x storescp)")
    print(f"  storescp --fork   {theirs:7.1f} inst/s")


if __name__ == "__main__":
    main()
