"""A script applied to one Part 10 file: bytes in, bytes out (or rejected).

The transfer syntax is kept and pixel data is written back byte for byte (pydicom
never decodes it here); the meta header's SOP UIDs follow the data set's. A file too
large to hold in memory is read without its pixel data, which is copied from disk.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from xnatd.anon.chain import Chain
from xnatd.anon.encode import element_chunks, part10_prefix
from xnatd.anon.engine import ScriptFailed, run
from xnatd.anon.script import Script
from xnatd.payload import Payload, SpooledFile

Anonymizer = Script | Chain  # a site's or project's anonymization: one script, or a chain


def parse_file(data: bytes) -> Dataset:
    """The whole data set of a Part 10 file (pixel data kept as raw bytes).

    Raises:
        ScriptFailed: the bytes are not a readable DICOM file.
    """
    try:
        return pydicom.dcmread(io.BytesIO(data), force=False)
    except _UNREADABLE as exc:
        raise ScriptFailed(f"not a readable DICOM file: {exc}") from exc


_UNREADABLE = (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, struct.error)
PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)  # pydicom stops before these too
_LONG_VRS = {b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN"}


@dataclass
class Parsed:
    """A file read for a script: its data set, whole; or, for a file too large to hold
    (a ``SpooledFile``), every element but the pixel data, which stays on disk at
    ``pixels`` (start and end of the element in the source file) until written back."""

    dataset: Dataset
    spool: SpooledFile | None = None
    pixels: tuple[int, int] | None = None


def parse(data: Payload, script: Anonymizer) -> Parsed:
    """Read a file for script; only the pixel data of a large one is left unread.

    Raises:
        ScriptFailed: the file is not a readable DICOM file.
    """
    if isinstance(data, bytes):
        return Parsed(parse_file(data))
    if "alterPixels" in script.functions:  # edits the pixels: they must be in memory
        return Parsed(parse_file(data.read_all()))
    with data.open() as stream:
        try:
            dataset = pydicom.dcmread(stream, stop_before_pixels=True, force=False)
            syntax = UID(dataset.file_meta.TransferSyntaxUID)
            at = stream.tell()  # pydicom stops at the start of the Pixel Data element
            end = None if syntax.is_deflated else _pixel_data_end(stream, at, len(data), syntax)
            if syntax.is_deflated or end == -1 or not _within_source(data, at, end or at):
                return Parsed(parse_file(data.read_all()))  # rare enough to read whole
            if end is None:  # no pixel data: pydicom read everything
                return Parsed(dataset)
            if end < len(data):  # elements after the pixel data (padding, signatures)
                stream.seek(end)
                trailing = read_dataset(
                    stream, syntax.is_implicit_VR, syntax.is_little_endian, len(data) - end
                )
                for element in trailing:
                    dataset.add(element)
        except _UNREADABLE as exc:
            raise ScriptFailed(f"not a readable DICOM file: {exc}") from exc
    offset = data.start - len(data.prefix)  # stream position to source position
    return Parsed(dataset, data, (at + offset, end + offset))


def _within_source(spool: SpooledFile, start: int, end: int) -> bool:
    middle = len(spool.prefix) + spool.end - spool.start
    return len(spool.prefix) <= start and end <= middle


def _pixel_data_end(stream: BinaryIO, at: int, size: int, syntax: UID) -> int | None:
    """Where the Pixel Data element starting at ``at`` ends; None if the file ends
    there, -1 if float pixel data starts there instead (not spliced)."""
    order = "<" if syntax.is_little_endian else ">"
    stream.seek(at)
    head = stream.read(8 if syntax.is_implicit_VR else 12)
    if len(head) < 8:
        return None
    group, element = struct.unpack(order + "HH", head[:4])
    if (group << 16 | element) in FLOAT_PIXEL_DATA:
        return -1
    if (group << 16 | element) != PIXEL_DATA:
        raise ValueError(f"expected Pixel Data at byte {at}, found ({group:04X},{element:04X})")
    if syntax.is_implicit_VR:
        (length,) = struct.unpack(order + "I", head[4:8])
    elif head[4:6] in _LONG_VRS and len(head) == 12:
        (length,) = struct.unpack(order + "I", head[8:12])
    else:
        raise ValueError(f"Pixel Data with VR {head[4:6]!r} at byte {at}")
    position = at + len(head)
    if length != 0xFFFFFFFF:
        if position + length > size:
            raise ValueError("the Pixel Data value runs past the end of the file")
        return position + length
    while position + 8 <= size:  # encapsulated: items up to the sequence delimiter
        stream.seek(position)
        group, element, length = struct.unpack("<HHI", stream.read(8))
        position += 8
        if (group, element) == (0xFFFE, 0xE0DD):
            return position
        if (group, element) != (0xFFFE, 0xE000) or position + length > size:
            raise ValueError(f"a broken item in the encapsulated Pixel Data at byte {position}")
        position += length
    raise ValueError("the encapsulated Pixel Data has no sequence delimiter")


def anonymize(script: Anonymizer, parsed: Parsed, variables: Mapping[str, Any]) -> Payload | None:
    """Run the script on a parsed file; the new file, or None when rejected.

    A large file's pixel data is copied from where it lies, never read into memory:
    the script sees a placeholder Pixel Data element, which it may keep or delete.

    Raises:
        ScriptFailed: the script fails on this data set.
    """
    dataset = parsed.dataset
    placeholder = None
    if parsed.pixels is not None:
        placeholder = DataElement(PIXEL_DATA, "OB", b"")
        dataset.add(placeholder)
    try:
        rejected = (
            script.run(dataset, variables)
            if isinstance(script, Chain)
            else run(script, dataset, variables).rejected
        )
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError) as exc:
        if isinstance(script, Script):
            raise
        raise ScriptFailed(f"the profile cannot be applied: {exc}") from exc
    if rejected:
        return None
    meta = dataset.file_meta
    if "SOPInstanceUID" in dataset:
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    if "SOPClassUID" in dataset:
        meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    try:
        if placeholder is None:
            return _encode(dataset)
        if PIXEL_DATA not in dataset:  # the script removed the pixel data
            return _encode(dataset)
        if dataset[PIXEL_DATA] is not placeholder or placeholder.value != b"":
            raise ScriptFailed("the script set Pixel Data, which xnatd does not do in place")
        del dataset[PIXEL_DATA]
        return _splice(dataset, parsed)
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise ScriptFailed(f"the changed data set cannot be written: {exc}") from exc


def _splice(dataset: Dataset, parsed: Parsed) -> SpooledFile:
    """The rewritten elements around the original pixel data, still on disk."""
    assert parsed.spool is not None and parsed.pixels is not None
    before, after = Dataset(), Dataset()
    for element in dataset:
        (before if element.tag < PIXEL_DATA else after).add(element)
    before.file_meta = dataset.file_meta
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    start, end = parsed.pixels
    return SpooledFile(
        _encode(before),
        parsed.spool.source,
        start=start,
        end=end,
        suffix=_body(after, syntax) if len(after) else b"",
    )


def _encode(dataset: Dataset) -> bytes:
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    if syntax.is_deflated:
        out = io.BytesIO()  # pydicom compresses the whole data set
        dataset.save_as(out, enforce_file_format=True)
        return out.getvalue()
    # Our own meta prefix, then the data set in its own syntax, joined once: save_as
    # would copy and re-validate the meta group and copy the pixel data twice more.
    chunks = element_chunks(dataset, syntax.is_implicit_VR, syntax.is_little_endian)
    return b"".join([part10_prefix(dataset.file_meta), *chunks])


def _body(dataset: Dataset, syntax: UID) -> bytes:
    return b"".join(element_chunks(dataset, syntax.is_implicit_VR, syntax.is_little_endian))


def apply_to_bytes(script: Anonymizer, data: bytes, variables: Mapping[str, Any]) -> bytes | None:
    """The anonymized file's bytes, or None when the script rejects it."""
    result = anonymize(script, Parsed(parse_file(data)), variables)
    assert not isinstance(result, SpooledFile)  # only a spooled input gives one
    return result


def apply_to_payload(
    script: Anonymizer, data: Payload, variables: Mapping[str, Any]
) -> Payload | None:
    """As apply_to_bytes, for a file that may be too large to read whole."""
    return anonymize(script, parse(data, script), variables)
