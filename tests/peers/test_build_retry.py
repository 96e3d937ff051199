"""Issue 16.9: a build that failed for lack of space is retried once space returns.

The data directory is a small tmpfs (a real file system that fills up); the index is
PostgreSQL, elsewhere, so that it records the failure and the retry.
"""

from __future__ import annotations

import errno
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, postgres_schema, pynetdicom_send


def _fill(folder: Path) -> Path:
    """Write zeros until the file system is full."""
    ballast = folder / "ballast"
    chunk = b"\0" * 65536
    with ballast.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return ballast


def test_build_failed_for_lack_of_space_is_retried_after_a_restart(
    make_xnatd, mount_tmpfs, tmp_path: Path, dcm_dir: Path
) -> None:
    data = mount_tmpfs(tmp_path / "small", "4M")
    with postgres_schema() as url:

        def postgres(settings: dict) -> None:
            settings["index"] = url
            settings["workers"] = 1

        xnatd: Xnatd = make_xnatd(hook=postgres, data_dir=str(data), min_free_disk="0")
        paths = write_study(
            StudySpec("space", study_description="DEMO", series=[SeriesSpec(1, instances=3)]),
            dcm_dir,
        )
        filled: list[Path] = []

        def fill_after_last(path: Path, status: int) -> None:
            if path == paths[-1]:  # the association stays open: no build yet
                filled.append(_fill(data))

        statuses = pynetdicom_send(xnatd.port, paths, hold_open=1.5, on_status=fill_after_last)
        assert statuses == [0] * 3
        [failed] = xnatd.wait_status("ERROR")
        assert "No space left" in failed["reason"] and "retry 1 in 5s" in failed["reason"]

        xnatd.kill()  # the retry is due by the index, not by a timer in this process
        filled[0].unlink()  # space returns; nobody touches the session
        xnatd.start()
        [ready] = xnatd.wait_status("READY", timeout=30)
        assert ready["files"] == 3
        folder = data / "prearchive" / ready["project"] / ready["timestamp"]
        assert (folder / f"{ready['label']}.xml").is_file()
        xnatd.stop()


def test_a_permanent_build_failure_stays_error(xnatd: Xnatd, dcm_dir: Path) -> None:
    """A recorded file damaged on disk is not a reason to retry: ERROR stays."""
    paths = write_study(
        StudySpec("damaged", study_description="DEMO", series=[SeriesSpec(1, instances=2)]),
        dcm_dir,
    )
    assert pynetdicom_send(xnatd.port, paths, hold_open=0.5) == [0, 0]
    stored = sorted(xnatd.data_dir.glob("prearchive/DEMO/*/*/SCANS/*/DICOM/*.dcm"))
    for path in stored:
        path.write_bytes(b"not DICOM")
    [row] = xnatd.wait_status("ERROR")
    assert "retry" not in (row.get("reason") or "")
