"""The whole-file check: every element header, length, item and delimiter (issue 16)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from dicomgen import ENCAPSULATED, UNCOMPRESSED, SeriesSpec, StudySpec, write_study
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from xnatd.datasetcheck import MAX_DEPTH, Malformed, check_part10
from xnatd.dicom import INTAKE_TAGS, read_header
from xnatd.headerscan import render_header
from xnatd.intake.acceptance import identity_problem, instance_uid_problem, sop_class_problem

SYNTAXES = sorted(UNCOMPRESSED | ENCAPSULATED)


def one_file(folder: Path, syntax: str = ExplicitVRLittleEndian) -> bytes:
    study = StudySpec(
        f"check-{syntax}", series=[SeriesSpec(1, instances=1, transfer_syntax=syntax)]
    )
    [path] = write_study(study, folder)
    return path.read_bytes()


def data_set_start(data: bytes) -> int:
    return 144 + int.from_bytes(data[140:144], "little")


def element_offset(data: bytes, tag: int) -> int:
    """Where a top-level explicit VR little endian element starts."""
    needle = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    return data.index(needle, data_set_start(data))


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_whole_files_pass_in_every_transfer_syntax(tmp_path: Path, syntax: str) -> None:
    data = one_file(tmp_path, syntax)
    checked = check_part10(data, INTAKE_TAGS)
    assert checked.transfer_syntax == syntax
    if syntax not in (DeflatedExplicitVRLittleEndian, "1.2.840.10008.1.2.2"):
        # The routing tags come out of the same pass, as read_header gives them.
        assert render_header(checked.found, INTAKE_TAGS) == read_header(data)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_a_file_cut_short_anywhere_is_refused(tmp_path: Path, syntax: str) -> None:
    data = one_file(tmp_path, syntax)
    start = data_set_start(data)
    for end in (start + 7, start + 100, (start + len(data)) // 2, len(data) - 10, len(data) - 1):
        with pytest.raises(Malformed):
            check_part10(data[:end])


def test_header_cut_at_an_element_boundary_before_the_pixels_is_refused(tmp_path: Path) -> None:
    data = one_file(tmp_path)
    with pytest.raises(Malformed, match="without pixel data"):
        check_part10(data[: element_offset(data, 0x7FE00010)])


def test_a_length_running_past_the_end_is_refused(tmp_path: Path) -> None:
    data = bytearray(one_file(tmp_path))
    at = element_offset(data, 0x00100010)  # PatientName, PN: 16-bit length
    data[at + 6 : at + 8] = struct.pack("<H", 0xFFF0)
    with pytest.raises(Malformed, match=r"\(0010,0010\).*runs past the end"):
        check_part10(bytes(data))


def test_invalid_vr_bytes_after_the_uids_are_refused(tmp_path: Path) -> None:
    data = bytearray(one_file(tmp_path))
    at = element_offset(data, 0x00200010)  # StudyID, after Study and Series Instance UID
    data[at + 4 : at + 6] = b"\x00\x07"
    with pytest.raises(Malformed, match=r"invalid VR .* \(0020,0010\)"):
        check_part10(bytes(data))


def test_encapsulated_pixel_data_without_its_delimiter_is_refused(tmp_path: Path) -> None:
    data = one_file(tmp_path, JPEGBaseline8Bit)
    assert data.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    with pytest.raises(Malformed):
        check_part10(data[:-8])
    with pytest.raises(Malformed, match="where an item should be"):
        check_part10(data[:-8] + b"\x08\x00\x18\x00\x00\x00\x00\x00")


def test_a_deflated_stream_cut_short_is_refused(tmp_path: Path) -> None:
    data = one_file(tmp_path, DeflatedExplicitVRLittleEndian)
    with pytest.raises(Malformed, match="deflated"):
        check_part10(data[:-20])
    # Inflated, the data set is walked like any other: a cut inside it is found too.
    start = data_set_start(data)
    inflated = zlib.decompress(data[start:], -zlib.MAX_WBITS)
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    cut = packer.compress(inflated[:-30]) + packer.flush()
    with pytest.raises(Malformed, match="runs past the end"):
        check_part10(data[:start] + cut)


def nested(depth: int, implicit: bool = False) -> bytes:
    """A data set whose Content Sequence nests ``depth`` items of undefined length."""
    sop = b"1.2.840.10008.5.1.4.1.1.88.11\x00"  # Basic Text SR
    if implicit:
        uid = lambda el, v: struct.pack("<HHI", 8, el, len(v)) + v  # noqa: E731
        open_sequence = struct.pack("<HHI", 0x0040, 0xA730, 0xFFFFFFFF)
    else:
        uid = lambda el, v: struct.pack("<HH2sH", 8, el, b"UI", len(v)) + v  # noqa: E731
        open_sequence = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item, item_end = b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sequence_end = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    body = uid(0x16, sop) + uid(0x18, b"1.2.3.4.5.6\x00")
    body += (open_sequence + item) * depth + (item_end + sequence_end) * depth
    return body


def part10(data_set: bytes, syntax: str = ExplicitVRLittleEndian) -> bytes:
    value = syntax.encode() + (b"\x00" if len(syntax) % 2 else b"")
    meta = struct.pack("<HH2sH", 2, 0x10, b"UI", len(value)) + value
    group = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(meta))
    return b"\x00" * 128 + b"DICM" + group + meta + data_set


@pytest.mark.parametrize("implicit", [False, True])
def test_deep_nesting_is_refused_without_recursion(implicit: bool) -> None:
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    check_part10(part10(nested(MAX_DEPTH, implicit), syntax))
    with pytest.raises(Malformed, match="nested more than"):
        check_part10(part10(nested(5000, implicit), syntax))


def test_an_item_delimiter_outside_an_item_is_refused() -> None:
    data = part10(nested(2) + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00")
    with pytest.raises(Malformed, match="outside a sequence"):
        check_part10(data)


@pytest.mark.parametrize(
    ("sop_class", "accepted"),
    [
        ("1.2.840.10008.5.1.4.39.1", True),  # Color Palette Storage
        ("1.2.840.10008.5.1.4.38.1", True),  # Hanging Protocol Storage
        ("1.2.840.10008.5.1.4.43.1", True),  # Generic Implant Template Storage
        ("1.2.840.10008.5.1.4.44.1", True),  # Implant Assembly Template Storage
        ("1.2.840.10008.5.1.4.45.1", True),  # Implant Template Group Storage
        ("1.2.840.10008.5.1.4.1.1.200.1", True),  # CT Defined Procedure Protocol Storage
        ("1.2.840.10008.5.1.4.1.1.200.3", True),  # Protocol Approval Storage
        ("1.2.840.10008.5.1.4.1.1.201.1", True),  # Inventory Storage
        ("1.2.840.10008.5.1.4.1.1.4", True),  # MR Image Storage
        ("1.3.46.670589.11.0.0.12.1", True),  # private (Philips)
        ("1.2.840.10008.5.1.4.1.1.999.1", True),  # standard root, newer than the dictionary
        ("1.2.840.10008.1.1", False),  # Verification
        ("1.2.840.10008.1.20.1", False),  # Storage Commitment Push Model
        ("1.2.840.10008.1.3.10", False),  # Media Storage Directory Storage (DICOMDIR)
        ("1.2.840.10008.1.2.1", False),  # a transfer syntax
        ("1.2.GARBAGE", False),
    ],
)
def test_one_rule_for_sop_classes(sop_class: str, accepted: bool) -> None:
    assert (sop_class_problem(sop_class) is None) is accepted


@pytest.mark.parametrize(
    ("uid", "accepted"),
    [
        ("1.2.3.4", True),
        ("2.25." + "1" * 59, True),
        ("d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35", True),  # SHA-256
        ("1.2.3.not-a-uid", False),
        ("1.2.3 4", False),
        ("1\\2", False),
        ("1." + "2" * 70, False),
    ],
)
def test_one_rule_for_instance_uids(uid: str, accepted: bool) -> None:
    assert (instance_uid_problem(uid) is None) is accepted
    assert (identity_problem("1.2.840.10008.5.1.4.1.1.4", uid) is None) is accepted
