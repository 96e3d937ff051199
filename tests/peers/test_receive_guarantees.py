"""SPEC section 9 at the socket: bits kept, callers filtered, garbage and full disks refused."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import subprocess
from pathlib import Path

import pydicom
import pytest
from dicomgen import (
    ENCAPSULATED,
    UNCOMPRESSED,
    SeriesSpec,
    StudySpec,
    dataset_bytes,
    instance,
    write,
    write_study,
)
from helpers import Xnatd, associate_result, dicom_files, pynetdicom_send, storescu_send, wait_for
from pydicom.uid import ExplicitVRBigEndian, JPEGLosslessSV1

from xnatd.dicom import read_header
from xnatd.store.digests import BATCH_FILES
from xnatd.store.layout import instance_file_name

SYNTAXES = sorted(UNCOMPRESSED) + sorted(ENCAPSULATED)


def stored_path(xnatd: Xnatd, original: Path) -> Path:
    header = read_header(original.read_bytes())
    matches = [p for p in dicom_files(xnatd.data_dir) if p.name == instance_file_name(header)]
    assert len(matches) == 1, (original, matches)
    return matches[0]


def test_every_transfer_syntax_is_stored_bit_for_bit(xnatd: Xnatd, dcm_dir: Path) -> None:
    """Each syntax is accepted as proposed and the data set bytes are kept exactly as sent."""
    study = StudySpec(
        "syntaxes",
        study_description="DEMO",
        series=[
            SeriesSpec(i + 1, transfer_syntax=ts, instances=1) for i, ts in enumerate(SYNTAXES)
        ],
    )
    paths = write_study(study, dcm_dir)
    assert pynetdicom_send(xnatd.port, paths) == [0x0000] * len(SYNTAXES)
    for original in paths:
        stored = stored_path(xnatd, original)
        assert dataset_bytes(stored) == dataset_bytes(original), original
        sent_syntax = read_header(original.read_bytes(), {0x00020010}).get(0x00020010)
        assert read_header(stored.read_bytes(), {0x00020010}).get(0x00020010) == sent_syntax
    [row] = xnatd.wait_status("READY")
    assert row["files"] == len(SYNTAXES)


def test_compressed_files_from_storescu_keep_their_syntax(
    xnatd: Xnatd, storescu: str, dcm_dir: Path
) -> None:
    study = StudySpec(
        "dcmtk-jpeg",
        study_description="DEMO",
        series=[
            SeriesSpec(1, transfer_syntax=JPEGLosslessSV1, instances=2),
            SeriesSpec(2, transfer_syntax=ExplicitVRBigEndian, instances=1),
        ],
    )
    paths = write_study(study, dcm_dir)
    result = storescu_send(storescu, xnatd.port, paths, extra=["--propose-lossless"])
    assert result.returncode == 0, result.stderr
    original = paths[0]
    assert dataset_bytes(stored_path(xnatd, original)) == dataset_bytes(original)


def test_allow_list_rejects_other_callers_at_association(make_xnatd) -> None:
    def allow_ct1(settings: dict) -> None:
        settings["receivers"][0]["allow"] = ["CT1@127.0.0.0/8", "192.0.2.55"]

    xnatd = make_xnatd(hook=allow_ct1)
    assert associate_result(xnatd.port, aet="CT1") == (True, None)
    # A-ASSOCIATE-RJ: rejected-permanent (1), service-user (1), calling AE not recognized (3)
    assert associate_result(xnatd.port, aet="INTRUDER") == (False, (1, 1, 3))
    # Unknown called AE title: (1, 1, 7)
    assert associate_result(xnatd.port, aet="CT1", aec="NOBODY") == (False, (1, 1, 7))
    metrics = xnatd.metrics()
    assert (
        'xnatd_associations_total{ae="XNAT",calling_ae="INTRUDER",result="rejected"} 1.0' in metrics
    )


def test_echoscu_rejected_by_allow_list(make_xnatd, echoscu: str) -> None:
    def allow(settings: dict) -> None:
        settings["receivers"][0]["allow"] = ["GOOD"]

    xnatd = make_xnatd(hook=allow)
    ok = subprocess.run(
        [echoscu, "-aet", "GOOD", "-aec", "XNAT", "127.0.0.1", str(xnatd.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    bad = subprocess.run(
        [echoscu, "-aet", "BAD", "-aec", "XNAT", "127.0.0.1", str(xnatd.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode != 0 and "Calling AE Title Not Recognized" in bad.stderr + bad.stdout


def test_ae_titles_sharing_a_port_route_separately(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    def two_titles(settings: dict) -> None:
        first = settings["receivers"][0]
        first["default_project"] = "DEMO"
        settings["receivers"].append({**first, "ae_title": "RESEARCH", "default_project": "OTHER"})

    xnatd = make_xnatd(hook=two_titles)
    a = write_study(StudySpec("to-demo", patient_id="A", study_description=""), dcm_dir / "a")
    b = write_study(StudySpec("to-other", patient_id="B", study_description=""), dcm_dir / "b")
    assert storescu_send(storescu, xnatd.port, a, aec="XNAT").returncode == 0
    assert storescu_send(storescu, xnatd.port, b, aec="RESEARCH").returncode == 0
    rows = {row["label"]: row["project"] for row in xnatd.wait_status("READY", count=2)}
    assert rows == {"A": "DEMO", "B": "OTHER"}


def _raw_file(folder: Path, name: str, dataset_part: bytes, sop_instance: str) -> Path:
    """A Part 10 file whose data set bytes are exactly dataset_part."""
    good = instance(StudySpec("raw"), SeriesSpec(1), 1)
    good.file_meta.MediaStorageSOPInstanceUID = sop_instance
    [template] = write([good], folder / name)
    data = template.read_bytes()
    meta_end = len(data) - len(dataset_bytes(template))
    path = folder / f"{name}.dcm"
    path.write_bytes(data[:meta_end] + dataset_part)
    return path


def test_garbage_gets_c000_not_stored_and_association_carries_on(
    xnatd: Xnatd, dcm_dir: Path
) -> None:
    no_uid = instance(StudySpec("garbage", study_description="DEMO"), SeriesSpec(1), 1)
    del no_uid.SOPInstanceUID
    [no_uid_path] = write([no_uid], dcm_dir / "nouid")
    truncated = _raw_file(dcm_dir, "truncated", b"\x08\x00\x16\x00UI\x40\x00" + b"1.2", "1.2.3.9")
    good = write_study(StudySpec("after-garbage", study_description="DEMO"), dcm_dir / "good")
    statuses = pynetdicom_send(xnatd.port, [no_uid_path, truncated, *good])
    assert statuses[:2] == [0xC000, 0xC000]
    assert statuses[2:] == [0x0000] * len(good)
    [row] = xnatd.wait_status("READY")
    assert row["files"] == len(good)
    assert len(dicom_files(xnatd.data_dir)) == len(good)
    assert not list(xnatd.data_dir.rglob("*.part"))
    rejected = xnatd.events("instance_rejected")
    assert len(rejected) == 2 and "SOP Instance UID" in rejected[0]["reason"]


def test_below_min_free_disk_gets_a700_and_leaves_nothing(make_xnatd, dcm_dir: Path) -> None:
    xnatd = make_xnatd(min_free_disk="1000000TiB")
    paths = write_study(StudySpec("full", study_description="DEMO"), dcm_dir)
    assert pynetdicom_send(xnatd.port, paths) == [0xA700] * len(paths)
    assert dicom_files(xnatd.data_dir) == [] and not list(xnatd.data_dir.rglob("*.part"))
    assert 'status="refused"' in xnatd.metrics()


def test_really_full_disk_gets_a700_and_keeps_every_acknowledged_file(
    make_xnatd, mount_tmpfs, tmp_path: Path, dcm_dir: Path
) -> None:
    """A 3 MiB file system fills up mid-send: failures are 0xA700, successes are all on disk."""
    data = mount_tmpfs(tmp_path / "small", "3M")
    xnatd = make_xnatd(data_dir=str(data), min_free_disk="0")
    study = StudySpec(
        "fills",
        study_description="DEMO",
        series=[SeriesSpec(1, instances=40, rows=256, columns=256)],
    )
    paths = write_study(study, dcm_dir)
    acknowledged: list[Path] = []
    statuses = pynetdicom_send(
        xnatd.port, paths, on_status=lambda p, s: acknowledged.append(p) if s == 0 else None
    )
    assert 0xA700 in statuses and set(statuses) <= {0x0000, 0xA700}
    assert statuses[0] == 0x0000
    assert not list(data.rglob("*.part"))
    for original in acknowledged:
        assert dataset_bytes(stored_path(xnatd, original)) == dataset_bytes(original)
    assert len(dicom_files(data)) == len(acknowledged)


@pytest.mark.parametrize("sender", ["storescu", "pynetdicom"])
def test_metrics_count_by_ae_and_calling_ae(
    xnatd: Xnatd, storescu: str, dcm_dir: Path, sender: str
) -> None:
    paths = write_study(
        StudySpec("metrics", study_description="DEMO", series=[SeriesSpec(1, instances=3)]), dcm_dir
    )
    if sender == "storescu":
        assert storescu_send(storescu, xnatd.port, paths, aet="MR7").returncode == 0
    else:
        assert pynetdicom_send(xnatd.port, paths, aet="MR7") == [0] * 3
    xnatd.wait_status("READY")
    # The counters of whichever process took the association (workers:) are summed
    # at scrape time; the association's own count lands when its connection closes.
    metrics = wait_for(
        lambda: next(
            (
                m
                for m in [xnatd.metrics()]
                if "sessions_built_total{" in m and "xnatd_associations_total{" in m
            ),
            None,
        )
    )
    assert (
        'xnatd_instances_received_total{ae="XNAT",calling_ae="MR7",status="stored"} 3.0' in metrics
    )
    assert 'xnatd_associations_total{ae="XNAT",calling_ae="MR7",result="released"} 1.0' in metrics
    assert 'xnatd_prearchive_sessions{status="READY"} 1.0' in metrics
    assert 'xnatd_sessions_built_total{project="DEMO",result="ready"} 1.0' in metrics
    assert "xnatd_store_latency_seconds_bucket" in metrics and "xnatd_free_disk_bytes" in metrics


def test_a_large_object_is_streamed_to_disk_and_kept_bit_for_bit(
    xnatd: Xnatd, storescu: str, dcm_dir: Path
) -> None:
    """Above 16 MiB the data set is copied from pynetdicom's spool in chunks (bounded
    memory); the stored file is still the sent data set, byte for byte, with our meta."""
    study = StudySpec(
        "large",
        study_description="DEMO",
        series=[SeriesSpec(1, instances=1, rows=3000, columns=3000)],  # 18 MB of pixels
    )
    [original] = write_study(study, dcm_dir)
    result = storescu_send(storescu, xnatd.port, [original])
    assert result.returncode == 0, result.stderr
    stored = stored_path(xnatd, original)
    assert dataset_bytes(stored) == dataset_bytes(original)
    meta = pydicom.dcmread(stored, stop_before_pixels=True).file_meta
    assert meta.SourceApplicationEntityTitle == "SCANNER"
    spool = xnatd.data_dir / ".spool"
    assert not [p for p in spool.rglob("*") if p.is_file()]  # nothing left behind


def _recorded_digests(xnatd: Xnatd) -> dict[str, str]:
    """file name -> MD5 in the daemon's index (a read-only look, beside the daemon)."""
    uri = f"file:{xnatd.data_dir / 'index.sqlite'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
        return dict(connection.execute("SELECT file_name, md5 FROM instances"))


def test_digests_are_taken_from_the_bytes_received_not_read_back(make_xnatd, dcm_dir: Path) -> None:
    """Files' MD5s are taken on their receiving thread once their answers have gone out,
    a batch of BATCH_FILES at a time, and recorded with the association's next file;
    the rest at the close. While the association is open nothing else may digest its
    session (it holds the session), so the first batch's files already have their
    digests when the last file is answered, and they are the stored files'."""
    xnatd = make_xnatd(session_idle_timeout="600s")
    count = BATCH_FILES + 2
    study = StudySpec("digests", study_description="DEMO", series=[SeriesSpec(1, instances=count)])
    paths = write_study(study, dcm_dir)
    while_open: list[dict[str, str]] = []

    def look(path: Path, status: int) -> None:
        if path == paths[-1]:
            while_open.append(_recorded_digests(xnatd))

    assert pynetdicom_send(xnatd.port, paths, on_status=look) == [0x0000] * len(paths)
    stored = {
        path.name: hashlib.md5(path.read_bytes()).hexdigest()
        for path in dicom_files(xnatd.data_dir)
    }
    waiting = {stored_path(xnatd, path).name: "" for path in paths[BATCH_FILES:]}
    assert while_open == [{**stored, **waiting}]
    assert wait_for(lambda: _recorded_digests(xnatd) == stored, timeout=10)
