"""Scripts applied to files: syntax and pixels kept, meta follows, and the anon commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicomgen import ENCAPSULATED, UNCOMPRESSED, SeriesSpec, StudySpec, write_study

from xnatd.anon.apply import PIXEL_DATA, apply_to_bytes, apply_to_payload
from xnatd.anon.functions import hash_uid
from xnatd.anon.script import parse
from xnatd.payload import SpooledFile

SCRIPT = parse(
    'version "6.3"\n(0010,0010) := "ANON"\n(0008,0018) := hashUID[(0008,0018)]\n'
    "-(0010,0030)\n(0010,0020) := session\n"
)


@pytest.mark.parametrize("syntax", sorted(UNCOMPRESSED) + sorted(ENCAPSULATED))
def test_transfer_syntax_and_pixels_kept(tmp_path: Path, syntax: str) -> None:
    [path] = write_study(
        StudySpec("apply", series=[SeriesSpec(1, instances=1, transfer_syntax=syntax)]), tmp_path
    )
    original = pydicom.dcmread(path)
    changed = apply_to_bytes(SCRIPT, path.read_bytes(), {"session": "S1"})
    out = tmp_path / "out.dcm"
    out.write_bytes(changed)
    result = pydicom.dcmread(out)
    assert result.file_meta.TransferSyntaxUID == syntax
    assert result.PixelData == original.PixelData
    assert (str(result.PatientName), result.PatientID) == ("ANON", "S1")
    assert "PatientBirthDate" not in result
    assert result.SOPInstanceUID == hash_uid(original.SOPInstanceUID)
    assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID


def _all(data: bytes | SpooledFile) -> bytes:
    return data.read_all() if isinstance(data, SpooledFile) else data


def spooled(path: Path) -> SpooledFile:
    """The file as the receiver hands over one too large to hold in memory."""
    return SpooledFile(b"", path)


@pytest.mark.parametrize("syntax", sorted(UNCOMPRESSED) + sorted(ENCAPSULATED))
def test_a_large_file_gives_the_same_bytes_without_reading_its_pixels(
    tmp_path: Path, syntax: str
) -> None:
    """The pixel data of a spooled file stays on disk: the result is the rewritten
    header, then that span of the source, byte for byte what the whole-file path gives."""
    [path] = write_study(
        StudySpec("large", series=[SeriesSpec(1, instances=1, transfer_syntax=syntax)]),
        tmp_path,
    )
    whole = apply_to_bytes(SCRIPT, path.read_bytes(), {"session": "S1"})
    result = apply_to_payload(SCRIPT, spooled(path), {"session": "S1"})
    assert result is not None and bytes(_all(result)) == whole and len(result) == len(whole)
    if not pydicom.uid.UID(syntax).is_deflated:  # deflated: compressed whole, read whole
        assert isinstance(result, SpooledFile)
        assert result.source == path and len(result.prefix) < 4096  # header only in memory
        pixels = pydicom.dcmread(path).PixelData
        assert result.end - result.start >= len(pixels)


def test_elements_after_the_pixel_data_are_rewritten_too(tmp_path: Path) -> None:
    [path] = write_study(StudySpec("tail", series=[SeriesSpec(1, instances=1)]), tmp_path)
    ds = pydicom.dcmread(path)
    ds.add_new(0xFFFAFFFA, "SQ", [])  # a (empty) Digital Signatures Sequence
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 6)  # Data Set Trailing Padding
    ds.save_as(path)
    script = parse('version "6.3"\n(0010,0010) := "ANON"\n-(FFFC,FFFC)\n')
    whole = apply_to_bytes(script, path.read_bytes(), {})
    result = apply_to_payload(script, spooled(path), {})
    assert isinstance(result, SpooledFile) and result.suffix
    assert result.read_all() == whole
    out = pydicom.dcmread(result.open())
    assert 0xFFFAFFFA in out and 0xFFFCFFFC not in out
    assert out.PixelData == ds.PixelData


def test_a_script_may_delete_the_pixel_data_of_a_large_file(tmp_path: Path) -> None:
    [path] = write_study(StudySpec("nopix", series=[SeriesSpec(1, instances=1)]), tmp_path)
    script = parse('version "6.3"\n-(7FE0,0010)\n')
    result = apply_to_payload(script, spooled(path), {})
    assert isinstance(result, bytes)
    assert result == apply_to_bytes(script, path.read_bytes(), {})
    assert PIXEL_DATA not in pydicom.dcmread(pydicom.filebase.DicomBytesIO(result))


def test_alter_pixels_on_a_large_file_reads_it_whole(tmp_path: Path) -> None:
    [path] = write_study(StudySpec("alter", series=[SeriesSpec(1, instances=1)]), tmp_path)
    script = parse(
        'version "6.3"\nalterPixels["rectangle", "l=0, t=0, r=4, b=4", "solid", "v=0"]\n'
    )
    result = apply_to_payload(script, spooled(path), {})
    assert result == apply_to_bytes(script, path.read_bytes(), {})
    assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(result)).PixelData != (
        pydicom.dcmread(path).PixelData
    )


def test_rejected_file_gives_none(tmp_path: Path) -> None:
    [path] = write_study(StudySpec("rej", series=[SeriesSpec(5, instances=1)]), tmp_path)
    assert apply_to_bytes(parse('(0020,0011) = "5" ? reject[]'), path.read_bytes(), {}) is None


def xnatd_anon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xnatd", "anon", *args], capture_output=True, text=True, timeout=60
    )


def test_anon_commands_exit_codes(tmp_path: Path) -> None:
    [path] = write_study(StudySpec("cli", series=[SeriesSpec(5, instances=1)]), tmp_path / "in")
    good = tmp_path / "good.das"
    good.write_text('version "6.3"\n(0010,0020) := concatenate[project, "-", subject]\n')
    bad = tmp_path / "bad.das"
    bad.write_text('version "6.3"\n(0010,0020) := \n')
    rejects = tmp_path / "reject.das"
    rejects.write_text('(0020,0011) = "5" ? reject[]\n')
    failing = tmp_path / "fail.das"
    failing.write_text('(0010,0020) := substring["ab", 5]\n')

    assert xnatd_anon("check", str(good)).returncode == 0
    checked = xnatd_anon("check", str(bad))
    assert (
        checked.returncode == 2
        and "line 2, column 16" in checked.stderr
        and "expected" in checked.stderr
    )

    out = tmp_path / "out.dcm"
    applied = xnatd_anon(
        "apply", str(good), str(path), str(out), "--var", "project=P", "--var", "subject=S"
    )
    assert applied.returncode == 0 and pydicom.dcmread(out).PatientID == "P-S"
    out.unlink()
    assert (
        xnatd_anon("apply", str(rejects), str(path), str(out)).returncode == 3 and not out.exists()
    )
    failed = xnatd_anon("apply", str(failing), str(path), str(out))
    assert failed.returncode == 2 and "substring" in failed.stderr and not out.exists()
    assert xnatd_anon("apply", str(bad), str(path), str(out)).returncode == 2


def test_anon_apply_with_a_lookup_table(tmp_path: Path) -> None:
    [path] = write_study(StudySpec("lookup", series=[SeriesSpec(5, instances=1)]), tmp_path / "in")
    patient_id = pydicom.dcmread(path).PatientID
    script = tmp_path / "site.das"
    script.write_text('version "6.3"\n(0010,0020) := lookup["id", (0010,0020)]\n')
    table = tmp_path / "ids.lookup"
    table.write_text(f"# site identities\nid/{patient_id} = SUBJ-0042\n")
    out = tmp_path / "out.dcm"

    without = xnatd_anon("check", str(script))
    assert without.returncode == 2 and "--lookup" in without.stderr
    assert xnatd_anon("check", str(script), "--lookup", str(table)).returncode == 0
    applied = xnatd_anon("apply", str(script), str(path), str(out), "--lookup", str(table))
    assert applied.returncode == 0 and pydicom.dcmread(out).PatientID == "SUBJ-0042"
    table.write_text("id/\n")
    broken = xnatd_anon("apply", str(script), str(path), str(out), "--lookup", str(table))
    assert broken.returncode == 2 and "ids.lookup, line 1" in broken.stderr
