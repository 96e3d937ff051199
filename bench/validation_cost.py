"""What checking every file whole costs the ingest rate (issue 16: under 10 %).

The same session is sent by DCMTK ``storescu`` (one association, TCP_NODELAY=1) to a
fresh xnatd as shipped, which checks every element header, length, item and
delimiter before it answers, and in the same run to a fresh xnatd whose intake reads
only the routing tags, as before issue 16 (this script patches that daemon's intake
in its own process: ``--serve-unchecked``). Runs alternate which goes first. One
receiving process each (``workers: 1``), so the patch covers every association.

The instances carry a scanner-like header by default (nested sequences, a private
block: about 250 elements); ``--plain`` sends dicomgen's lean headers (about 45).

    python3 bench/validation_cost.py [--quick] [--instances 1500] [--runs 3] [--plain]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import ROOT, send
from dicomgen import SeriesSpec, StudySpec, instances, write
from helpers import dcmtk_tool, free_port, port_accepts, wait_for
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


def scanner_like(ds: Dataset, index: int) -> Dataset:
    """Add what a scanner's header carries: sequences (two levels) and a private block."""
    ds.ReferencedImageSequence = Sequence(
        [_reference(f"1.2.826.0.1.3680043.9.16.{index}.{n}") for n in range(3)]
    )
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-A0100", "SRT", "Brain"
    code.EquivalentCodeSequence = Sequence([Dataset()])
    code.EquivalentCodeSequence[0].CodeValue = "12738006"
    ds.AnatomicRegionSequence = Sequence([code])
    block = ds.private_block(0x0019, "XNATD BENCH", create=True)
    for offset in range(0x10, 0x10 + 200):
        block.add_new(offset, "DS" if offset % 3 else "LO", f"{offset * 1.5:.2f}")
    return ds


def _reference(uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = uid
    return item


def make_session(folder: Path, count: int, size: int, plain: bool) -> None:
    study = StudySpec("validation-cost", series=[SeriesSpec(1, instances=count)])
    study.series[0].rows = study.series[0].columns = size
    datasets = instances(study)
    if not plain:
        datasets = (scanner_like(ds, n) for n, ds in enumerate(datasets))
    write(datasets, folder)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def daemon(work: Path, checked: bool) -> Iterator[tuple[int, int]]:
    """A fresh xnatd in work/ (checked: as shipped); yields its DICOM port and pid."""
    port, http = free_port(), free_port()
    config = work / "xnatd.yaml"
    config.write_text(
        "site: {min_free_disk: 0, data_dir: data}\nworkers: 1\n"
        f"receivers: [{{ae_title: XNAT, port: {port}, host: 127.0.0.1}}]\n"
        f"projects: {{BENCH: {{}}}}\nhttp: {{listen: '127.0.0.1:{http}'}}\n"
    )
    command = [sys.executable, "-m", "xnatd", "run", "-c", str(config)]
    if not checked:
        command = [sys.executable, __file__, "--serve-unchecked", str(config)]
    with open(work / "xnatd.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            wait_for(lambda: port_accepts(port), timeout=30)
            yield port, process.pid
        finally:
            process.terminate()
            process.wait(timeout=60)


def serve_unchecked(config: str) -> int:
    """Run xnatd with intake reading only the routing tags (the pre-issue-16 path)."""
    import xnatd.intake.intake as intake_module
    from xnatd.cli import main
    from xnatd.dicom import read_header
    from xnatd.payload import readable

    def routing_tags_only(data, tags):  # type: ignore[no-untyped-def]
        with readable(data) as source:
            return read_header(source, tags)

    intake_module.checked_header = routing_tags_only
    return main(["run", "-c", config])


def per_file_microseconds(path: Path) -> tuple[float, float]:
    """In this process, best of 3: intake's read of one file with the whole-file check
    (``checked_header``) and without it (``read_header``, routing tags only)."""
    from xnatd.dicom import INTAKE_TAGS, read_header
    from xnatd.intake.acceptance import checked_header

    data = path.read_bytes()
    number = 2000

    def best(call: Callable[[], object]) -> float:
        return min(timeit.repeat(call, number=number, repeat=3)) / number * 1e6

    return (
        best(lambda: checked_header(data, INTAKE_TAGS)),
        best(lambda: read_header(data, INTAKE_TAGS)),
    )


def one(work: Path, folder: Path, storescu: str, checked: bool, count: int) -> tuple[float, float]:
    """Instances per second, and the receiver's CPU milliseconds per instance."""
    work.mkdir()
    subprocess.run(["sync"], check=False)
    with daemon(work, checked) as (port, pid):
        before = cpu_seconds(pid)
        seconds = send(storescu, port, folder, "XNAT")
        cpu = cpu_seconds(pid) - before
    stored = len(list((work / "data" / "prearchive").rglob("*.dcm")))
    shutil.rmtree(work)
    if stored != count:
        raise SystemExit(f"{'checked' if checked else 'unchecked'}: {stored} of {count} stored")
    return count / seconds, cpu / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="rows and columns")
    parser.add_argument("--plain", action="store_true", help="dicomgen's lean headers")
    parser.add_argument("--quick", action="store_true", help="500 instances, 2 runs")
    parser.add_argument("--serve-unchecked", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_unchecked:
        raise SystemExit(serve_unchecked(args.serve_unchecked))
    if args.quick:
        args.instances, args.runs = 500, 2
    storescu = dcmtk_tool("storescu")
    rates: dict[str, list[float]] = {"checked": [], "unchecked": []}
    cpu: dict[str, list[float]] = {"checked": [], "unchecked": []}
    with tempfile.TemporaryDirectory(prefix="xnatd-validation-") as temp:
        root = Path(temp)
        folder = root / "session"
        make_session(folder, args.instances, args.size, args.plain)
        sample = next(folder.iterdir())
        checked_us, unchecked_us = per_file_microseconds(sample)
        print(
            f"one file in process: checked {checked_us:.0f} us,"
            f" routing tags only {unchecked_us:.0f} us",
            flush=True,
        )
        for run in range(args.runs):
            order = ["checked", "unchecked"] if run % 2 == 0 else ["unchecked", "checked"]
            for name in order:
                work = root / f"{name}-{run}"
                rate, ms = one(work, folder, storescu, name == "checked", args.instances)
                rates[name].append(rate)
                cpu[name].append(ms)
                print(
                    f"run {run + 1} {name:9s} {rate:8.1f} instances/s {ms:6.2f} CPU ms/instance",
                    flush=True,
                )
        size = sample.stat().st_size
    checked, unchecked = (statistics.median(rates[k]) for k in ("checked", "unchecked"))
    cost = (unchecked - checked) / unchecked * 100
    cpu_checked, cpu_unchecked = (statistics.median(cpu[k]) for k in ("checked", "unchecked"))
    # The check's CPU per instance against the time one instance takes without it: the
    # share of the ingest rate it costs, less at the mercy of other load on the machine.
    cpu_cost = (cpu_checked - cpu_unchecked) / (1000 / unchecked) * 100
    result = {
        "instances": args.instances,
        "runs": args.runs,
        "file_bytes": size,
        "header": "plain" if args.plain else "scanner-like",
        "checked_per_s": round(checked, 1),
        "unchecked_per_s": round(unchecked, 1),
        "cost_percent": round(cost, 1),
        "checked_cpu_ms": round(cpu_checked, 3),
        "unchecked_cpu_ms": round(cpu_unchecked, 3),
        "cpu_cost_percent": round(cpu_cost, 1),
        "checked_us_per_file": round(checked_us, 1),
        "unchecked_us_per_file": round(unchecked_us, 1),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "validation_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"median of {args.runs}: checked {checked:.1f}/s, routing tags only {unchecked:.1f}/s:"
        f" the whole-file check costs {cost:.1f} % of the ingest rate"
        f" ({args.instances} instances of {size} bytes, {result['header']} headers)\n"
        f"receiver CPU: checked {cpu_checked:.2f} ms/instance, routing tags only"
        f" {cpu_unchecked:.2f}: the check's CPU is {cpu_cost:.1f} % of an instance's time"
    )


if __name__ == "__main__":
    main()
