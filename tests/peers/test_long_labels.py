"""Issue 16.6: labels that fit the file system; a session's row and folder together.

A 300-character session label was answered 0xA700 (retryable, for a problem that is
not) and left ERROR sessions with no files.
"""

from __future__ import annotations

from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, pynetdicom_send, storescu_send

from xnatd.routing import LABEL_MAX

LONG = "LongLabel-" * 30  # 300 characters


def _study(seed: str, label: str, instances: int = 2) -> StudySpec:
    return StudySpec(
        seed,
        patient_comments=f"Project: DEMO Session: {label}",
        series=[SeriesSpec(1, instances=instances)],
    )


def test_long_labels_are_cut_and_stay_unique(xnatd: Xnatd, storescu: str, dcm_dir: Path) -> None:
    first = LONG + "1"
    second = LONG + "2"  # differs from first only past the cut
    assert pynetdicom_send(xnatd.port, write_study(_study("l1", first), dcm_dir / "a")) == [0] * 2
    sent = storescu_send(storescu, xnatd.port, write_study(_study("l2", second), dcm_dir / "b"))
    assert sent.returncode == 0 and "Status" not in sent.stderr, sent.stderr
    rows = xnatd.wait_status("READY", count=2)
    labels = sorted(row["label"] for row in rows)
    assert len(set(labels)) == 2
    for row in rows:
        assert len(row["label"]) <= LABEL_MAX
        assert row["label"].startswith("LongLabel-" * 10)
        assert row["files"] == 2
        folder = xnatd.data_dir / "prearchive" / row["project"] / row["timestamp"] / row["label"]
        assert len(list(folder.glob("SCANS/*/DICOM/*.dcm"))) == 2
        assert (folder.parent / f"{row['label']}.xml").is_file()
    # The same long value again joins the same session: the cut is deterministic.
    again = write_study(_study("l1", first, instances=3), dcm_dir / "c")[2:]
    assert pynetdicom_send(xnatd.port, again) == [0]
    xnatd.wait_status("READY", count=2)
    assert sorted(r["files"] for r in xnatd.prearchive()) == [2, 3]
    assert not [r for r in xnatd.prearchive() if r["status"] == "ERROR"]


def test_no_session_row_without_its_folder(xnatd: Xnatd, dcm_dir: Path) -> None:
    """The session's folder cannot be made: refused, and no row is left behind."""
    blocker = xnatd.data_dir / "prearchive" / "DEMO"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    paths = write_study(_study("blocked", "S1"), dcm_dir)
    assert pynetdicom_send(xnatd.port, paths) == [0xA700] * 2
    assert xnatd.prearchive() == []
    failures = xnatd.events("store_failed")
    assert failures and "cannot create session folder" in failures[0]["reason"]
    blocker.unlink()
    assert pynetdicom_send(xnatd.port, paths) == [0] * 2
    [row] = xnatd.wait_status("READY")
    assert row["files"] == 2
