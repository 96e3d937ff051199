"""Uploads without a scanner: xnatd import, the watched inbox, and xnatd send."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pydicom
import yaml
from dicomgen import SeriesSpec, StudySpec, dataset_bytes, write_study
from helpers import dcmtk_tool, dicom_files, free_port, port_accepts, wait_for, xnatd_send


def site(tmp_path: Path, **projects: dict) -> Path:
    config = tmp_path / "xnatd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": {"id": "XNATD", "data_dir": "data", "min_free_disk": 0},
                "projects": projects or {"DEMO": {}},
            }
        )
    )
    return config


def xnatd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xnatd", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def prearchive(config: Path) -> list[dict]:
    return json.loads(xnatd(config, "prearchive", "list", "--json").stdout)


def make_zip(tmp_path: Path, files: list[Path], extra: dict[str, bytes] | None = None) -> Path:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.write(path, f"series/{path.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


class TestImport:
    def test_zip_is_imported_built_and_reported(self, tmp_path: Path, dcm_dir: Path) -> None:
        config = site(tmp_path)
        files = write_study(
            StudySpec("imp", patient_id="P1", series=[SeriesSpec(1), SeriesSpec(2)]), dcm_dir
        )
        archive = make_zip(
            tmp_path, files, {".DS_Store": b"junk", "DICOMDIR": b"dir", "__MACOSX/._x": b""}
        )
        done = xnatd(
            config,
            "import",
            str(archive),
            "--project",
            "DEMO",
            "--subject",
            "S 1",
            "--session",
            "E1",
            "--json",
        )
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert (summary["files"], len(summary["sessions_created"]), summary["sessions_merged"]) == (
            6,
            1,
            [],
        )
        assert sorted(s["entry"].split("!")[1] for s in summary["skipped"]) == [
            ".DS_Store",
            "DICOMDIR",
            "__MACOSX/._x",
        ]
        [row] = prearchive(config)
        assert (row["project"], row["subject"], row["label"], row["status"], row["files"]) == (
            "DEMO",
            "S_1",
            "E1",
            "READY",
            6,
        )
        # Explicit values win; files kept bit for bit.
        stored = {
            pydicom.dcmread(p).SOPInstanceUID: p
            for p in dicom_files(tmp_path / "data" / "prearchive")
        }
        for original in files:
            assert dataset_bytes(stored[pydicom.dcmread(original).SOPInstanceUID]) == dataset_bytes(
                original
            )
        again = json.loads(
            xnatd(
                config,
                "import",
                str(archive),
                "--project",
                "DEMO",
                "--session",
                "E1",
                "--subject",
                "S 1",
                "--json",
            ).stdout
        )
        assert (
            again["sessions_merged"] == summary["sessions_created"]
            and again["sessions_created"] == []
        )
        assert prearchive(config)[0]["files"] == 6

    def test_one_bad_entry_stops_the_import_and_nothing_is_imported(
        self, tmp_path: Path, dcm_dir: Path
    ) -> None:
        config = site(tmp_path)
        files = write_study(StudySpec("bad", series=[SeriesSpec(1, instances=5)]), dcm_dir)
        archive = make_zip(tmp_path, files, {"series/notes.txt": b"not an image"})
        done = xnatd(config, "import", str(archive), "--project", "DEMO")
        assert done.returncode == 1
        assert (
            "upload.zip!series/notes.txt: not DICOM" in done.stderr
            and "nothing was imported" in done.stderr
        )
        assert prearchive(config) == [] and dicom_files(tmp_path / "data") == []
        skipped = xnatd(
            config, "import", str(archive), "--project", "DEMO", "--ignore-unparsable", "--json"
        )
        assert skipped.returncode == 0
        assert json.loads(skipped.stdout)["skipped"][0]["entry"].endswith("notes.txt")
        assert prearchive(config)[0]["files"] == 5

    def test_hostile_archive_is_refused_with_a_clear_message(self, tmp_path: Path) -> None:
        config = site(tmp_path)
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("../../escape.dcm", b"x")
        done = xnatd(config, "import", str(archive), "--project", "DEMO")
        assert done.returncode == 1 and "leaves the archive" in done.stderr
        assert not (tmp_path / "escape.dcm").exists() and prearchive(config) == []

    def test_archive_flag_and_policy(self, tmp_path: Path, dcm_dir: Path) -> None:
        config = site(tmp_path, DEMO={}, AUTO={"prearchive": "auto-archive"})
        a = write_study(StudySpec("a", patient_id="A"), dcm_dir / "a")
        b = write_study(StudySpec("b", patient_id="B"), dcm_dir / "b")
        archived = json.loads(
            xnatd(
                config, "import", str(dcm_dir / "a"), "--project", "DEMO", "--archive", "--json"
            ).stdout
        )
        assert archived["archived"] == ["XNATD_E00001"] and len(a) == 3
        by_policy = json.loads(
            xnatd(config, "import", str(dcm_dir / "b"), "--project", "AUTO", "--json").stdout
        )
        assert by_policy["archived"] == ["XNATD_E00002"] and len(b) == 3
        assert prearchive(config) == []

    def test_interrupted_import_leaves_nothing_behind(self, tmp_path: Path, dcm_dir: Path) -> None:
        config = site(tmp_path)
        files = write_study(
            StudySpec("big", series=[SeriesSpec(1, instances=600, rows=128, columns=128)]), dcm_dir
        )
        archive = make_zip(tmp_path, files)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xnatd",
                "import",
                str(archive),
                "--project",
                "DEMO",
                "-c",
                str(config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(
            lambda: len(dicom_files(tmp_path / "data" / "prearchive")) >= 50,
            timeout=60,
            interval=0.01,
        )
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 130 and "interrupted" in errors
        assert prearchive(config) == []
        assert dicom_files(tmp_path / "data") == []
        assert not any((tmp_path / "data" / ".staging").iterdir())


def test_inbox_imports_settled_uploads_and_keeps_failures(tmp_path: Path, dcm_dir: Path) -> None:
    port, http = free_port(), free_port()
    config = tmp_path / "xnatd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": {
                    "id": "XNATD",
                    "data_dir": "data",
                    "min_free_disk": 0,
                    "session_idle_timeout": "1s",
                },
                "receivers": [{"ae_title": "XNAT", "port": port, "host": "127.0.0.1"}],
                "projects": {"DEMO": {}},
                "http": {"listen": f"127.0.0.1:{http}"},
                "inbox": {"settle": "500ms"},
            }
        )
    )
    inbox = tmp_path / "data" / "inbox" / "DEMO"
    inbox.mkdir(parents=True)
    files = write_study(StudySpec("inbox-early", patient_id="EARLY"), dcm_dir / "early")
    make_zip(tmp_path, files).rename(inbox / "dropped-while-down.zip")

    def run() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "xnatd", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_accepts(port), timeout=30)
        return process

    daemon = run()
    try:
        wait_for(lambda: [r for r in prearchive(config) if r["label"] == "EARLY"], timeout=30)
        assert not (inbox / "dropped-while-down.zip").exists()
        folder = inbox / "late-folder"
        write_study(StudySpec("inbox-late", patient_id="LATE"), folder)
        (inbox / "broken.zip").write_bytes(b"PK\x03\x04 definitely not a zip")
        wait_for(lambda: [r for r in prearchive(config) if r["label"] == "LATE"], timeout=30)
        wait_for(
            lambda: (tmp_path / "data/inbox/.failed/DEMO/broken.zip.reason.txt").exists(),
            timeout=30,
        )
        assert (
            "not a readable zip"
            in (tmp_path / "data/inbox/.failed/DEMO/broken.zip.reason.txt").read_text()
        )
        assert not folder.exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0


def test_send_into_storescp_and_into_xnatd(tmp_path: Path, dcm_dir: Path, make_xnatd) -> None:
    files = write_study(
        StudySpec(
            "send",
            study_description="DEMO",
            series=[SeriesSpec(1, instances=6), SeriesSpec(2, instances=4)],
        ),
        dcm_dir,
    )
    archive = make_zip(tmp_path, files)
    received = tmp_path / "received"
    received.mkdir()
    port = free_port()
    peer = subprocess.Popen(
        [dcmtk_tool("storescp"), "-od", str(received), "-aet", "PEER", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_accepts(port), timeout=30)
        done = xnatd_send(archive, port, "PEER", "--associations", "3", "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert (
            result["sent"] == 10 and result["statuses"] == {"0x0000": 10} and result["failed"] == []
        )
    finally:
        peer.terminate()
        peer.wait(timeout=30)
    by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in received.iterdir()}
    for original in files:
        assert dataset_bytes(by_uid[pydicom.dcmread(original).SOPInstanceUID]) == dataset_bytes(
            original
        )

    daemon = make_xnatd()
    done = xnatd_send(dcm_dir, daemon.port, "XNAT", "--associations", "2")
    assert done.returncode == 0 and "sent 10, failed 0" in done.stdout
    [row] = daemon.wait_status("READY")
    assert row["files"] == 10


def test_send_retries_then_reports_refusals(make_xnatd, dcm_dir: Path) -> None:
    daemon = make_xnatd(min_free_disk="1000000TiB")
    write_study(
        StudySpec("refused", study_description="DEMO", series=[SeriesSpec(1, instances=2)]), dcm_dir
    )
    started = time.monotonic()
    done = xnatd_send(dcm_dir, daemon.port, "XNAT", "--retries", "2", "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["sent"] == 0 and result["retries"] == 4 and result["statuses"] == {"0xA700": 2}
    assert [f["status"] for f in result["failed"]] == ["0xA700", "0xA700"]
    assert time.monotonic() - started < 60


def test_send_into_orthanc(tmp_path: Path, dcm_dir: Path) -> None:
    """The upload assistant against a third peer: Orthanc stores all ten instances."""
    import shutil
    import urllib.request

    orthanc = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(orthanc).exists():
        raise AssertionError(
            "Orthanc is not installed (apt-get install orthanc; .ci/run does this)"
        )
    files = write_study(
        StudySpec("orthanc", series=[SeriesSpec(1, instances=6), SeriesSpec(2, instances=4)]),
        dcm_dir,
    )
    dicom_port, http_port = free_port(), free_port()
    storage = tmp_path / "orthanc-db"
    config = tmp_path / "orthanc.json"
    config.write_text(
        json.dumps(
            {
                "Name": "xnatd-test",
                "DicomAet": "ORTHANC",
                "DicomPort": dicom_port,
                "HttpPort": http_port,
                "StorageDirectory": str(storage),
                "IndexDirectory": str(storage),
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "DicomCheckCalledAet": True,
                "Plugins": [],
            }
        )
    )
    peer = subprocess.Popen(
        [orthanc, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: port_accepts(dicom_port) and port_accepts(http_port), timeout=60)
        done = xnatd_send(dcm_dir, dicom_port, "ORTHANC", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["statuses"] == {"0x0000": 10}
        with urllib.request.urlopen(
            f"http://127.0.0.1:{http_port}/instances", timeout=10
        ) as response:
            assert len(json.loads(response.read())) == len(files)
    finally:
        peer.terminate()
        peer.wait(timeout=30)
