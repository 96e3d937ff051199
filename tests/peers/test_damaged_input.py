"""Damaged or hostile data sets are refused, never acknowledged as stored (issue 16).

A stock pynetdicom SCU sends the bytes as written (``rawstore``): each damaged data
set gets a failure status with its reason, nothing of it is stored, and the
association carries on with the next instance.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from rawstore import RawStore, send_raw

from xnatd.dicom import Tag, read_header

MR = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def made(folder: Path, seed: str, syntax: str = ExplicitVRLittleEndian) -> tuple[dict, bytes]:
    """One MR instance: its header and the data set bytes sent on the wire."""
    spec = StudySpec(
        seed, patient_id=seed, series=[SeriesSpec(1, instances=1, transfer_syntax=syntax)]
    )
    [path] = write_study(spec, folder / seed)
    data = path.read_bytes()
    return read_header(data), data[144 + int.from_bytes(data[140:144], "little") :]


def store(header: dict, data_set: bytes, syntax: str) -> RawStore:
    return RawStore(header[Tag.SOPClassUID], header[Tag.SOPInstanceUID], syntax, data_set)


def explicit_offset(data_set: bytes, tag: int) -> int:
    return data_set.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF))


def deeply_nested(depth: int) -> bytes:
    """A Basic Text SR whose Content Sequence nests ``depth`` items (explicit VR LE)."""

    def uid(element: int, value: bytes) -> bytes:
        return struct.pack("<HH2sH", 8, element, b"UI", len(value)) + value

    sequence = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    head = uid(0x16, BASIC_TEXT_SR.encode() + b"\x00") + uid(0x18, b"1.2.826.0.1.3680043.9.16.1")
    return head + (sequence + item) * depth + closing * depth


def damaged(folder: Path) -> dict[str, RawStore]:
    """Each kind of damage of issue 16, in the transfer syntaxes it can hit."""
    cases: dict[str, RawStore] = {}
    for syntax in (
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        JPEGBaseline8Bit,
    ):
        header, data = made(folder, f"cut-{syntax}", syntax)
        cases[f"header cut short ({syntax})"] = store(header, data[:150], syntax)
        cases[f"pixel data cut short ({syntax})"] = store(header, data[:-10], syntax)
    header, data = made(folder, "at-boundary")
    cut = data[: explicit_offset(data, 0x7FE00010)]
    cases["cut before the pixel data element"] = store(header, cut, ExplicitVRLittleEndian)
    header, data = made(folder, "long")
    at = explicit_offset(data, 0x00100010)
    long = data[: at + 6] + struct.pack("<H", 0xFFF0) + data[at + 8 :]
    cases["length past the end"] = store(header, long, ExplicitVRLittleEndian)
    header, data = made(folder, "vr")
    at = explicit_offset(data, 0x00200010)  # after the Study and Series Instance UIDs
    bad_vr = data[: at + 4] + b"\x00\x07" + data[at + 6 :]
    cases["invalid VR bytes after the UIDs"] = store(header, bad_vr, ExplicitVRLittleEndian)
    header, data = made(folder, "deflated", DeflatedExplicitVRLittleEndian)
    cases["deflated stream cut short"] = store(header, data[:-20], DeflatedExplicitVRLittleEndian)
    cases["sequence nested 5,000 deep"] = RawStore(
        BASIC_TEXT_SR, "1.2.826.0.1.3680043.9.16.1", ExplicitVRLittleEndian, deeply_nested(5000)
    )
    return cases


def test_damaged_data_sets_are_refused_with_their_reason_and_nothing_is_stored(
    xnatd: Xnatd, dcm_dir: Path
) -> None:
    cases = damaged(dcm_dir)
    good_header, good = made(dcm_dir, "whole")
    answers = send_raw(
        xnatd.port, [*cases.values(), store(good_header, good, ExplicitVRLittleEndian)]
    )
    for name, answer in zip(cases, answers, strict=False):
        assert answer.status == 0xC000, (name, hex(answer.status), answer.error_comment)
        assert answer.error_comment and answer.error_comment.startswith("malformed data set"), name
    assert answers[-1].status == 0x0000  # the association carried on
    [row] = xnatd.wait_status("READY")
    assert row["files"] == 1 and row["label"] == "whole"
    files = list((xnatd.data_dir / "prearchive").rglob("*.dcm"))
    assert len(files) == 1
    rejects = [e for e in json.loads(xnatd.cli("audit", "--json").stdout) if e["event"] == "reject"]
    assert len(rejects) == len(cases)


def test_import_refuses_a_damaged_file_as_c_store_does(xnatd: Xnatd, dcm_dir: Path) -> None:
    header, data = made(dcm_dir, "import-cut")
    whole = next((dcm_dir / "import-cut").iterdir())
    whole.write_bytes(whole.read_bytes()[:-10])
    done = xnatd.cli("import", str(whole.parent), "--project", "DEMO", check=False)
    assert done.returncode != 0
    assert "malformed data set" in done.stderr and "runs past the end" in done.stderr
    assert xnatd.prearchive() == []
    answer = send_raw(xnatd.port, [store(header, data[:-10], ExplicitVRLittleEndian)])
    assert answer[0].status == 0xC000


def test_the_upload_assistant_reports_why_and_does_not_retry(xnatd: Xnatd, dcm_dir: Path) -> None:
    """``xnatd send`` shows the Error Comment of a refused file; a damaged file is final."""
    made(dcm_dir, "send-cut")
    [path] = (dcm_dir / "send-cut").iterdir()
    path.write_bytes(path.read_bytes()[:-10])
    done = subprocess.run(
        [sys.executable, "-m", "xnatd", "send", str(path), "--host", "127.0.0.1",
         "--port", str(xnatd.port), "--aec", "XNAT", "--retries", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["retries"] == 0 and result["statuses"] == {"0xC000": 1}
    [failed] = result["failed"]
    assert failed["reason"].startswith("malformed data set: (7FE0,0010)")
