"""What one association costs the receiver: xnatd against Orthanc and DCMTK storescp
--fork, in the same run.

Many modalities open an association per image or per series, so the set-up and
release of an association matter beside the per-instance cost that ``ingest.py``
measures. Each association is one DCMTK storescu sending one 12 kB MR image with
storescu's default proposal (128 presentation contexts, three transfer syntaxes each).
Reported per association: the receiver's CPU (all its processes, storescp's forked
children included) and the sender's wall time, medians over the runs; runs are
interleaved across receivers.

    python3 bench/associations.py [--associations 40] [--runs 3]
        [--receivers xnatd,orthanc,storescp,xnatd-before --before DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ingest
from common import cpu_seconds, process_tree
from dicomgen import SeriesSpec, StudySpec, write_study

RECEIVERS = ("xnatd", "orthanc", "storescp")


def one_image(folder: Path) -> Path:
    """One small MR image, routed to the bench's project."""
    study = StudySpec(
        "associations", study_description="BENCH", series=[SeriesSpec(1, instances=1)]
    )
    [path] = write_study(study, folder)
    return path


def measure(peer: ingest.Peer, image: Path, associations: int) -> tuple[float, float]:
    """Receiver CPU and sender wall time, in ms per association."""
    ingest.send(peer, [image], 1, nodelay=True)  # the first one warms up (imports, caches)
    pids = process_tree(peer.process.pid)
    cpu_before, started = cpu_seconds(pids), time.perf_counter()
    for _ in range(associations):
        ingest.send(peer, [image], 1, nodelay=True)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pids) - cpu_before  # storescp's reaped children count in its own
    return 1000 * cpu / associations, 1000 * wall / associations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--associations", type=ingest.positive_count, default=40)
    parser.add_argument("--runs", type=ingest.positive_count, default=3)
    parser.add_argument("--receivers", type=ingest.receivers_value, default=list(RECEIVERS))
    parser.add_argument("--before", type=Path, help="an earlier checkout, as xnatd-before")
    args = parser.parse_args()
    receivers = list(args.receivers)
    if "xnatd-before" in receivers:
        if args.before is None or not (args.before / "xnatd" / "__init__.py").exists():
            parser.error("receiver xnatd-before needs --before DIR, a checkout of xnatd")
        ingest.BEFORE = str(args.before.resolve())
    if "orthanc" in receivers and not Path("/usr/sbin/Orthanc").exists():
        print("Orthanc not installed (apt-get install orthanc): left out", file=sys.stderr)
        receivers.remove("orthanc")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in receivers}
    with tempfile.TemporaryDirectory(prefix="xnatd-assoc-") as temporary:
        work = Path(temporary)
        image = one_image(work / "image")
        for run in range(args.runs):
            for name in receivers:
                peer = ingest.start(name, work / f"{name}-{run}", "60s")
                try:
                    results[name].append(measure(peer, image, args.associations))
                finally:
                    ingest.stop(peer)
    print(f"{args.associations} associations of one 12 kB image, median of {args.runs} runs")
    for name, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        spread = f"{min(r[0] for r in runs):.1f}-{max(r[0] for r in runs):.1f}"
        print(f"  {name:13} CPU {cpu:5.1f} ms ({spread})   sender wall {wall:5.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
