"""Helpers shared by tests: bounded waits, free ports, xnatd as a subprocess, DCMTK peers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

SCHEMAS = Path(os.environ.get("XNATD_SCHEMAS", ROOT.parent / "shared" / "reference" / "schemas"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until predicate returns something truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def dcmtk_tool(name: str) -> str:
    """A DCMTK binary; pynetdicom installs same-named Python apps earlier on PATH."""
    for folder in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(folder) / name
        if candidate.is_file():
            out = subprocess.run([str(candidate), "--version"], capture_output=True, text=True)
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return str(candidate)
    pytest.fail(f"DCMTK {name} is not installed (apt-get install dcmtk; .ci/run does this)")


def assert_valid(schema: Any, path: Path) -> None:
    from lxml import etree

    document = etree.parse(str(path))
    if not schema.validate(document):
        errors = "; ".join(f"line {e.line}: {e.message}" for e in schema.error_log)
        raise AssertionError(f"{path} does not validate: {errors}")


class Xnatd:
    """One ``xnatd run`` subprocess with its own configuration and data directory."""

    def __init__(self, workdir: Path, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.settings = settings
        self.config_path = workdir / "xnatd.yaml"
        self.log_path = workdir / "xnatd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.write_config()

    @property
    def data_dir(self) -> Path:
        return (self.workdir / self.settings["site"]["data_dir"]).resolve()

    @property
    def port(self) -> int:
        return self.settings["receivers"][0]["port"]

    @property
    def http_port(self) -> int:
        return int(self.settings["http"]["listen"].rsplit(":", 1)[1])

    @property
    def http_url(self) -> str:
        """The API's base URL: https:// when ``http.tls`` is set."""
        scheme = "https" if self.settings["http"].get("tls") else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    def _urlopen(self, url: str, timeout: float) -> Any:
        # The readiness probe and metrics do not check the test certificate.
        context = ssl._create_unverified_context() if url.startswith("https") else None
        return urllib.request.urlopen(url, timeout=timeout, context=context)

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.settings, sort_keys=False))

    def start(self, program: Sequence[str] = (sys.executable, "-m", "xnatd")) -> Xnatd:
        """Start ``PROGRAM run -c CONFIG`` in the work folder; returns once it serves."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [*program, "run", "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        wait_for(self._ready, timeout=20)
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"xnatd exited with {self.process.returncode}:\n{self.log()}")
        try:
            with self._urlopen(f"{self.http_url}/healthz", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # up, but degraded (503): a receiver failed to start
        except OSError:
            return False

    def stop(self, timeout: float = 40) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                events.append(event)
        return events

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "xnatd", *args, "-c", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"xnatd {' '.join(args)} failed: {result.stderr}")
        return result

    def prearchive(self, **filters: str) -> list[dict[str, Any]]:
        args = ["prearchive", "list", "--json"]
        for key, value in filters.items():
            args += [f"--{key}", value]
        return json.loads(self.cli(*args).stdout)

    def wait_status(self, status: str, count: int = 1, timeout: float = 30) -> list[dict]:
        def check() -> list[dict] | None:
            rows = self.prearchive()
            matching = [row for row in rows if row["status"] == status]
            return matching if len(matching) >= count else None

        return wait_for(check, timeout=timeout, interval=0.2)

    def metrics(self) -> str:
        with self._urlopen(f"{self.http_url}/metrics", timeout=5) as response:
            return response.read().decode()


def base_settings(port: int, http_port: int, **site: Any) -> dict[str, Any]:
    return {
        "site": {
            "id": "XNATD",
            "data_dir": "data",
            "session_idle_timeout": "1s",
            "min_free_disk": "1MiB",
            **site,
        },
        "index": "sqlite",
        "receivers": [{"ae_title": "XNAT", "port": port, "host": "127.0.0.1"}],
        "projects": {
            "DEMO": {"aliases": ["DemoStudy"]},
            "PETMR": {},
            "OTHER": {},
        },
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "logging": {"format": "json", "level": "info"},
    }


def xnatd_send(path: Path, port: int, aec: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``xnatd send PATH`` to 127.0.0.1:port as the upload assistant runs it."""
    return subprocess.run(
        [sys.executable, "-m", "xnatd", "send", str(path), "--host", "127.0.0.1",
         "--port", str(port), "--aec", aec, *options],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def storescu_send(
    storescu: str,
    port: int,
    paths: list[Path],
    *,
    aec: str = "XNAT",
    aet: str = "SCANNER",
    extra: list[str] | None = None,
    nagle: bool = False,
) -> subprocess.CompletedProcess[str]:
    """DCMTK storescu; ``nagle=True`` leaves Nagle's algorithm on, as most modalities."""
    return subprocess.run(
        [
            storescu,
            "-aet",
            aet,
            "-aec",
            aec,
            *(extra or []),
            "127.0.0.1",
            str(port),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TCP_NODELAY": "0" if nagle else "1"},
    )


def pynetdicom_send(
    port: int,
    paths: list[Path],
    *,
    aet: str = "PYSCU",
    aec: str = "XNAT",
    hold_open: float = 0.0,
    on_status: Callable[[Path, int], None] | None = None,
    timeout: float = 30,
    tls_args: tuple[Any, str] | None = None,
) -> list[int]:
    """Send files as they are (raw, not re-encoded) over one association; returns statuses.

    Each file's own transfer syntax is proposed for its SOP class, and the bytes after
    its file meta group go on the wire untouched. Stock pynetdicom's requestor can, rarely,
    lose a response to its own reactor thread (status -1 after the DIMSE timeout; xnatd's
    own sender is mended in scp/hooks.py, _Checkpoint, but this peer stays stock): a test
    that must reach a given number of acknowledgements sends with storescu instead.
    """
    from pydicom import dcmread
    from pynetdicom import AE, _config

    metas = [dcmread(path, stop_before_pixels=True).file_meta for path in paths]
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for pair in sorted({(m.MediaStorageSOPClassUID, m.TransferSyntaxUID) for m in metas}):
        ae.add_requested_context(pair[0], [pair[1]])
    # Global to pynetdicom; set for good, since senders run in parallel threads.
    _config.STORE_SEND_CHUNKED_DATASET = True
    assoc = None
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=aec, tls_args=tls_args)
        if not assoc.is_established:
            raise ConnectionError(f"association to {aec} on {port} not established")
        statuses = []
        for path in paths:
            status = assoc.send_c_store(path)
            code = int(status.Status) if "Status" in status else -1
            statuses.append(code)
            if on_status is not None:
                on_status(path, code)
        if hold_open:
            time.sleep(hold_open)
        assoc.release()
    finally:
        ae.shutdown()
        # pynetdicom leaves the socket open when the peer vanishes mid-association.
        transport = assoc.dul.socket if assoc is not None else None
        if transport is not None and transport.socket is not None:
            transport.socket.close()
    return statuses


def associate_result(port: int, *, aet: str, aec: str = "XNAT") -> tuple[bool, tuple | None]:
    """Try an association; returns (established, (result, source, diagnostic) if rejected)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=aec)
    try:
        if assoc.is_established:
            assoc.release()
            return True, None
        rejection = None
        if assoc.is_rejected and assoc.acceptor.primitive is not None:
            primitive = assoc.acceptor.primitive
            rejection = (primitive.result, primitive.result_source, primitive.diagnostic)
        return False, rejection
    finally:
        ae.shutdown()


def dicom_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.dcm"))


def port_accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (a plain TCP connect).

    pynetdicom's own associate() leaks its socket when the connection is refused, so
    tests probe with this before associating with a port that may be closed.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Site:
    """The daemon's stages wired in-process, with builds run on demand instead of timers."""

    def __init__(self, workdir: Path, projects: dict[str, Any], **site: Any) -> None:
        from xnatd import config as config_module
        from xnatd.metrics import Metrics
        from xnatd.pipeline import Pipeline, open_store

        self.workdir = workdir
        self.config_path = workdir / "xnatd.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "site": {"id": "XNATD", "data_dir": "data", "min_free_disk": 0, **site},
                    "projects": projects,
                }
            )
        )
        self.config = config_module.load(self.config_path)
        self.store = open_store(self.config)
        self.metrics = Metrics()
        # The daemon's own wiring (xnatd/pipeline.py); ``self.config`` may be replaced.
        self.pipeline = Pipeline.assemble(
            self.store, lambda: self.config, self.metrics, "test-node"
        )
        self.intake = self.pipeline.intake
        self.archiver = self.pipeline.archiver
        self.builder = self.pipeline.builder
        self.operations = self.pipeline.operations
        self.importer = self.pipeline.importer

    def receive(self, paths: list[Path], **explicit: str) -> list[str]:
        from xnatd.intake.intake import Received
        from xnatd.routing import Explicit

        outcomes = [
            self.intake.receive(
                Received(
                    path.read_bytes(),
                    source="TEST",
                    calling_ae="SENDER",
                    explicit=Explicit(**explicit),
                )
            )
            for path in paths
        ]
        return [outcome.result.value for outcome in outcomes]

    def build_all(self) -> list[Any]:
        """Build every session now, then apply the archive policy, as the sweeper does."""
        from xnatd.store.index.records import Status

        built = []
        for session in self.store.assembly.claim_idle_sessions(
            idle_timeout=-1, node="test-node", lease=60
        ):
            if self.builder.build(session) is Status.READY:
                self.archiver.after_build(session)
            built.append(session)
        return built

    def prearchive(self) -> list[Any]:
        return self.store.index.list_sessions()

    def archived(self, *statuses: str) -> list[Any]:
        from xnatd.store.index.records import ArchiveStatus, SessionFilter

        wanted = tuple(ArchiveStatus(s) for s in statuses) or tuple(ArchiveStatus)
        return self.store.index.list_archived(SessionFilter(statuses=wanted))

    def close(self) -> None:
        self.store.close()


POSTGRES = os.environ.get("XNATD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the test database; yields a URL whose search_path is it."""
    import uuid
    from urllib.parse import quote

    import psycopg

    schema = f"xnatd_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES} is not reachable ({exc}); .ci/run starts it")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{POSTGRES}?options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def tolerate_bad_uids() -> None:
    """Let this process's pynetdicom SCU decode a response whose UID breaks the rules
    (the bad UID a test sent, echoed back by xnatd); pynetdicom would raise instead."""
    import pynetdicom.dimse_primitives as dimse_primitives

    if getattr(dimse_primitives.set_uid, "_xnatd_lenient", False):
        return
    strict = dimse_primitives.set_uid

    def lenient(
        value: Any,
        name: str,
        allow_empty: bool = True,
        allow_none: bool = True,
        validate: bool = True,
    ) -> Any:
        try:
            return strict(value, name, allow_empty, allow_none, validate)
        except ValueError:
            return strict(value, name, allow_empty, allow_none, validate=False)

    lenient._xnatd_lenient = True  # type: ignore[attr-defined]
    dimse_primitives.set_uid = lenient
