"""``xnatd send`` is quiet and exact: it skips what import skips, and a peer it cannot
reach or that refuses it stops the send at once with one line (issue 17)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pydicom
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import free_port, xnatd_send


def test_skips_dicomdir_and_non_dicom_files_quietly(make_xnatd, dcm_dir: Path) -> None:
    """DICOMDIR (by name or by SOP class), desktop clutter and text files are skipped and
    listed; the images are sent; no library warning or traceback reaches the console."""
    files = write_study(
        StudySpec("skips", study_description="DEMO", series=[SeriesSpec(1, instances=3)]),
        dcm_dir,
    )
    shutil.copy(files[0], dcm_dir / "DICOMDIR")
    directory = pydicom.dcmread(files[1])
    directory.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    directory.save_as(dcm_dir / "INDEX")
    (dcm_dir / "README.txt").write_text("scanner export notes\n")
    (dcm_dir / "._IM1").write_bytes(b"\0\5\26\7" + b"\0" * 60)
    daemon = make_xnatd()
    done = xnatd_send(dcm_dir, daemon.port, "XNAT", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sent"] == 3 and result["failed"] == []
    skipped = {Path(s["entry"]).name: s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"DICOMDIR", "INDEX", "README.txt", "._IM1"}
    assert "DICOMDIR" in skipped["INDEX"]
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    [row] = daemon.wait_status("READY")
    assert row["files"] == 3


def test_refused_connection_fails_at_once_with_one_line(dcm_dir: Path) -> None:
    write_study(
        StudySpec("nobody", study_description="DEMO", series=[SeriesSpec(1, instances=20)]),
        dcm_dir,
    )
    started = time.monotonic()
    done = xnatd_send(dcm_dir, free_port(), "XNAT", "--associations", "4")
    assert time.monotonic() - started < 20
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to 127.0.0.1" in lines[0], done.stderr


def test_rejected_ae_title_fails_at_once_with_the_reason(make_xnatd, dcm_dir: Path) -> None:
    """A calling AE title not on the allow-list: one line naming both AE titles and the
    peer's reason, not a line per file."""
    daemon = make_xnatd(hook=lambda s: s["receivers"][0].update(allow=["SCANNER"]))
    write_study(
        StudySpec("stranger", study_description="DEMO", series=[SeriesSpec(1, instances=20)]),
        dcm_dir,
    )
    done = xnatd_send(dcm_dir, daemon.port, "XNAT", "--aet", "STRANGER")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "rejected the association" in lines[0] and "STRANGER" in lines[0]
    assert "Calling AE" in lines[0] or "calling" in lines[0].lower()
    assert done.stdout.strip() == ""
