"""The cost of anonymization at receive, in one run: files/s of a typical site script and
of the PS3.15 basic profile alone on 512x512 CT, and the C-STORE ingest rate with no
anonymization, with the script, with the basic profile, and with the profile plus the
header PHI check (headers: hold). Beside each rate, the daemon's CPU time per instance
(all its processes, over the send): on a shared machine the rates vary with the load,
the CPU an instance costs much less.

    python3 bench/anonymization.py [--instances 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, cpu_seconds, process_tree, send, xnatd
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import dcmtk_tool

from xnatd.anon.apply import apply_to_bytes
from xnatd.anon.chain import Chain
from xnatd.anon.profile import Profile
from xnatd.anon.script import parse

# A typical site script: names out, dates shifted, UIDs hashed, private tags out.
SITE_SCRIPT = """version "6.3"
(0010,0010) := "ANONYMIZED"
(0010,0020) := hashUID[(0010,0020)]
-(0010,0030)
-(0010,1040)
-(0008,0080)
-(0008,0090)
-(0008,1070)
(0008,0020) := shiftDateByIncrement[(0008,0020), "-30"]
(0008,0021) := shiftDateByIncrement[(0008,0021), "-30"]
(0020,000D) := hashUID[(0020,000D)]
(0020,000E) := hashUID[(0020,000E)]
(0008,0018) := hashUID[(0008,0018)]
removeAllPrivateTags
"""


# The ingest variants of one run: (name, site settings); the PHI check is off but in the last.
def variants(work: Path) -> list[tuple[str, str]]:
    off = "phi_check: {headers: 'off'}"  # quoted: YAML reads a bare off as false
    return [
        ("plain", off),
        ("script", f"anonymization: {work / 'site.das'}, {off}"),
        ("profile", f"anonymization: [{{profile: basic}}], {off}"),
        ("profile_check", "anonymization: [{profile: basic}], phi_check: {headers: hold}"),
    ]


def daemon() -> list[int]:
    """The daemon's processes: every descendant of this one (storescu is not running)."""
    return process_tree(os.getpid())[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "anonymization.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xnatd-anon-bench-"))
    spec = StudySpec(
        "anon-bench",
        study_description="BENCH",
        series=[SeriesSpec(1, "CT", instances=args.instances, rows=512, columns=512)],
        extra={"InstitutionName": "Hospital", "ReferringPhysicianName": "DR^WHO"},
    )
    paths = write_study(spec, work / "input")
    (work / "site.das").write_text(SITE_SCRIPT)
    steps = {
        "script": parse(SITE_SCRIPT),
        "profile": Chain((Profile(frozenset(), b"bench-secret-0123456789abcdef"),)),
    }
    data = [p.read_bytes() for p in paths]
    storescu = dcmtk_tool("storescu")

    runs = []
    for n in range(args.runs):
        run: dict[str, float] = {}
        for name, step in steps.items():
            started = time.perf_counter()
            for blob in data:
                apply_to_bytes(step, blob, {"project": "BENCH", "subject": "S", "session": "E"})
            run[f"{name}_alone_seconds"] = time.perf_counter() - started
        for name, site in variants(work):
            folder = work / f"{name}{n}"
            folder.mkdir()
            with xnatd(folder, site=site) as port:
                cpu = cpu_seconds(daemon())
                run[f"{name}_seconds"] = send(storescu, port, work / "input", "XNAT")
                run[f"{name}_cpu_seconds"] = cpu_seconds(daemon()) - cpu
        runs.append(run)
    shutil.rmtree(work)

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    count = len(paths)
    plain = count / median("plain_seconds")
    result: dict[str, object] = {
        "instances": count,
        "megabytes": round(sum(len(b) for b in data) / 1e6, 1),
        "runs": runs,
        "ingest_plain_per_second": round(plain, 1),
    }
    print(f"{count} CT instances 512x512 ({result['megabytes']} MB), median of {args.runs}")
    for name in steps:
        rate = count / median(f"{name}_alone_seconds")
        result[f"{name}_alone_files_per_second"] = round(rate, 1)
        print(f"  {name + ' alone':26s}{rate:8.1f} files/s")
    plain_cpu = median("plain_cpu_seconds") / count
    result["ingest_plain_cpu_ms_per_instance"] = round(1e3 * plain_cpu, 2)
    print(
        f"  C-STORE ingest, {'no anonymization':22s}{plain:8.1f} inst/s"
        f"{' ' * 15}{1e3 * plain_cpu:6.2f} ms CPU/inst"
    )
    for name, label in (
        ("script", "typical site script"),
        ("profile", "basic profile"),
        ("profile_check", "profile + PHI check"),
    ):
        rate = count / median(f"{name}_seconds")
        cost = 1 - rate / plain
        cpu = median(f"{name}_cpu_seconds") / count
        result[f"ingest_{name}_per_second"] = round(rate, 1)
        result[f"{name}_cost_fraction"] = round(cost, 3)
        result[f"ingest_{name}_cpu_ms_per_instance"] = round(1e3 * cpu, 2)
        result[f"{name}_cpu_cost_fraction"] = round(cpu / plain_cpu - 1, 3)
        print(
            f"  C-STORE ingest, {label:22s}{rate:8.1f} inst/s (costs {100 * cost:4.1f}%)"
            f"{1e3 * cpu:6.2f} ms CPU/inst (+{100 * (cpu / plain_cpu - 1):.1f}%)"
        )
    print("  target: each rate under 25% below the rate without anonymization")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"  JSON: {args.json}")


if __name__ == "__main__":
    main()
