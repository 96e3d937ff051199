"""Import rate of a zip against C-STORE of the same files, in the same run.

python3 bench/import_rate.py [--megabytes 1024]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from common import ROOT, send, xnatd
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import dcmtk_tool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "import_rate.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="xnatd-import-bench-"))
    per_file = 512 * 512 * 2
    count = max(1, args.megabytes * 2**20 // per_file)
    series = [
        SeriesSpec(n, "CT", instances=count // 8 or 1, rows=512, columns=512) for n in range(1, 9)
    ]
    paths = write_study(
        StudySpec("import-bench", study_description="BENCH", series=series), work / "input"
    )
    archive = work / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in paths:
            zf.write(path, f"study/{path.name}")
    megabytes = sum(p.stat().st_size for p in paths) / 1e6

    (work / "import").mkdir()
    config = work / "import" / "xnatd.yaml"
    config.write_text("site: {data_dir: data, min_free_disk: 0}\nprojects: {BENCH: {}}\n")
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xnatd",
            "import",
            str(archive),
            "--project",
            "BENCH",
            "--json",
            "-c",
            str(config),
        ],
        check=True,
        capture_output=True,
    )
    import_seconds = time.perf_counter() - started

    (work / "cstore").mkdir()
    with xnatd(work / "cstore") as port:
        cstore_seconds = send(dcmtk_tool("storescu"), port, work / "input", "XNAT")
    shutil.rmtree(work)

    result = {
        "instances": len(paths),
        "megabytes": round(megabytes, 1),
        "import_seconds": round(import_seconds, 2),
        "cstore_seconds": round(cstore_seconds, 2),
        "import_instances_per_second": round(len(paths) / import_seconds, 1),
        "cstore_instances_per_second": round(len(paths) / cstore_seconds, 1),
        "import_to_cstore": round(cstore_seconds / import_seconds, 2),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{len(paths)} CT instances, {megabytes:.0f} MB")
    print(
        f"  xnatd import of a zip   {import_seconds:6.1f} s  "
        f"{result['import_instances_per_second']:7.1f} inst/s  "
        f"{megabytes / import_seconds:6.1f} MB/s "
        "(unpack, check every entry, store, build)"
    )
    print(
        f"  C-STORE (storescu)      {cstore_seconds:6.1f} s  "
        f"{result['cstore_instances_per_second']:7.1f} inst/s  "
        f"{megabytes / cstore_seconds:6.1f} MB/s "
        "(send only; the session still waits for its idle build)"
    )
    print(f"  import is {result['import_to_cstore']:.2f}x the C-STORE rate; JSON: {args.json}")


if __name__ == "__main__":
    main()
