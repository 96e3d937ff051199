"""The cost of the site script at receive: files/s for a typical script on 512x512 CT,
and the C-STORE ingest rate with and without it, in the same run.

    python3 bench/anonymization.py [--instances 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, send, xnatd
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import dcmtk_tool

from xnatd.anon.apply import apply_to_bytes
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
    script = parse(SITE_SCRIPT)
    data = [p.read_bytes() for p in paths]
    storescu = dcmtk_tool("storescu")

    runs = []
    for n in range(args.runs):
        started = time.perf_counter()
        for blob in data:
            apply_to_bytes(script, blob, {"project": "BENCH", "subject": "S", "session": "E"})
        script_seconds = time.perf_counter() - started
        seconds = {}
        for name, site in (("plain", ""), ("anonymized", f"anonymization: {work / 'site.das'}")):
            folder = work / f"{name}{n}"
            folder.mkdir()
            with xnatd(folder, site=site) as port:
                seconds[name] = send(storescu, port, work / "input", "XNAT")
        runs.append(
            {"script_seconds": script_seconds, **{f"{k}_seconds": v for k, v in seconds.items()}}
        )
    shutil.rmtree(work)

    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    count = len(paths)
    plain, anonymized = count / median("plain_seconds"), count / median("anonymized_seconds")
    result = {
        "instances": count,
        "megabytes": round(sum(len(b) for b in data) / 1e6, 1),
        "runs": runs,
        "script_files_per_second": round(count / median("script_seconds"), 1),
        "ingest_plain_per_second": round(plain, 1),
        "ingest_anonymized_per_second": round(anonymized, 1),
        "cost_fraction": round(1 - anonymized / plain, 3),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{count} CT instances 512x512 ({result['megabytes']} MB), median of {args.runs}")
    print(f"  site script alone        {result['script_files_per_second']:8.1f} files/s")
    print(f"  C-STORE ingest, no script {plain:7.1f} inst/s")
    print(
        f"  C-STORE ingest, script    {anonymized:7.1f} inst/s "
        f"(costs {100 * result['cost_fraction']:.1f}% of the ingest rate; target < 25%)"
    )
    print(f"  JSON: {args.json}")


if __name__ == "__main__":
    main()
