"""Writing an anonymized data set back to bytes, as pydicom's ``write_dataset`` would.

pydicom writes every element through the same general path: a scratch buffer per
element, its value copied twice, several attribute look-ups. After a script most
top-level elements are still as read (undecoded ``RawDataElement``s, the pixel data
among them), and those are written here from their bytes with one ``struct`` call for
the element header. The decoded values of the common kinds (ASCII text, bytes, one
number, a sequence a script built of those) are encoded here too; pydicom encodes the
rest, and the whole data set when its encoding or character set changed. The result
is the same bytes pydicom writes (tests/anon/test_encode.py), as chunks to be joined
once: the pixel data value is not copied until then.
"""

from __future__ import annotations

import struct

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset
from pydicom.multival import MultiValue
from pydicom.tag import tag_in_exception
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, PersonName

PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
# Decoded values written here: ASCII text, padded as pydicom pads it.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI"})  # no character set
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})  # in the data set's
_PADDING = {"UI": b"\0"}
_BYTE_VRS = frozenset({"OB", "UN"})  # bytes as they are, padded with a NUL
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
_CHARACTER_SET = 0x00080005
_ITEM_TAG = {True: b"\xfe\xff\x00\xe0", False: b"\xff\xfe\xe0\x00"}


def _headers(little: bool) -> tuple[struct.Struct, struct.Struct, struct.Struct, bytes]:
    order = "<" if little else ">"
    delimiter = struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
    return (
        struct.Struct(order + "HHI"),  # implicit VR
        struct.Struct(order + "HH2sH"),  # explicit VR, 16-bit length
        struct.Struct(order + "HH2s2xI"),  # explicit VR, 32-bit length
        delimiter,
    )


_HEADERS = {little: _headers(little) for little in (True, False)}


def _raw_chunks(raw: RawDataElement, implicit: bool, little: bool) -> list[bytes] | None:
    """A raw element as pydicom writes it, or None where pydicom's general path must
    decide (another encoding, an unusual VR, a value too long for its length field)."""
    if raw.is_implicit_VR != implicit or raw.is_little_endian != little:
        return None
    value = raw.value or b""
    undefined = raw.length == _UNDEFINED
    if undefined and raw.tag == PIXEL_DATA and not value.startswith(_ITEM_TAG[little]):
        return None  # pydicom refuses it with its own message
    length = _UNDEFINED if undefined else len(value)
    implicit_header, short_header, long_header, delimiter = _HEADERS[little]
    group, element = raw.tag >> 16, raw.tag & 0xFFFF
    if implicit:
        header = implicit_header.pack(group, element, length)
    else:
        vr = raw.VR
        if not vr or len(vr) != 2:
            return None
        if vr in _LONG_VRS:
            header = long_header.pack(group, element, vr.encode("ascii"), length)
        elif undefined or length > 0xFFFF:
            return None
        else:
            header = short_header.pack(group, element, vr.encode("ascii"), length)
    return [header, value, delimiter] if undefined else [header, value]


def _plain_text(encodings: object) -> bool:
    """Whether ASCII text is written as itself under ``encodings`` (the Specific
    Character Set's value): one character set, not ISO 2022 (which may add escapes)."""
    if isinstance(encodings, MultiValue | list):
        if len(encodings) != 1:
            return False
        encodings = encodings[0]
    return isinstance(encodings, str) and "2022" not in encodings


def _value_bytes(element: DataElement, little: bool, plain_text: bool) -> bytes | None:
    """The encoded value of a decoded element of the common kinds (ASCII text, bytes, one
    number), as pydicom writes it; None for anything else, which pydicom writes."""
    vr, value = element.VR, element.value
    if element.is_empty:
        return b""
    if vr in _BYTE_VRS and isinstance(value, bytes):
        return value + b"\0" if len(value) % 2 else value
    if vr in _NUMBER_FORMATS:
        if type(value) not in (int, float):  # several values: LUT descriptors are special
            return None
        try:
            return struct.pack(("<" if little else ">") + _NUMBER_FORMATS[vr], value)
        except struct.error:
            return None  # pydicom says what is wrong
    if vr == "PN":
        # Only a name a script set (a PersonName keeping its bytes as read writes those);
        # pydicom drops empty trailing components, so names ending in "=" are left to it.
        if not plain_text or not isinstance(value, PersonName) or value.original_string:
            return None
        text = str(value)
        if text.endswith("="):
            return None
    elif vr in _ASCII_VRS or (plain_text and vr in _TEXT_VRS):
        if isinstance(value, str):
            text = value
        elif isinstance(value, MultiValue | list | tuple) and all(
            isinstance(item, str) for item in value
        ):
            text = "\\".join(value)
        else:
            return None
    else:
        return None
    if not text.isascii():
        return None
    data = text.encode("ascii")
    return data + _PADDING.get(vr, b" ") if len(data) % 2 else data


def _decoded_chunks(
    element: DataElement, implicit: bool, little: bool, plain_text: bool
) -> list[bytes] | None:
    """A decoded element of the common kinds, as pydicom writes it; None otherwise."""
    if element.VR == "SQ":
        return _sequence_chunks(element, implicit, little, plain_text)
    if element.is_undefined_length:
        return None
    value = _value_bytes(element, little, plain_text)
    if value is None:
        return None
    implicit_header, short_header, long_header, _ = _HEADERS[little]
    group, number = element.tag >> 16, element.tag & 0xFFFF
    if implicit:
        return [implicit_header.pack(group, number, len(value)), value]
    vr = element.VR.encode("ascii")
    if element.VR in _LONG_VRS:
        return [long_header.pack(group, number, vr, len(value)), value]
    if len(value) > 0xFFFF:
        return None  # pydicom writes it as UN, with a warning
    return [short_header.pack(group, number, vr, len(value)), value]


def _sequence_chunks(
    element: DataElement, implicit: bool, little: bool, plain_text: bool
) -> list[bytes] | None:
    """A sequence a script built (every element of every item decoded, none of the
    kinds pydicom corrects or recodes), as pydicom writes it; None otherwise."""
    implicit_header, _, long_header, delimiter = _HEADERS[little]
    items: list[bytes] = []
    for item in element.value or []:
        if not isinstance(item, Dataset) or _CHARACTER_SET in item:
            return None
        body: list[bytes] = []
        for tag in sorted(item.keys()):
            if tag & 0xFFFF == 0 and tag >> 16 > 6:
                continue
            inner = item.get_item(tag)
            if inner.is_raw:
                return None  # pydicom may decode and recode it in the item's encoding
            chunks = _decoded_chunks(inner, implicit, little, plain_text)
            if chunks is None:
                return None
            body.extend(chunks)
        content = b"".join(body)
        if getattr(item, "is_undefined_length_sequence_item", False):
            items.append(implicit_header.pack(0xFFFE, 0xE000, _UNDEFINED) + content)
            items.append(implicit_header.pack(0xFFFE, 0xE00D, 0))
        else:
            items.append(implicit_header.pack(0xFFFE, 0xE000, len(content)) + content)
    value = b"".join(items)
    group, number = element.tag >> 16, element.tag & 0xFFFF
    length = _UNDEFINED if element.is_undefined_length else len(value)
    if implicit:
        header = implicit_header.pack(group, number, length)
    else:
        header = long_header.pack(group, number, b"SQ", length)
    return [header, value, delimiter] if element.is_undefined_length else [header, value]


def element_chunks(dataset: Dataset, implicit: bool, little: bool) -> list[bytes]:
    """The elements of ``dataset`` encoded in the given syntax, in tag order, as the
    bytes pydicom's ``write_dataset`` gives (their concatenation).

    Raises:
        ValueError, TypeError, OverflowError, AttributeError: as pydicom's writer does
            for a value it cannot encode.
    """
    if (implicit, little) != dataset.original_encoding or (
        dataset.original_character_set != dataset._character_set
    ):
        # pydicom decodes and re-encodes every element here (ambiguous VRs corrected,
        # text in the new character set): its own path, whole.
        return [_pydicom_body(dataset, implicit, little)]
    encodings = dataset.get("SpecificCharacterSet", "iso8859")
    plain_text = _plain_text(encodings)
    chunks: list[bytes] = []
    for tag in sorted(dataset.keys()):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        element = dataset.get_item(tag)
        if element.is_raw:
            raw = _raw_chunks(element, implicit, little)  # type: ignore[arg-type]
            if raw is not None:
                chunks.extend(raw)
                continue
            element = dataset[tag]
        decoded = _decoded_chunks(element, implicit, little, plain_text)
        if decoded is not None:
            chunks.extend(decoded)
            continue
        scratch = DicomBytesIO()
        scratch.is_implicit_VR, scratch.is_little_endian = implicit, little
        with tag_in_exception(tag):
            write_data_element(scratch, element, encodings)
        chunks.append(scratch.getvalue())
    return chunks


def _pydicom_body(dataset: Dataset, implicit: bool, little: bool) -> bytes:
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = implicit, little
    write_dataset(body, dataset)
    return body.getvalue()


def meta_group(file_meta: Dataset) -> bytes:
    """The file meta elements (explicit VR little endian), its group length first.

    ``file_meta`` must already hold what PS3.10 requires (see :func:`part10_prefix`).
    """
    chunks: list[bytes] = []
    for tag in sorted(file_meta.keys()):
        if tag == 0x00020000:
            continue
        element = file_meta.get_item(tag)
        raw = _raw_chunks(element, False, True) if element.is_raw else None  # type: ignore[arg-type]
        if raw is None:
            raw = _decoded_chunks(file_meta[tag], False, True, True)
        if raw is None:
            scratch = DicomBytesIO()
            scratch.is_implicit_VR, scratch.is_little_endian = False, True
            converted: DataElement = file_meta[tag]
            write_data_element(scratch, converted)
            raw = [scratch.getvalue()]
        chunks.extend(raw)
    body = b"".join(chunks)
    return struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


def part10_prefix(file_meta: FileMetaDataset) -> bytes:
    """Preamble, ``DICM`` and the file meta group for a dataset received over the network.

    The group as pydicom's ``write_file_meta_info`` writes it (required elements checked,
    version and implementation added if missing), its elements as read copied raw.

    Raises:
        AttributeError: a required element is missing or empty (pydicom's error).
        ValueError: an element is not of group 2.
    """
    meta = file_meta
    if not _complete_meta(file_meta):  # completed on a copy, as pydicom would
        meta = FileMetaDataset(file_meta)
        meta.setdefault("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
        validate_file_meta(meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + meta_group(meta)


# What validate_file_meta requires with a value, or adds when missing.
_META_WITH_VALUE = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)
_META_PRESENT = 0x00020013


def _complete_meta(file_meta: Dataset) -> bool:
    """Whether validate_file_meta would neither change nor refuse ``file_meta``."""
    for tag in _META_WITH_VALUE:
        element = file_meta.get_item(tag)
        if element is None or (not element.value if element.is_raw else element.is_empty):
            return False
    tags = file_meta.keys()  # not the Dataset itself: iterating it decodes every element
    return _META_PRESENT in tags and all(tag >> 16 == 0x0002 for tag in tags)
