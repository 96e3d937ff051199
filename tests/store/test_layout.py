"""Prearchive layout: XNAT's file name template, scan folders, and path safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from xnatd.dicom import Tag
from xnatd.store.layout import (
    DataDir,
    PrearchiveName,
    UnsafePath,
    base36,
    inside,
    instance_file_name,
    instance_files,
    java_list_hash,
    java_string_hash,
    next_timestamp,
    scan_name,
    timestamp,
)


def to_signed(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


@pytest.mark.parametrize(
    ("text", "java"),
    [
        ("", 0),
        ("a", 97),
        ("hello", 99162322),
        ("1.2.840.10008.5.1.4.1.1.4", 1091423266),
        ("Zoë", 90166),
    ],
)
def test_java_string_hash(text: str, java: int) -> None:
    """Values printed by OpenJDK 17's String.hashCode() (int overflow included)."""
    assert to_signed(java_string_hash(text)) == java


def test_java_list_hash_matches_java() -> None:
    """Arrays.asList(...).hashCode() and Long.toString(h & 0xffffffffL, 36), from OpenJDK 17."""
    assert java_list_hash(["a", "b"]) == 31 * (31 * 1 + 97) + 98
    mr = java_list_hash(["1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5"])
    assert to_signed(mr) == -1835668698 and base36(mr) == "14o7axy"
    pet = java_list_hash(
        ["1.2.840.10008.5.1.4.1.1.128", "2.25.281097975800109040096884226991818420711"]
    )
    assert to_signed(pet) == -1780414343 and base36(pet) == "15l3lh5"


def test_file_name_template() -> None:
    header = {
        Tag.StudyInstanceUID: "1.2.3",
        Tag.SeriesNumber: "4",
        Tag.InstanceNumber: "17",
        Tag.SOPClassUID: "1.2.840.10008.5.1.4.1.1.4",
        Tag.SOPInstanceUID: "1.2.3.4.5",
    }
    digest = base36(java_list_hash(["1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5"]))
    assert instance_file_name(header) == f"1.2.3-4-17-{digest}.dcm"
    assert digest.isalnum() and digest == digest.lower()


def test_missing_values_use_no_value_for_keyword() -> None:
    name = instance_file_name({Tag.SOPClassUID: "1.2", Tag.SOPInstanceUID: "3.4"})
    assert name.startswith("no-value-for-StudyInstanceUID-no-value-for-SeriesNumber-")


def test_file_name_cannot_escape_its_folder() -> None:
    name = instance_file_name(
        {Tag.StudyInstanceUID: "../../etc/passwd", Tag.SOPClassUID: "1", Tag.SOPInstanceUID: "2"}
    )
    assert "/" not in name and not name.startswith(".")


@pytest.mark.parametrize(
    ("series_number", "series_uid", "expected"),
    [
        ("4", "1.2.3", "4"),
        ("+7", "1.2.3", "7"),
        ("", "1.2.3", "1_2_3"),
        ("..", "1.2.3", "1_2_3"),
        ("4/5", "1.2/3", "1_2_3"),
    ],
)
def test_scan_folder(series_number: str, series_uid: str, expected: str) -> None:
    header = {Tag.SeriesNumber: series_number, Tag.SeriesInstanceUID: series_uid}
    assert scan_name(header) == expected


def test_inside_refuses_traversal(tmp_path: Path) -> None:
    for bad in ("..", ".", "", "a/b", "/etc"):
        with pytest.raises(UnsafePath):
            inside(tmp_path, bad)
    assert inside(tmp_path, "a", "b") == tmp_path / "a" / "b"


def test_timestamp_format_and_next() -> None:
    stamp = timestamp(1700000000.123)
    assert len(stamp) == 18 and stamp[8] == "_" and stamp.endswith("123")
    assert next_timestamp(stamp).endswith("124")
    assert next_timestamp("20240101_235959999") == "20240102_000000000"


def test_session_paths(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    name = PrearchiveName.parse("DEMO/20240101_000000000/S1")
    assert data.session_dir(name) == tmp_path / "prearchive/DEMO/20240101_000000000/S1"
    assert data.session_document(name) == tmp_path / "prearchive/DEMO/20240101_000000000/S1.xml"
    with pytest.raises(ValueError):
        PrearchiveName.parse("DEMO/only-two")


def test_instance_files_are_the_dcm_files_of_each_scan(tmp_path: Path) -> None:
    """What reindex reads and what a build checks against the index: the stored
    instances, not temporary files, catalogs or other folders."""
    for relative in (
        "SCANS/1/DICOM/a.dcm",
        "SCANS/1/DICOM/b.dcm",
        "SCANS/1/DICOM/.b.dcm.1a2b3c4d.part",  # a write in progress
        "SCANS/1/DICOM/scan_1_catalog.xml",
        "SCANS/2-MR1/DICOM/c.dcm",
        "SCANS/2-MR1/SNAPSHOTS/d.dcm",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    (tmp_path / "SCANS" / "README").write_text("not a scan")
    listed = [p.relative_to(tmp_path).as_posix() for p in instance_files(tmp_path)]
    assert listed == ["SCANS/1/DICOM/a.dcm", "SCANS/1/DICOM/b.dcm", "SCANS/2-MR1/DICOM/c.dcm"]
    assert instance_files(tmp_path, leave_out={("1", "a.dcm"), ("2-MR1", "c.dcm")}) == [
        tmp_path / "SCANS/1/DICOM/b.dcm"
    ]
    assert instance_files(tmp_path / "no-such-session") == []
