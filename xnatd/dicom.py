"""Reading just enough of a DICOM header, and framing received bytes as a Part 10 file.

Header only, tolerant read: routing reads the tags it needs and never decodes pixel
data; a malformed scanner value is kept as text rather than failing the file.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterable, Mapping
from typing import BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from xnatd.headerscan import NotScanned, render_header, scan_header

Header = Mapping[int, str]
"""Element values by tag (``0xGGGGEEEE``), as text; multiple values joined by ``\\``."""


class Tag:
    """The tags intake and assembly read, by their standard keywords."""

    SOPClassUID = 0x00080016
    SOPInstanceUID = 0x00080018
    StudyDate = 0x00080020
    SeriesDate = 0x00080021
    StudyTime = 0x00080030
    SeriesTime = 0x00080031
    AccessionNumber = 0x00080050
    Modality = 0x00080060
    Manufacturer = 0x00080070
    InstitutionName = 0x00080080
    StationName = 0x00081010
    StudyDescription = 0x00081030
    SeriesDescription = 0x0008103E
    OperatorsName = 0x00081070
    ManufacturerModelName = 0x00081090
    ImageType = 0x00080008
    PatientName = 0x00100010
    PatientID = 0x00100020
    PatientBirthDate = 0x00100030
    AdditionalPatientHistory = 0x001021B0
    PatientComments = 0x00104000
    BodyPartExamined = 0x00180015
    ScanningSequence = 0x00180020
    SequenceVariant = 0x00180021
    ScanOptions = 0x00180022
    MRAcquisitionType = 0x00180023
    SequenceName = 0x00180024
    SliceThickness = 0x00180050
    RepetitionTime = 0x00180080
    EchoTime = 0x00180081
    InversionTime = 0x00180082
    MagneticFieldStrength = 0x00180087
    ProtocolName = 0x00181030
    FlipAngle = 0x00181314
    StudyInstanceUID = 0x0020000D
    SeriesInstanceUID = 0x0020000E
    StudyID = 0x00200010
    SeriesNumber = 0x00200011
    InstanceNumber = 0x00200013
    NumberOfFrames = 0x00280008
    Rows = 0x00280010
    Columns = 0x00280011
    PixelSpacing = 0x00280030
    StudyComments = 0x00324000


# What intake needs for every file: identity, layout and the built-in routing rules.
INTAKE_TAGS: frozenset[int] = frozenset(
    {
        Tag.SOPClassUID,
        Tag.SOPInstanceUID,
        Tag.StudyInstanceUID,
        Tag.SeriesInstanceUID,
        Tag.SeriesNumber,
        Tag.InstanceNumber,
        Tag.Modality,
        Tag.StudyDate,
        Tag.StudyTime,
        Tag.PatientComments,
        Tag.StudyComments,
        Tag.AdditionalPatientHistory,
        Tag.StudyDescription,
        Tag.AccessionNumber,
        Tag.PatientName,
        Tag.PatientID,
    }
)

# What the session build reads from one file of each series.
BUILD_TAGS: frozenset[int] = frozenset(
    value for name, value in vars(Tag).items() if not name.startswith("_")
)


class UnparsableDicom(ValueError):
    """The bytes are not a DICOM dataset pydicom can read."""


def _text(value: object) -> str:
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_text(item) for item in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip("\x00 ")
    return str(value).strip()


def read_header(
    source: bytes | BinaryIO | str, tags: Iterable[int] = INTAKE_TAGS
) -> dict[int, str]:
    """Read the given tags of a Part 10 file (bytes, open file or path), pixels untouched.

    Raises:
        UnparsableDicom: the input is not a readable DICOM file.
    """
    wanted = sorted(set(tags))
    try:  # the common case without pydicom (headerscan.py); pydicom for the rest
        if isinstance(source, bytes):
            return scan_header(source, wanted)
        return _scan_start(source, wanted)
    except NotScanned:
        pass
    return read_header_with_pydicom(source, wanted)


def read_header_with_pydicom(source: bytes | BinaryIO | str, tags: Iterable[int]) -> dict[int, str]:
    """:func:`read_header` for the files the raw walk does not cover (``headerscan``).

    Raises:
        UnparsableDicom: the input is not a readable DICOM file.
    """
    wanted = sorted(set(tags))
    stream: BinaryIO | str = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        dataset = pydicom.dcmread(
            stream, stop_before_pixels=True, specific_tags=wanted, force=False
        )
        return header_of(dataset, wanted)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise UnparsableDicom(f"not a readable DICOM file: {exc}") from exc


SCANNED_START = 256 * 1024  # of a file on disk: routing tags sit in its first kilobytes


def _scan_start(source: BinaryIO | str, wanted: list[int]) -> dict[int, str]:
    """Scan the start of a file (path or open file, rewound for pydicom if need be)."""
    if isinstance(source, str):
        with open(source, "rb") as file:
            start = file.read(SCANNED_START)
            complete = not file.read(1)
    else:
        position = source.tell()
        start = source.read(SCANNED_START)
        complete = not source.read(1)
        source.seek(position)
    return scan_header(start, wanted, complete=complete)


_CHARACTER_SET = 0x00080005


def header_of(dataset: Dataset, tags: Iterable[int]) -> dict[int, str]:
    """The given top-level tags of a parsed data set, as text.

    Elements still as read are rendered from their bytes (``headerscan``), without the
    DataElement pydicom would build and keep for each; a data set or value it does not
    cover is read through pydicom, with the same result (:func:`decoded_header_of`).
    """
    wanted = tags if isinstance(tags, set | frozenset) else frozenset(tags)
    try:
        return _raw_header_of(dataset, wanted)
    except NotScanned:
        return decoded_header_of(dataset, wanted)


def decoded_header_of(dataset: Dataset, tags: Iterable[int]) -> dict[int, str]:
    """:func:`header_of` through pydicom's decoded elements."""
    header: dict[int, str] = {}
    for tag in tags:
        element = dataset.get(tag)
        if element is None or element.VR == "SQ" or element.value is None:
            continue
        header[tag] = _text(element.value)
    return header


def _raw_header_of(dataset: Dataset, tags: Iterable[int]) -> dict[int, str]:
    found: dict[int, tuple[str | None, bytes]] = {}
    decoded: dict[int, str] = {}
    for tag in (*tags, _CHARACTER_SET):
        element = dataset.get_item(tag)
        if element is None:
            continue
        if isinstance(element, RawDataElement):
            if not element.is_little_endian:
                raise NotScanned("big endian")
            found[tag] = (element.VR, element.value or b"")
        elif tag == _CHARACTER_SET:
            # pydicom decodes raw text in the character set the data set was read in
            if dataset.original_character_set != dataset._character_set:
                raise NotScanned("the character set was changed")
            value = element.value
            terms = "\\".join(value) if isinstance(value, MultiValue | list) else value or ""
            found[tag] = ("CS", str(terms).encode("ascii", "replace"))
        elif element.VR != "SQ" and element.value is not None:
            decoded[tag] = _text(element.value)
    header = render_header(found, tags)
    header.update(decoded)
    return header


IMPLEMENTATION_VERSION = "XNATD_010"


_UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # compiled once: checked twice per C-STORE


def is_valid_uid(uid: object) -> bool:
    """Digits and dots, at most 64 characters (PS3.5 9.1); leading zeros tolerated."""
    text = str(uid or "")
    return 0 < len(text) <= 64 and _UID.fullmatch(text) is not None


def received_prefix(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str | None
) -> bytes:
    """Preamble, ``DICM`` and the file meta group xnatd writes in front of received bytes.

    Encoded here (explicit VR little endian, PS3.10 7.1) rather than by building and
    writing a pydicom FileMetaDataset: it runs once per C-STORE, where that cost a
    twentieth of the handler's time. The bytes are the ones pydicom writes (tested).
    """
    elements = [
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", _padded(sop_class_uid, b"\x00")),
        _meta_element(0x0003, b"UI", _padded(sop_instance_uid, b"\x00")),
        _meta_element(0x0010, b"UI", _padded(transfer_syntax, b"\x00")),
        _meta_element(0x0012, b"UI", _padded(PYDICOM_IMPLEMENTATION_UID, b"\x00")),
        _meta_element(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION, b" ")),
    ]
    title = (source_ae or "").strip()[:16]
    if title:
        elements.append(_meta_element(0x0016, b"AE", _padded(title, b" ")))
    body = b"".join(elements)
    length = _meta_element(0x0000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + length + body


def _padded(text: str, pad: bytes) -> bytes:
    value = text.encode("ascii")
    return value + pad if len(value) % 2 else value


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":  # 2 reserved bytes, then a 32-bit length
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value
