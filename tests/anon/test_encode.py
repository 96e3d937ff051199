"""The anonymized file is written byte for byte as pydicom writes it (``write_file_meta_info``
and ``write_dataset``), whatever the file, character set, transfer syntax or step: the
fast writer in ``xnatd.anon.encode`` copies undecoded elements and encodes plain text
itself, and must not change a single byte of what xnatd stored before it."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from xnatd.anon.apply import Parsed, anonymize, parse_file
from xnatd.anon.chain import Chain
from xnatd.anon.encode import element_chunks, part10_prefix
from xnatd.anon.profile import Profile, _Run
from xnatd.anon.script import parse

DATA = Path(pydicom.__file__).parent / "data"
SCRIPT = parse(
    'version "6.3"\n(0010,0010) := "ANONYMIZED"\n(0010,0020) := hashUID[(0010,0020)]\n'
    '-(0010,0030)\n(0008,0080) := "Somewhere Else"\n(0008,0050) := ""\n'
    '(0008,1030) := "Study"\n(0008,0021) := "20010101"\n'
    "(0020,000D) := hashUID[(0020,000D)]\n(0008,0018) := hashUID[(0008,0018)]\n"
    "removeAllPrivateTags\n"
)
SECRET = b"0123456789abcdef0123456789abcdef"
STEPS = {
    "script": SCRIPT,
    "profile": Chain((Profile(frozenset(), SECRET),)),
    "profile-options": Chain(
        (
            Profile(frozenset({"retain-safe-private", "clean-descriptors", "retain-uids"}), SECRET),
            parse('version "6.3"\n(0008,1030) := "Described"\n'),
        )
    ),
}


def _samples() -> list[Path]:
    paths = sorted((DATA / "test_files").glob("*.dcm")) + sorted(
        (DATA / "charset_files").glob("*.dcm")
    )
    readable = []
    for path in paths:
        try:
            dataset = pydicom.dcmread(path)
        except Exception:  # pydicom's deliberately broken samples
            continue
        syntax = dataset.file_meta.get("TransferSyntaxUID")
        if syntax and not UID(syntax).is_deflated and "SOPInstanceUID" in dataset:
            readable.append(path)
    return readable


SAMPLES = _samples()


def _pydicom_bytes(dataset: Dataset) -> bytes:
    """The file as xnatd wrote it through pydicom alone."""
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    meta = FileMetaDataset(dataset.file_meta)
    meta.setdefault("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
    write_file_meta_info(out, meta, enforce_standard=True)
    out.is_little_endian, out.is_implicit_VR = syntax.is_little_endian, syntax.is_implicit_VR
    write_dataset(out, dataset)
    return out.getvalue()


def test_the_samples_cover_the_cases() -> None:
    names = {path.name for path in SAMPLES}
    assert {"MR_small_implicit.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"} <= names
    assert {"chrH31.dcm", "chrJapMulti.dcm", "chrX1.dcm", "chrGreek.dcm"} <= names
    assert len(SAMPLES) > 40


@pytest.mark.parametrize("step", sorted(STEPS))
@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_anonymized_bytes_are_pydicoms(path: Path, step: str) -> None:
    data = path.read_bytes()
    dataset = parse_file(data)
    result = anonymize(STEPS[step], Parsed(dataset), {"project": "P", "session": "S"})
    assert result is not None
    assert result == _pydicom_bytes(dataset)
    assert pydicom.dcmread(io.BytesIO(result)).SOPInstanceUID == dataset.SOPInstanceUID


@pytest.mark.parametrize("path", SAMPLES[:12], ids=lambda path: path.name)
def test_an_untouched_data_set_is_written_as_pydicom_writes_it(path: Path) -> None:
    """Nothing changed: every element as read is copied, with pydicom's result."""
    data = path.read_bytes()
    dataset = parse_file(data)
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    body = b"".join(element_chunks(dataset, syntax.is_implicit_VR, syntax.is_little_endian))
    assert part10_prefix(dataset.file_meta) + body == _pydicom_bytes(dataset)


def _pydicom_meta(file_meta: FileMetaDataset) -> bytes:
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    meta = FileMetaDataset(file_meta)
    meta.setdefault("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue()


@pytest.mark.parametrize(
    "missing",
    ["", "ImplementationVersionName", "ImplementationClassUID", "FileMetaInformationVersion"],
)
def test_the_meta_group_is_completed_as_pydicom_completes_it(missing: str) -> None:
    def meta() -> FileMetaDataset:
        file_meta = parse_file((DATA / "test_files" / "CT_small.dcm").read_bytes()).file_meta
        file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"  # changed, as after a script
        if missing:
            del file_meta[missing]
        return file_meta

    assert part10_prefix(meta()) == _pydicom_meta(meta())


def test_a_meta_group_without_a_required_element_is_refused() -> None:
    meta = parse_file((DATA / "test_files" / "CT_small.dcm").read_bytes()).file_meta
    meta.MediaStorageSOPInstanceUID = ""
    with pytest.raises(AttributeError, match="Media Storage SOP Instance UID"):
        part10_prefix(meta)


@pytest.mark.parametrize("step", ["profile", "profile-options"])
@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_a_profile_replaces_undecoded_elements_with_the_same_result(
    path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile replaces (Z, D) elements still as read without decoding them: the
    file is the one it writes when it decodes each first."""
    data = path.read_bytes()
    variables = {"project": "P", "session": "S"}
    undecoded = anonymize(STEPS[step], Parsed(parse_file(data)), variables)
    monkeypatch.setattr(_Run, "_replaced_undecoded", staticmethod(lambda *args: False))
    decoded = anonymize(STEPS[step], Parsed(parse_file(data)), variables)
    assert undecoded == decoded
