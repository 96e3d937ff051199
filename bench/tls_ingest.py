"""DICOM over TLS against plain TCP (issue 22, SPEC 10.4), in the same run.

DCMTK storescu sends one MR series (256x256, about 130 kB an instance) at 1 and 4
associations, with a client certificate (``+tls``, the CA checked both ways, TLS 1.3 as
negotiated) and without TLS, into a fresh xnatd each time (workers: auto, its receivers
``PLAIN`` and ``SECURE`` on two ports, ``require_client_cert``), and the same into
Orthanc with ``DicomTlsEnabled`` when the installed Orthanc accepts it. Runs are
interleaved (plain, TLS, plain, TLS, ...). Prints instances/s, the receiver's CPU ms
per instance and the TLS/plain ratio (the goal for xnatd: at least 0.7x); writes JSON.

    python3 bench/tls_ingest.py [--quick] [--runs 3] [--instances 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, cpu_seconds, process_tree
from helpers import dcmtk_tool, free_port, port_accepts, wait_for
from ingest import count_files, make_series
from tlscerts import Pki, make_pki

CASES = ((1, "1 association"), (4, "4 associations"))


def start_xnatd(work: Path, pki: Pki) -> tuple[subprocess.Popen, dict[str, int]]:
    """A fresh daemon with a plain and a TLS receiver; waits for its workers."""
    work.mkdir(parents=True)
    plain, secure, http = free_port(), free_port(), free_port()
    tls = (
        f"{{cert: {pki.server.cert}, key: {pki.server.key}, ca: {pki.ca.cert}, "
        "require_client_cert: true}"
    )
    (work / "xnatd.yaml").write_text(
        "site: {data_dir: data, min_free_disk: 0, session_idle_timeout: 10m}\n"
        "receivers:\n"
        f"  - {{ae_title: PLAIN, port: {plain}, host: 127.0.0.1}}\n"
        f"  - {{ae_title: SECURE, port: {secure}, host: 127.0.0.1, tls: {tls}}}\n"
        f"projects: {{BENCH: {{}}}}\nhttp: {{listen: '127.0.0.1:{http}'}}\n"
    )
    log = open(work / "log", "wb")  # noqa: SIM115 - the child keeps it
    argv = [sys.executable, "-m", "xnatd", "run", "-c", str(work / "xnatd.yaml")]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    log.close()
    wait_for(lambda: port_accepts(plain), timeout=60)
    workers = (os.cpu_count() or 1) - 1
    wait_for(lambda: (work / "log").read_text().count('"worker_ready"') >= workers, 60)
    return process, {"plain": plain, "tls": secure}


def start_orthanc(work: Path, pki: Pki, tls: bool) -> tuple[subprocess.Popen, int] | None:
    """Orthanc (fsync per file, as xnatd), with DICOM TLS when asked; None if it does
    not serve (an Orthanc built without TLS refuses the options)."""
    work.mkdir(parents=True)
    port = free_port()
    settings = {
        "Name": "bench",
        "StorageDirectory": str(work / "db"),
        "IndexDirectory": str(work / "db"),
        "DicomAet": "ORTHANC",
        "DicomPort": port,
        "HttpPort": free_port(),
        "DicomCheckCalledAet": False,
        "SyncStorageArea": True,
        "StorageCompression": False,
        "RemoteAccessAllowed": False,
        "Plugins": [],
    }
    if tls:
        settings |= {
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(pki.server.cert),
            "DicomTlsPrivateKey": str(pki.server.key),
            "DicomTlsTrustedCertificates": str(pki.ca.cert),
            "DicomTlsRemoteCertificateRequired": True,
        }
    (work / "orthanc.json").write_text(json.dumps(settings))
    log = open(work / "log", "wb")  # noqa: SIM115 - the child keeps it
    argv = ["/usr/sbin/Orthanc", str(work / "orthanc.json")]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    log.close()
    with contextlib.suppress(AssertionError):  # judged just below
        wait_for(lambda: process.poll() is not None or port_accepts(port), timeout=60)
    if process.poll() is not None or not port_accepts(port):
        stop(process)
        return None
    return process, port


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def send(port: int, aec: str, files: list[Path], associations: int, tls: list[str]) -> float:
    """Seconds for storescu to send the files over the given number of associations."""
    groups = [files[i::associations] for i in range(associations)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    started = time.perf_counter()
    command = [dcmtk_tool("storescu"), "-aet", "BENCH", "-aec", aec, *tls, "127.0.0.1", str(port)]
    senders = [
        subprocess.Popen(
            [*command, *map(str, group)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        for group in groups
    ]
    for sender in senders:
        _, err = sender.communicate(timeout=3600)
        if sender.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - started


def measure(
    receiver: str, secure: bool, work: Path, pki: Pki, files: list[Path], associations: int
) -> dict | None:
    os.sync()  # the previous receiver's write-back lands before, not during, this one
    time.sleep(1.0)
    tls = ["+tls", str(pki.scanner.key), str(pki.scanner.cert), "+cf", str(pki.ca.cert)]
    if receiver == "xnatd":
        process, ports = start_xnatd(work, pki)
        port, aec = ports["tls" if secure else "plain"], "SECURE" if secure else "PLAIN"
    else:
        started = start_orthanc(work, pki, secure)
        if started is None:
            return None
        (process, port), aec = started, "ORTHANC"
    try:
        cpu = cpu_seconds(process_tree(process.pid))
        seconds = send(port, aec, files, associations, tls if secure else [])
        cpu = cpu_seconds(process_tree(process.pid)) - cpu
    finally:
        stop(process)
    return {"seconds": seconds, "cpu_seconds": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="500 instances, one run")
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "tls_ingest.json")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    count = 500 if args.quick else args.instances
    receivers = ["xnatd"]
    if not args.no_orthanc and Path("/usr/sbin/Orthanc").exists():
        receivers.append("orthanc")
    work = Path(tempfile.mkdtemp(prefix="xnatd-tls-"))
    try:
        pki = make_pki(work / "pki")
        folders = make_series(work / "data", "tls", count, 256)
        files = sorted(p for p in folders[0].rglob("*") if p.is_file())
        total, size = count_files(folders)
        measured: dict[tuple[str, int, bool], list[dict]] = {}
        step = 0
        for _ in range(runs):
            for associations, _name in CASES:
                for receiver in receivers:
                    for secure in (False, True):
                        step += 1
                        result = measure(
                            receiver, secure, work / f"r{step}", pki, files, associations
                        )
                        if result is not None:
                            measured.setdefault((receiver, associations, secure), []).append(result)
                        shutil.rmtree(work / f"r{step}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results: dict = {"instances": total, "megabytes": round(size / 1e6, 1), "runs": runs}
    print(f"\n{total} instances, {size / 1e6:.0f} MB; median of {runs}; storescu")
    for associations, name in CASES:
        for receiver in receivers:
            cell = {}
            for secure in (False, True):
                samples = measured.get((receiver, associations, secure))
                if not samples:
                    continue
                seconds = statistics.median(s["seconds"] for s in samples)
                cpu = statistics.median(s["cpu_seconds"] for s in samples)
                cell["tls" if secure else "plain"] = {
                    "instances_per_second": round(total / seconds, 1),
                    "cpu_ms_per_instance": round(cpu / total * 1e3, 2),
                }
            if "tls" not in cell:
                print(f"  {name:15} {receiver:8} no DICOM TLS (the receiver did not start)")
            elif "plain" in cell:
                plain, secure_cell = cell["plain"], cell["tls"]
                ratio = secure_cell["instances_per_second"] / plain["instances_per_second"]
                cell["tls_over_plain"] = round(ratio, 2)
                # CPU per instance: what TLS costs the receiver, steadier than the rate
                # on a shared machine
                cost = secure_cell["cpu_ms_per_instance"] / max(plain["cpu_ms_per_instance"], 1e-9)
                cell["tls_cpu_over_plain"] = round(cost, 2)
                print(
                    f"  {name:15} {receiver:8} plain {plain['instances_per_second']} inst/s "
                    f"({plain['cpu_ms_per_instance']} ms CPU each), TLS "
                    f"{secure_cell['instances_per_second']} inst/s "
                    f"({secure_cell['cpu_ms_per_instance']} ms): TLS/plain {ratio:.2f}x, "
                    f"CPU {cost:.2f}x"
                )
            results[f"{receiver} {name}"] = cell
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
