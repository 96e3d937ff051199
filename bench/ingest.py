"""Ingest at the limit (issue 5): xnatd against DCMTK storescp --fork, Orthanc and a bare
pynetdicom receiver, on the same synthetic data, in the same run.

Data (deterministic, generated once into a temporary folder):
  mixed   12 sessions (4 MR, 4 CT, 4 PET), about 3,840 files and 1 GB
  small   500 objects of about 12 kB
  big     one 10,000-instance session (xnatd: last file to READY, peak RSS)
  huge    one 2 GB object (peak RSS while it is received; xnatd also with a site script)
  steady  the mixed sessions as a PACS pushes them (issue 23): at 1 and 4 lanes, each lane
          sends its sessions one after another, one association per session; xnatd's
          idle timeout is short (--steady-idle), so earlier sessions are built while later
          ones arrive. Rates are from the first file sent to the last acknowledged and,
          for xnatd, to the last session READY; CPU is counted until then too.
Each receiver gets a fresh data directory, kept until the end of the suite (about 30 GB
at most): on an ext4 without a journal (these machines), every file created within five
minutes of thousands being deleted nearby costs the kernel a scan past the recently
freed inodes, which doubled the receiving process's system time (0.46 -> 0.90 ms a
file, measured) for whoever ran after a deletion. What each receiver wrote is dropped from
the page cache once it stopped (``evict``), so that the kept files do not fill the memory
for the receivers measured after it. The sender is DCMTK storescu at 1 and 4
associations, with TCP_NODELAY=1 (Nagle off) and without (stock). Runs are interleaved:
the first run of every case and receiver of a set, then the second, and so on. Peak
RSS is the sum over the receiver's processes, sampled every 0.1 s. Prints a table;
writes JSON.

    python3 bench/ingest.py [--runs 3] [--sets mixed,small,big,huge,steady] [--quick]
        [--receivers xnatd,storescp,orthanc,pynetdicom,xnatd-before --before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, cpu_seconds, process_tree, rss_bytes
from dicomgen import SeriesSpec, StudySpec, instance, write_study
from helpers import dcmtk_tool, free_port, port_accepts, wait_for
from pydicom.filewriter import dcmwrite

from xnatd.config import MAX_WORKERS
from xnatd.config import load as load_config

RECEIVERS = ("xnatd", "storescp", "orthanc", "pynetdicom")
BEFORE = ""  # --before: a checkout of an earlier xnatd, received as "xnatd-before"
WORKERS = "auto"  # --workers: xnatd's workers key
SITE_SCRIPT = 'version "6.3"\n(0010,0010) := "ANON"\n-(0010,0030)\n'


# -- data ----------------------------------------------------------------------------
def make_mixed(folder: Path, scale: float) -> list[Path]:
    """12 sessions: MR 5 series x 80 of 256x256, CT 2 x 180 of 512x512, PET 2 x 100 of 128x128."""
    sessions = []
    for n in range(4):
        for modality, series, count, size in (
            ("MR", 5, 80, 256),
            ("CT", 2, 180, 512),
            ("PT", 2, 100, 128),
        ):
            spec = StudySpec(
                f"mixed-{modality}-{n}",
                patient_id=f"{modality}{n:02d}",
                study_description="BENCH",
                series=[
                    SeriesSpec(
                        s + 1,
                        modality=modality,
                        instances=max(1, round(count * scale)),
                        rows=size,
                        columns=size,
                    )
                    for s in range(series)
                ],
            )
            target = folder / spec.seed
            write_study(spec, target)
            sessions.append(target)
    return sessions


def make_series(folder: Path, seed: str, count: int, size: int) -> list[Path]:
    spec = StudySpec(
        seed,
        study_description="BENCH",
        series=[SeriesSpec(1, instances=count, rows=size, columns=size)],
    )
    write_study(spec, folder / seed)
    return [folder / seed]


def make_huge(folder: Path, gigabytes: float) -> list[Path]:
    """One multi-frame object of about the given size, its pixel data streamed to disk."""
    spec = StudySpec("huge", study_description="BENCH", series=[SeriesSpec(1, instances=1)])
    ds = instance(spec, spec.series[0], 1)
    frame = 1024 * 1024 * 2
    frames = max(1, int(gigabytes * 1e9 // frame))
    ds.Rows = ds.Columns = 1024
    ds.NumberOfFrames = frames
    del ds.PixelData
    target = folder / "huge"
    target.mkdir(parents=True)
    path = target / "huge.dcm"
    dcmwrite(path, ds, enforce_file_format=True)
    pattern = (bytes(range(256)) * (frame // 256))[:frame]
    with path.open("ab") as out:  # (7FE0,0010) OW, explicit VR little endian, then the frames
        out.write(b"\xe0\x7f\x10\x00OW\x00\x00" + (frame * frames).to_bytes(4, "little"))
        for _ in range(frames):
            out.write(pattern)
    return [target]


def count_files(folders: list[Path]) -> tuple[int, int]:
    files = [p for f in folders for p in f.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


# -- receivers -------------------------------------------------------------------------
@dataclass
class Peer:
    port: int
    aec: str
    process: subprocess.Popen
    work: Path
    rss: list[int] = field(default_factory=lambda: [0])


@contextmanager
def sampling(peer: Peer) -> Iterator[None]:
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peer.rss[0] = max(peer.rss[0], rss_bytes(process_tree(peer.process.pid)))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def start(kind: str, work: Path, idle: str) -> Peer:
    work.mkdir(parents=True)
    port = free_port()
    log = open(work / "log", "wb")  # noqa: SIM115 - the child keeps it
    env = {**os.environ, "TCP_NODELAY": "1"}
    if kind == "xnatd-before":  # another checkout's xnatd (--before), to compare in one run
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [BEFORE, env.get("PYTHONPATH")]))
    if kind.startswith("xnatd"):
        http = free_port()
        script = ""
        if kind == "xnatd+script":  # a site script: the header rewritten, pixels copied
            (work / "site.das").write_text(SITE_SCRIPT)
            script = ", anonymization: site.das, phi_check: {headers: flag}"  # checked, not held
        (work / "xnatd.yaml").write_text(
            f"site: {{data_dir: data, min_free_disk: 0, session_idle_timeout: {idle}{script}}}\n"
            f"receivers: [{{ae_title: XNAT, port: {port}, host: 127.0.0.1}}]\n"
            f"projects: {{BENCH: {{}}}}\nhttp: {{listen: '127.0.0.1:{http}'}}\n"
            f"workers: {WORKERS}\n"
        )
        argv, aec = [sys.executable, "-m", "xnatd", "run", "-c", str(work / "xnatd.yaml")], "XNAT"
    elif kind == "storescp":
        (work / "out").mkdir()
        argv = [dcmtk_tool("storescp"), "--fork", "-od", str(work / "out"), "-aet", "PEER"]
        argv, aec = [*argv, str(port)], "PEER"
    elif kind == "pynetdicom":
        argv = [
            sys.executable,
            str(ROOT / "bench" / "pynetdicom_peer.py"),
            str(port),
            str(work / "out"),
        ]
        aec = "PEER"
    else:
        (work / "orthanc.json").write_text(
            json.dumps(
                {
                    "Name": "bench",
                    "StorageDirectory": str(work / "db"),
                    "IndexDirectory": str(work / "db"),
                    "DicomAet": "ORTHANC",
                    "DicomPort": port,
                    "HttpPort": free_port(),
                    "DicomCheckCalledAet": False,
                    "SyncStorageArea": True,  # fsync per file, as xnatd
                    "StorageCompression": False,
                    "RemoteAccessAllowed": False,
                    "Plugins": [],
                }
            )
        )
        argv, aec = ["/usr/sbin/Orthanc", str(work / "orthanc.json")], "ORTHANC"
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    log.close()
    wait_for(lambda: port_accepts(port), timeout=60)
    if kind.startswith("xnatd"):  # workers: auto; associations go only to workers that serve
        workers = load_config(work / "xnatd.yaml").workers - 1
        wait_for(lambda: (work / "log").read_text().count('"worker_ready"') >= workers, 60)
    return Peer(port, aec, process, work)


def stop(peer: Peer) -> None:
    peer.process.terminate()
    try:
        peer.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        peer.process.kill()
        peer.process.wait()


# -- sending ---------------------------------------------------------------------------
def send(peer: Peer, folders: list[Path], associations: int, nodelay: bool) -> float:
    """Seconds for storescu to send every folder over the given number of associations."""
    groups = [folders[i::associations] for i in range(associations)]
    env = {**os.environ, "TCP_NODELAY": "1" if nodelay else "0"}
    started = time.perf_counter()
    senders = [
        subprocess.Popen(
            [
                dcmtk_tool("storescu"),
                "-aet",
                "BENCH",
                "-aec",
                peer.aec,
                "+sd",
                "+r",
                "127.0.0.1",
                str(peer.port),
                *map(str, group),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for group in groups
        if group
    ]
    for sender in senders:
        _, err = sender.communicate(timeout=3600)
        if sender.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - started


def send_sessions(peer: Peer, folders: list[Path], lanes: int, nodelay: bool) -> float:
    """Seconds until every lane has sent its sessions, one storescu (one association)
    per session, each lane's sessions one after another."""
    failures: list[str] = []

    def lane(group: list[Path]) -> None:
        for folder in group:
            try:
                send(peer, [folder], 1, nodelay)
            except RuntimeError as exc:
                failures.append(str(exc))
                return

    started = time.perf_counter()
    threads = [
        threading.Thread(target=lane, args=(folders[i::lanes],), daemon=True) for i in range(lanes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[0])
    return time.perf_counter() - started


def ready_count(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM prearchive WHERE status = 'READY'").fetchone()[
                0
            ]
    except sqlite3.Error:
        return 0


def measure(
    kind: str,
    work: Path,
    folders: list[Path],
    associations: int,
    nodelay: bool,
    idle: str,
    sessions: int | None = None,
    per_session: bool = False,
) -> dict:
    # Let the previous receiver's write-back finish, so it does not land on whoever is
    # measured next.
    os.sync()
    time.sleep(1.0)
    peer = start(kind, work, idle)
    try:
        with sampling(peer):
            cpu_before = cpu_seconds(process_tree(peer.process.pid))
            first_file = time.perf_counter()
            sender = send_sessions if per_session else send
            seconds = sender(peer, folders, associations, nodelay)
            cpu = cpu_seconds(process_tree(peer.process.pid)) - cpu_before
            last_file = time.perf_counter()
            to_ready = first_to_ready = cpu_to_ready = None
            if kind.startswith("xnatd") and sessions:
                index = work / "data" / "index.sqlite"
                wait_for(lambda: ready_count(index) >= sessions, timeout=900, interval=0.02)
                to_ready = time.perf_counter() - last_file
                first_to_ready = time.perf_counter() - first_file
                cpu_to_ready = cpu_seconds(process_tree(peer.process.pid)) - cpu_before
    finally:
        stop(peer)
        evict(work)
    return {
        "seconds": seconds,
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peer.rss[0] / 1e6, 1),
        "to_ready": to_ready,
        "first_to_ready": first_to_ready,
        "cpu_to_ready": None if cpu_to_ready is None else round(cpu_to_ready, 2),
    }


def evict(folder: Path) -> None:
    """Drop what a receiver wrote from the page cache, once it is on disk, keeping the
    files. Kept cached, a suite's 20-30 GB filled this 24 GB machine: from the second
    run of a set every receiver's writes went through page reclaim, which doubled
    storescp's CPU per instance, and the receivers measured later paid most of it."""
    os.sync()
    for path in folder.rglob("*"):
        try:
            if not path.is_file() or path.is_symlink():
                continue
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


# -- the suite ---------------------------------------------------------------------------
@dataclass
class Case:
    """One set: its folders, the (associations, nodelay) shapes, who receives it, how
    many sessions xnatd should end with, its idle timeout and how it is sent."""

    folders: list[Path]
    shapes: list[tuple[int, bool]]
    receivers: list[str]
    sessions: int
    idle: str
    per_session: bool = False  # one association per session, lanes in parallel


def summarize(runs: list[dict], files: int, size: int) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    ready = [r["to_ready"] for r in runs if r["to_ready"] is not None]
    got = {
        "runs": runs,
        "median_seconds": seconds,
        "instances_per_second": round(files / seconds, 2),
        # the slowest and fastest single runs: how far one run can be trusted here
        "instances_per_second_range": [
            round(files / max(r["seconds"] for r in runs), 1),
            round(files / min(r["seconds"] for r in runs), 1),
        ],
        "megabytes_per_second": round(size / 1e6 / seconds, 1),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        # the receiver's processes while the set was sent: what one instance costs it
        "cpu_ms_per_instance": round(
            statistics.median(r["cpu_seconds"] for r in runs) / files * 1e3, 2
        ),
        "last_file_to_ready_seconds": round(statistics.median(ready), 2) if ready else None,
    }
    whole = [r for r in runs if r.get("first_to_ready") is not None]
    if whole:  # first file sent to last session READY, and the CPU until then (builds too)
        got["instances_per_second_to_ready"] = round(
            files / statistics.median(r["first_to_ready"] for r in whole), 2
        )
        got["cpu_ms_per_instance_to_ready"] = round(
            statistics.median(r["cpu_to_ready"] for r in whole) / files * 1e3, 2
        )
    return got


def suite(
    args: argparse.Namespace, work: Path, receivers: list[str], scale: float, runs: int
) -> dict:
    """Generate the sets under ``work`` and measure every receiver on each."""
    data = work / "data"
    wanted = args.sets.split(",")
    sets: dict[str, Case] = {}
    mixed = make_mixed(data / "mixed", scale) if {"mixed", "steady"} & set(wanted) else []
    if "mixed" in wanted:
        sets["mixed"] = Case(mixed, [(1, True), (4, True)], receivers, 12, idle=args.idle)
    if "small" in wanted:
        # 500: peers stalled by Nagle take 20+ s for them already
        folders = make_series(data / "small", "small", round(500 * scale), 76)
        sets["small"] = Case(folders, [(1, False), (1, True), (4, False)], receivers, 1, args.idle)
    if "big" in wanted:
        folders = make_series(data / "big", "big", round(10000 * scale), 64)
        sets["big"] = Case(folders, [(1, True)], ["xnatd", "storescp"], 1, idle=args.idle)
    if "huge" in wanted:
        folders = make_huge(data / "huge", 2.0 * scale)
        kinds = ["xnatd", "xnatd+script", "storescp"]
        sets["huge"] = Case(folders, [(1, True)], kinds, 1, idle=args.idle)
    if "steady" in wanted:
        shapes = [(1, True), (4, True)]
        sets["steady"] = Case(mixed, shapes, receivers, 12, args.steady_idle, per_session=True)

    results: dict = {"runs": runs, "idle_timeout": args.idle, "sets": {}}
    for name, case_of_set in sets.items():
        folders, shapes, kinds, sessions = (
            case_of_set.folders,
            case_of_set.shapes,
            case_of_set.receivers,
            case_of_set.sessions,
        )
        files, size = count_files(folders)
        entry = results["sets"][name] = {
            "files": files,
            "megabytes": round(size / 1e6, 1),
            "cases": {},
        }
        # Run n of every case and receiver, then run n + 1: whatever drifts during a
        # set is shared out among all of them instead of landing on the cells measured
        # last (the same cell, xnatd at 4 associations, made 752 inst/s after three
        # Orthanc runs and 1,085-1,118 after other orders, cause unknown).
        measured: dict[tuple[int, bool, str], list[dict]] = {}
        for n in range(runs):
            for associations, nodelay in shapes:
                for kind in kinds:
                    cell_work = work / f"{name}-{kind}-{associations}-{nodelay}-{n}"
                    measured.setdefault((associations, nodelay, kind), []).append(
                        measure(
                            kind,
                            cell_work,
                            folders,
                            associations,
                            nodelay,
                            case_of_set.idle,
                            sessions,
                            case_of_set.per_session,
                        )
                    )
                    if name == "huge":  # a few large files: deleting them frees few inodes
                        shutil.rmtree(cell_work, ignore_errors=True)
        for associations, nodelay in shapes:
            case = f"{associations} assoc, {'nodelay' if nodelay else 'nagle'}"
            cell = entry["cases"][case] = {}
            if case_of_set.per_session:
                cell["idle_timeout"] = case_of_set.idle
            for kind in kinds:
                got = cell[kind] = summarize(measured[associations, nodelay, kind], files, size)
                low, high = got["instances_per_second_range"]
                spread = f" ({low:.0f}-{high:.0f})" if low != high else ""
                print(
                    f"  {name:6} {case:18} {kind:10} "
                    f"{got['instances_per_second']:8.1f} inst/s{spread} "
                    f"{got['megabytes_per_second']:7.1f} MB/s "
                    f"peak RSS {got['peak_rss_mb']:7.1f} MB "
                    f"CPU {got['cpu_ms_per_instance']:5.2f} ms/inst",
                    flush=True,
                )
            # From the median seconds, not the rounded rates (one 2 GB object: 0.0 inst/s).
            ours = cell.get("xnatd", {}).get("median_seconds")
            for kind in kinds:
                if kind != "xnatd" and ours:
                    cell[f"xnatd_over_{kind}"] = round(cell[kind]["median_seconds"] / ours, 2)
    return results


def positive_count(text: str) -> int:
    """``--runs`` and the like: a whole number of at least 1, refused in one line."""
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")


def receivers_value(text: str) -> list[str]:
    """``--receivers``: known receivers only (an unknown name would start Orthanc)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*RECEIVERS, "xnatd-before")]
    if unknown or not names:
        known = ", ".join((*RECEIVERS, "xnatd-before"))
        raise argparse.ArgumentTypeError(f"{','.join(unknown) or text!r}: receivers are {known}")
    return names


def workers_value(text: str) -> str:
    """``--workers``: auto or a count xnatd accepts, refused here rather than by a daemon
    that then never starts."""
    if text == "auto" or (text.isdigit() and 1 <= int(text) <= MAX_WORKERS):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not auto or a number from 1 to {MAX_WORKERS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=positive_count, default=3)
    parser.add_argument("--sets", default="mixed,small,big,huge")
    parser.add_argument("--receivers", type=receivers_value, default=list(RECEIVERS))
    parser.add_argument("--idle", default="2s", help="xnatd's session_idle_timeout")
    parser.add_argument(
        "--steady-idle", default="1s", help="xnatd's session_idle_timeout in the steady set"
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, one run")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of an earlier xnatd (git worktree add DIR REF): measured too, "
        "as receiver xnatd-before (name it in --receivers)",
    )
    parser.add_argument(
        "--workers", default="auto", type=workers_value, help="xnatd's workers (auto: one per core)"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "ingest.json")
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    scale = 0.1 if args.quick else 1.0
    runs = 1 if args.quick else args.runs
    receivers = list(args.receivers)
    if "xnatd-before" in receivers:
        if args.before is None or not (args.before / "xnatd" / "__init__.py").exists():
            parser.error("receiver xnatd-before needs --before DIR, a checkout of xnatd")
        global BEFORE
        BEFORE = str(args.before.resolve())
    if "orthanc" in receivers and not Path("/usr/sbin/Orthanc").exists():
        print("Orthanc not installed (apt-get install orthanc): left out", file=sys.stderr)
        receivers.remove("orthanc")
    work = Path(tempfile.mkdtemp(prefix="xnatd-ingest-"))
    try:  # received files are kept until the end (see above): tens of GB if it fails
        results = suite(args, work, receivers, scale, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    report(results)
    print(f"JSON: {args.json}")


def report(results: dict) -> None:
    print(f"\nmedian of {results['runs']}; xnatd idle timeout {results['idle_timeout']}")
    for name, entry in results["sets"].items():
        print(f"{name}: {entry['files']} files, {entry['megabytes']} MB")
        for case, cell in entry["cases"].items():
            ours = cell.get("xnatd", {})
            ratios = ", ".join(
                f"{k.removeprefix('xnatd_over_')} {v}x"
                for k, v in cell.items()
                if k.startswith("xnatd_over_")
            )
            extra = ""
            if ours.get("last_file_to_ready_seconds") is not None:
                extra = f"; last file -> READY {ours['last_file_to_ready_seconds']} s"
            if "idle_timeout" in cell:  # the steady set's own
                extra += f"; xnatd idle timeout {cell['idle_timeout']}"
            if "xnatd+script" in cell:
                extra += f"; with a site script peak RSS {cell['xnatd+script']['peak_rss_mb']} MB"
            if ours.get("instances_per_second_to_ready") is not None:
                extra += (
                    f"; to the last READY {ours['instances_per_second_to_ready']} inst/s, "
                    f"CPU {ours['cpu_ms_per_instance_to_ready']} ms/inst"
                )
            print(
                f"  {case:18} xnatd {ours.get('instances_per_second')} inst/s, "
                f"{ours.get('megabytes_per_second')} MB/s, peak RSS {ours.get('peak_rss_mb')} MB; "
                f"ratio to {ratios}{extra}"
            )
    for line in goals(results):
        print(line)


def goals(results: dict) -> list[str]:
    """Issue 23's goals, each with the figure this run measured and whether it is met."""
    sets = results["sets"]
    lines: list[str] = []

    def check(what: str, value: float | None, goal: float, at_most: bool = False) -> None:
        if value is None:
            return
        met = value <= goal if at_most else value >= goal
        sign = "<=" if at_most else ">="
        verdict = "met" if met else "NOT met"
        lines.append(f"  {what:58} {value:7.2f} (goal {sign} {goal:g}) {verdict}")

    steady = sets.get("steady", {}).get("cases", {})
    one, four = steady.get("1 assoc, nodelay", {}), steady.get("4 assoc, nodelay", {})
    check("steady, 4 lanes: xnatd / Orthanc (to last ack)", four.get("xnatd_over_orthanc"), 1.2)
    if one.get("xnatd") and four.get("xnatd"):
        own = one["xnatd"]["median_seconds"] / four["xnatd"]["median_seconds"]
        check("steady, 4 lanes / xnatd's own 1 lane", own, 1.6)
    check("steady, 1 lane: xnatd / Orthanc (to last ack)", one.get("xnatd_over_orthanc"), 1.25)
    if four.get("xnatd") and four.get("orthanc"):
        ours, theirs = four["xnatd"], four["orthanc"]
        check(
            "steady, 4 lanes: CPU per instance, xnatd / Orthanc",
            ours["cpu_ms_per_instance"] / theirs["cpu_ms_per_instance"],
            0.8,
            at_most=True,
        )
        if ours.get("cpu_ms_per_instance_to_ready") is not None:
            check(
                "  the same, xnatd's CPU counted to the last READY",
                ours["cpu_ms_per_instance_to_ready"] / theirs["cpu_ms_per_instance"],
                0.8,
                at_most=True,
            )
    nagle = sets.get("small", {}).get("cases", {}).get("1 assoc, nagle", {})
    check("small objects, Nagle on: xnatd / storescp", nagle.get("xnatd_over_storescp"), 25)
    big = sets.get("big", {}).get("cases", {}).get("1 assoc, nodelay", {}).get("xnatd", {})
    if big.get("last_file_to_ready_seconds") is not None:
        idle = parse_seconds(results["idle_timeout"])
        check(
            "10,000 instances: last file -> READY, s",
            big["last_file_to_ready_seconds"],
            idle + 2,
            at_most=True,
        )
    return ["\ngoals (issue 23):", *lines] if lines else []


def parse_seconds(text: str) -> float:
    """'2s', '500ms' or '1m' (the forms --idle takes) in seconds."""
    for suffix, scale in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


if __name__ == "__main__":
    main()
