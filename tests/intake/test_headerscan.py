"""headerscan.scan_header gives what pydicom gives (dicom.header_of over dcmread), on
files written by pydicom in both little endian transfer syntaxes; what it cannot read
it leaves to pydicom, and read_header still answers the same."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from dicomgen import SeriesSpec, StudySpec, instances
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from xnatd.dicom import BUILD_TAGS, INTAKE_TAGS, decoded_header_of, header_of, read_header
from xnatd.headerscan import NotScanned, scan_header

SYNTAXES = {"implicit": "1.2.840.10008.1.2", "explicit": "1.2.840.10008.1.2.1"}
PRIVATE_CREATOR, PRIVATE_VALUE = 0x00190010, 0x00191010
ROUTING = {0x00180088, 0x00280100, 0x00189087, 0x00080008, 0x00081140, 0x00400275}
WANTED = INTAKE_TAGS | BUILD_TAGS | ROUTING


def part10(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = SYNTAXES[syntax]
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = BytesIO()
    ds.save_as(out, implicit_vr=syntax == "implicit", little_endian=True, enforce_file_format=True)
    return out.getvalue()


def by_pydicom(data: bytes, tags: set[int]) -> dict[int, str]:
    wanted = sorted(tags)
    dataset = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=wanted)
    return decoded_header_of(dataset, wanted)


def base(**values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def nested(defined_length: bool) -> Dataset:
    """Sequences, one inside another, before the routing tags (and one wanted)."""
    inner = Sequence([_item(CodeValue="T1", CodingSchemeDesignator="99X")])
    ds = base(
        ReferencedImageSequence=Sequence(
            [
                _item(ReferencedSOPInstanceUID="1.2.3", ReferencedSOPClassUID="1.2"),
                _item(ReferencedSOPInstanceUID="1.2.4", ConceptNameCodeSequence=inner),
            ]
        ),
        RequestAttributesSequence=Sequence([_item(RequestedProcedureID="RP1")]),
        PatientID="P1",
        SeriesNumber="3",
    )
    if defined_length:
        for element in (ds["ReferencedImageSequence"], ds["RequestAttributesSequence"]):
            element.is_undefined_length = False
    return ds


CASES = {
    "empty values": base(
        AccessionNumber="",
        PatientName="",
        PatientComments="",
        StudyDate="",
        StudyTime="",
        Modality="",
        SeriesNumber=None,
        InstanceNumber="",
        SliceThickness=None,
        Rows=None,
        StudyInstanceUID="",
    ),
    "padding and multiple values": base(
        ImageType=["ORIGINAL", "PRIMARY ", "M"],
        PixelSpacing=["0.5", " 0.50"],
        InstanceNumber=" 7 ",
        SeriesNumber="005",
        StudyComments="a \\ backslash stays in LT ",
        StudyDescription="Head^Brain ",
        Modality="MR",
        StudyInstanceUID="1.2.3.4",
        EchoTime="1e-2",
    ),
    "latin-1": base(
        SpecificCharacterSet="ISO_IR 100",
        PatientName="Müller^Jürgen",
        StudyDescription="Schädel",
        InstitutionName="Hôpital",
    ),
    "utf-8": base(
        SpecificCharacterSet="ISO_IR 192", PatientName="山田^太郎", StudyDescription="頭部"
    ),
    "numbers": base(
        Rows=512, Columns=256, SpacingBetweenSlices="1.25", BitsAllocated=16, DiffusionBValue=1000.5
    ),
    "undefined-length sequences": nested(defined_length=False),
    "defined-length sequences": nested(defined_length=True),
}


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("case", CASES)
def test_scan_matches_pydicom(case: str, syntax: str) -> None:
    data = part10(CASES[case], syntax)
    assert scan_header(data, WANTED) == by_pydicom(data, WANTED)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_generated_sessions_scan_like_pydicom(syntax: str) -> None:
    study = StudySpec(
        "scan",
        study_description="DEMO",
        series=[
            SeriesSpec(1, modality="MR", instances=2),
            SeriesSpec(2, modality="CT", instances=1),
            SeriesSpec(3, modality="PT", instances=1),
        ],
    )
    for ds in instances(study):
        data = part10(ds, syntax)
        assert scan_header(data, WANTED) == by_pydicom(data, WANTED)


def test_a_private_tag_is_scanned_in_explicit_vr_and_left_to_pydicom_in_implicit() -> None:
    ds = base(PatientID="P")
    ds.add_new(PRIVATE_CREATOR, "LO", "ACME 1.0")
    ds.add_new(PRIVATE_VALUE, "LO", "PROJECT7 ")
    wanted = INTAKE_TAGS | {PRIVATE_VALUE}
    explicit = part10(ds, "explicit")
    assert scan_header(explicit, wanted)[PRIVATE_VALUE] == "PROJECT7"
    implicit = part10(base(PatientID="P"), "implicit")
    ds.file_meta.TransferSyntaxUID = SYNTAXES["implicit"]
    implicit = part10(ds, "implicit")
    with pytest.raises(NotScanned, match="private"):
        scan_header(implicit, wanted)
    assert read_header(implicit, wanted) == by_pydicom(implicit, wanted)


@pytest.mark.parametrize(
    "values",
    [
        {"SpecificCharacterSet": ["", "ISO 2022 IR 87"], "PatientName": "Yamada^Tarou"},
        {"InstanceNumber": "12.5"},  # not an IS: pydicom decides what it becomes
    ],
    ids=["iso-2022", "bad-IS"],
)
def test_what_the_scan_cannot_read_goes_to_pydicom(values: dict) -> None:
    data = part10(base(**values), "explicit")
    with pytest.raises(NotScanned):
        scan_header(data, INTAKE_TAGS)
    assert read_header(data, INTAKE_TAGS) == by_pydicom(data, INTAKE_TAGS)


def test_the_start_of_a_file_on_disk_is_enough(tmp_path) -> None:
    ds = base(PatientID="DISK", Modality="CT", PixelData=b"\x00" * (1 << 20))
    ds["PixelData"].VR = "OW"
    path = tmp_path / "big.dcm"
    path.write_bytes(part10(ds, "explicit"))
    assert read_header(str(path), INTAKE_TAGS) == by_pydicom(path.read_bytes(), INTAKE_TAGS)
    with path.open("rb") as file:
        assert read_header(file, INTAKE_TAGS)[0x00100020] == "DISK"
    with pytest.raises(NotScanned, match="past the bytes"):
        scan_header(path.read_bytes()[:200], INTAKE_TAGS, complete=False)


def _decode_some(dataset: Dataset) -> None:
    """As a script leaves a data set: some elements read (decoded), some changed."""
    for keyword in ("PatientID", "Modality", "SeriesNumber"):
        if keyword in dataset:
            dataset.get(keyword)  # decoded, value unchanged
    if "PatientName" in dataset:
        dataset.PatientName = "ANONYMIZED"
    dataset.StudyDescription = ["ONE", "TWO"]


@pytest.mark.parametrize("decoded", [False, True], ids=["as-read", "partly-decoded"])
@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("case", CASES)
def test_header_of_a_parsed_data_set_is_pydicoms(case: str, syntax: str, decoded: bool) -> None:
    """header_of renders undecoded elements from their bytes: the same text as pydicom's
    decoded values, whether the elements are as read or a script decoded some."""
    data = part10(CASES[case], syntax)
    fast, reference = (pydicom.dcmread(BytesIO(data)) for _ in range(2))
    if decoded:
        _decode_some(fast)
        _decode_some(reference)
    assert header_of(fast, WANTED) == decoded_header_of(reference, WANTED)


@pytest.mark.parametrize(
    "values",
    [
        {"SpecificCharacterSet": ["", "ISO 2022 IR 87"], "PatientName": "Yamada^Tarou"},
        {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Müller^Jürgen"},
        {"SpecificCharacterSet": "ISO_IR 100", "StudyDescription": "Tête"},
        {"InstanceNumber": "12.5"},
    ],
    ids=["iso-2022", "utf-8", "latin-1", "bad-IS"],
)
def test_header_of_follows_the_character_set(values: dict) -> None:
    data = part10(base(**values), "explicit")
    fast, reference = (pydicom.dcmread(BytesIO(data)) for _ in range(2))
    assert header_of(fast, INTAKE_TAGS) == decoded_header_of(reference, INTAKE_TAGS)
    fast.get("SpecificCharacterSet")  # decoded, unchanged
    assert header_of(fast, INTAKE_TAGS) == decoded_header_of(reference, INTAKE_TAGS)
    fast.SpecificCharacterSet = "ISO_IR 100"  # a script changed it: raw text read anew
    reference.SpecificCharacterSet = "ISO_IR 100"
    assert header_of(fast, INTAKE_TAGS) == decoded_header_of(reference, INTAKE_TAGS)


def test_header_of_a_big_endian_data_set_is_pydicoms() -> None:
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small_bigendian.dcm"
    fast, reference = (pydicom.dcmread(path) for _ in range(2))
    header = header_of(fast, WANTED)
    assert header == decoded_header_of(reference, WANTED)
    assert header[0x00080060] == "MR"
