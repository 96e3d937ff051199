"""Scripts applied to files: syntax and pixels kept, meta follows, and the anon commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicomgen import ENCAPSULATED, UNCOMPRESSED, SeriesSpec, StudySpec, write_study

from xnatd.anon.apply import apply_to_bytes
from xnatd.anon.functions import hash_uid
from xnatd.anon.script import parse

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
