"""Ingest rate and `sessions list` latency from an empty index to 100,000 sessions.

For SQLite and PostgreSQL: fill the index with synthetic archived sessions (20
instances and 3 scans each, plus a READY prearchive session per 10) up to each
checkpoint, then measure real C-STOREs (DCMTK storescu, one 300-instance study)
and `sessions list` queries (by subject, label, study UID, scan type; p50/p95 of
60 queries, through the index API, and the CLI once):

    python3 bench/index_scale.py [--checkpoints 0,10000,100000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, send, xnatd
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import dcmtk_tool, postgres_schema

from xnatd.store.index import open_index
from xnatd.store.index.records import SessionFilter
from xnatd.store.layout import DataDir

INSTANCES_PER_SESSION = 20


def _date(n: int) -> str:
    """Study dates over ten years, as a site accumulates them (a day holds few sessions)."""
    return (datetime.date(2015, 1, 1) + datetime.timedelta(days=n % 3650)).isoformat()


def rows_for(start: int, stop: int) -> dict[str, list[tuple]]:
    now = time.time()
    subjects, sessions, scans, instances, pre = [], [], [], [], []
    for n in range(start, stop):
        subject = f"BENCH_S{n // 2 + 1:07d}"
        if n % 2 == 0:
            subjects.append((subject, "BENCH", f"SUBJ{n // 2:07d}", now))
        session = f"BENCH_E{n + 1:07d}"
        sessions.append(
            (
                session,
                "BENCH",
                subject,
                f"MR{n:07d}",
                f"2.25.{n}",
                "mrSessionData",
                "MR",
                _date(n),
                "active",
                f"archive/BENCH/arc001/MR{n:07d}",
                now,
                now,
                "[]",
            )
        )
        for s in range(3):
            scans.append(
                (
                    session,
                    str(s + 1),
                    f"2.25.{n}.{s}",
                    f"T{s}_TYPE{n % 50}",
                    f"T{s}_TYPE{n % 50}",
                    "MR",
                    7,
                )
            )
        for i in range(INSTANCES_PER_SESSION):
            instances.append(
                (
                    session,
                    f"2.25.{n}.{i % 3}.{i}",
                    "1.2.840.10008.5.1.4.1.1.4",
                    f"2.25.{n}.{i % 3}",
                    str(i % 3 + 1),
                    str(i),
                    "MR",
                    str(i % 3 + 1),
                    f"f{i}.dcm",
                    1000,
                    "0" * 32,
                    now,
                    None,
                )
            )
        if n % 10 == 0:
            pre.append(
                (
                    "BENCH",
                    f"20240101_{n:09d}",
                    f"P{n:07d}",
                    "S",
                    f"2.25.p{n}",
                    "READY",
                    None,
                    None,
                    "XNAT",
                    0,
                    0,
                    now,
                    now,
                    "mrSessionData",
                )
            )
    return {
        "subjects": subjects,
        "sessions": sessions,
        "archive_scans": scans,
        "archive_instances": instances,
        "prearchive": pre,
    }


COLUMNS = {
    "subjects": "id, project, label, created",
    "sessions": "id, project, subject_id, label, study_uid, xsi_type, modality, date, status,"
    " path, archived, modified, autorun",
    "archive_scans": "session_id, scan, series_uid, type, series_description, modality, files",
    "archive_instances": "session_id, sop_instance_uid, sop_class_uid, series_uid, series_number,"
    " instance_number, modality, scan, file_name, size, md5, received,"
    " calling_ae",
    "prearchive": "project, timestamp, label, subject, study_uid, status, reason, auto_archive,"
    " source, files, bytes, created, last_modified, xsi_type",
}


def fill(index: object, start: int, stop: int) -> float:
    """Bulk-insert synthetic rows; returns seconds."""
    started = time.perf_counter()
    for begin in range(start, stop, 10_000):
        rows = rows_for(begin, min(stop, begin + 10_000))
        with index._write() as connection:  # type: ignore[attr-defined]
            raw = getattr(connection, "connection", None)
            for table, values in rows.items():
                if not values:
                    continue
                if raw is not None:  # PostgreSQL: COPY
                    with (
                        raw.cursor() as cursor,
                        cursor.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy,
                    ):
                        for row in values:
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" * len(values[0]))
                    connection.executemany(
                        f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", values
                    )
    with index._write() as connection:  # type: ignore[attr-defined]
        if getattr(connection, "connection", None) is not None:
            connection.execute("ANALYZE")  # what autovacuum does after a bulk load
    return time.perf_counter() - started


def list_latency(index: object, size: int, config: Path) -> dict[str, float]:
    rng = random.Random(size)
    timings = []
    for q in range(60):
        n = rng.randrange(max(size, 1))
        query = [
            SessionFilter(subject=f"SUBJ{n // 2:07d}"),
            SessionFilter(label=f"MR{n:07d}"),
            SessionFilter(study_uid=f"2.25.{n}"),
            SessionFilter(
                project="BENCH", scan_type=f"TYPE{n % 50}", since=_date(n), until=_date(n)
            ),
        ][q % 4]
        started = time.perf_counter()
        index.list_archived(query)  # type: ignore[attr-defined]
        timings.append(time.perf_counter() - started)
    timings.sort()
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "xnatd",
            "sessions",
            "list",
            "--subject",
            "SUBJ0000001",
            "--json",
            "-c",
            str(config),
        ],
        check=True,
        capture_output=True,
    )
    cli = time.perf_counter() - started
    return {
        "p50_ms": round(1000 * statistics.median(timings), 2),
        "p95_ms": round(1000 * timings[int(0.95 * len(timings)) - 1], 2),
        "cli_seconds": round(cli, 3),
    }


def run_backend(name: str, url: str, work: Path, study: Path, checkpoints: list[int]) -> list[dict]:
    results = []
    data = work / f"data-{name}"
    data.mkdir()
    filled = 0
    storescu = dcmtk_tool("storescu")
    for checkpoint in checkpoints:
        index = open_index(url, DataDir(data).index_file)
        fill_seconds = fill(index, filled, checkpoint)
        filled = checkpoint
        node = work / f"{name}-{checkpoint}"
        node.mkdir()
        with xnatd(node, site=f"data_dir: {data}", index=url) as port:
            seconds = send(storescu, port, study, "XNAT")
        latency = list_latency(index, checkpoint, node / "xnatd.yaml")
        index.close()
        results.append(
            {
                "sessions": checkpoint,
                "fill_seconds": round(fill_seconds, 1),
                "ingest_instances_per_second": round(300 / seconds, 1),
                **latency,
            }
        )
        print(
            f"  {name:10} {checkpoint:>7} sessions: ingest {300 / seconds:6.1f} inst/s, "
            f"sessions list p50 {latency['p50_ms']} ms p95 {latency['p95_ms']} ms, "
            f"CLI {latency['cli_seconds']} s",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default="0,10000,100000")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "index_scale.json")
    args = parser.parse_args()
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    work = Path(tempfile.mkdtemp(prefix="xnatd-scale-bench-"))
    study = work / "study"
    write_study(
        StudySpec(
            "scale",
            study_description="BENCH",
            series=[SeriesSpec(n, instances=100, rows=128, columns=128) for n in (1, 2, 3)],
        ),
        study,
    )
    result = {"sqlite": run_backend("sqlite", "sqlite", work, study, checkpoints)}
    with postgres_schema() as url:
        result["postgresql"] = run_backend("postgresql", url, work, study, checkpoints)
    shutil.rmtree(work)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"  JSON: {args.json}")


if __name__ == "__main__":
    main()
