"""The routing tags of a Part 10 file, read by walking its raw elements (PS3.5 7.1).

Intake reads a few top-level tags of every received file. pydicom's ``dcmread`` with
``specific_tags`` builds a Dataset, a FileMetaDataset and an element object per tag
on the way: over half the Python time of a C-STORE (issue 5). This walk only looks at
element headers, skips every value it does not want (sequences included) and stops
past the highest wanted tag; the values come out as ``dicom.header_of`` renders them.

Anything outside the common case raises :class:`NotScanned` and the caller reads the
file with pydicom instead: big endian or deflated transfer syntaxes, ISO 2022 or
several character sets, a wanted value in a VR it does not render, an implicit VR
element it has no dictionary VR for, or a header longer than the bytes at hand.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

_TAG_LENGTH = struct.Struct("<HHI")  # implicit VR: group, element, 32-bit length
_TAG_VR_SHORT = struct.Struct("<HH2sH")  # explicit VR, 16-bit length
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_CHARACTER_SET = 0x00080005

_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})  # decoded per (0008,0005)
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is text, not a separator
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "TM", "UI"} | _CHARSET_VRS | _SINGLE_VALUED | {"DS", "IS"}
)
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_NUMBER_TEXT = {
    "IS": re.compile(r"\s*[+-]?\d+\s*"),
    "DS": re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*"),
}
_DEFAULT_ENCODING = "iso8859"  # pydicom's, when (0008,0005) is absent or ISO_IR 6


class NotScanned(Exception):
    """This file needs pydicom; the reason says why (kept for tests and debugging)."""


def _transfer_syntax(data: bytes) -> tuple[bool, int]:
    """Whether the data set is implicit VR, and where it starts, from the meta group."""
    if data[128:132] != b"DICM":
        raise NotScanned("no DICM prefix")
    position, syntax = 132, None
    while position + 8 <= len(data):
        group, element, vr, length = _TAG_VR_SHORT.unpack_from(data, position)
        if group != 0x0002:
            break
        position += 8
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, position)[0]
            position += 4
        if element == 0x0010:
            syntax = data[position : position + length].rstrip(b"\x00 ").decode("ascii", "replace")
        position += length
    else:
        raise NotScanned("the meta group runs past the bytes at hand")
    uid = UID(syntax or "")
    if not uid.is_transfer_syntax or not uid.is_little_endian or uid.is_deflated:
        raise NotScanned(f"transfer syntax {syntax!r}")
    return uid.is_implicit_VR, position


class _Walk:
    """Element headers of one data set, in the VR mode of its transfer syntax."""

    def __init__(self, data: bytes, implicit: bool) -> None:
        self.data = data
        self.end = len(data)
        self.implicit = implicit

    def header(self, position: int, implicit: bool) -> tuple[int, str | None, int, int]:
        """(tag, explicit VR or None, value length, value position) of one element."""
        if position + 8 > self.end:
            raise NotScanned("the header runs past the bytes at hand")
        if implicit:
            group, element, length = _TAG_LENGTH.unpack_from(self.data, position)
            return group << 16 | element, None, length, position + 8
        group, element, vr, length = _TAG_VR_SHORT.unpack_from(self.data, position)
        tag = group << 16 | element
        if group == 0xFFFE:  # item and delimiters carry no VR
            return tag, None, _TAG_LENGTH.unpack_from(self.data, position)[2], position + 8
        if not (vr.isalpha() and vr.isupper()):
            raise NotScanned(f"no explicit VR at ({group:04X},{element:04X})")
        if vr in _LONG_VRS:
            if position + 12 > self.end:
                raise NotScanned("the header runs past the bytes at hand")
            length = struct.unpack_from("<I", self.data, position + 8)[0]
            return tag, vr.decode(), length, position + 12
        return tag, vr.decode(), length, position + 8

    def skip_undefined(self, position: int, implicit: bool) -> int:
        """Past a sequence of undefined length: its items, then the delimiter."""
        while True:
            tag, _, length, position = self.header(position, True)
            if tag == _SEQUENCE_END:
                return position
            if tag != _ITEM:
                raise NotScanned("no item where a sequence item should be")
            if length != _UNDEFINED:
                position += length
                continue
            while True:  # an item of undefined length: its elements, then the delimiter
                tag, vr, length, position = self.header(position, implicit)
                if tag == _ITEM_END:
                    break
                position = self.skip(position, vr, length, implicit)

    def skip(self, position: int, vr: str | None, length: int, implicit: bool) -> int:
        if length != _UNDEFINED:
            return position + length
        if vr not in (None, "SQ", "UN"):
            raise NotScanned(f"{vr} of undefined length before the wanted tags")
        # A UN sequence of undefined length is encoded implicit VR (PS3.5 6.2.2).
        return self.skip_undefined(position, implicit or vr == "UN")


def scan_header(data: bytes, tags: Iterable[int], *, complete: bool = True) -> dict[int, str]:
    """The wanted top-level tags of a Part 10 file, as ``dicom.header_of`` gives them.

    ``complete``: ``data`` is the whole file, not only its first bytes.

    Raises:
        NotScanned: the file is not the common case; read it with pydicom.
    """
    wanted = set(tags)
    implicit, position = _transfer_syntax(data)
    last = max(wanted | {_CHARACTER_SET})
    walk = _Walk(data, implicit)
    found: dict[int, tuple[str | None, bytes]] = {}
    while True:
        if position >= walk.end:
            if not complete:
                raise NotScanned("the header runs past the bytes at hand")
            break
        tag, vr, length, position = walk.header(position, implicit)
        if tag > last or tag == _PIXEL_DATA:
            break
        if tag not in wanted and tag != _CHARACTER_SET:
            position = walk.skip(position, vr, length, implicit)
            continue
        vr = vr or dictionary_vr(tag)
        if vr == "SQ":  # header_of leaves sequences out
            position = walk.skip(position, vr, length, implicit)
            continue
        if length == _UNDEFINED or position + length > walk.end:
            raise NotScanned(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has no readable length")
        found[tag] = (vr, data[position : position + length])
        position += length
    return render_header(found, wanted)


def render_header(
    found: Mapping[int, tuple[str | None, bytes]], tags: Iterable[int]
) -> dict[int, str]:
    """Raw top-level values of a little endian data set (VR None: implicit, from the
    dictionary) as ``dicom.header_of`` gives them; sequences are left out.

    Raises:
        NotScanned: a value this module does not render; read the file with pydicom.
    """
    wanted = set(tags)
    encoding = _encoding(found.get(_CHARACTER_SET, ("CS", b""))[1])
    header: dict[int, str] = {}
    for tag, (vr, value) in found.items():
        if tag not in wanted:
            continue
        vr = vr or dictionary_vr(tag)
        if vr == "SQ":
            continue
        text = _render(tag, vr, bytes(value), encoding)
        if text is not None:
            header[tag] = text
    return header


def dictionary_vr(tag: int) -> str:
    """The VR of a public tag in the data dictionary (for implicit VR).

    Raises:
        NotScanned: a private tag, or one not in the dictionary.
    """
    if tag >> 16 & 1:
        raise NotScanned(f"private ({tag >> 16:04X},{tag & 0xFFFF:04X}) in implicit VR")
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise NotScanned(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) not in the dictionary") from None
    return vr


def _encoding(value: bytes) -> str:
    terms = value.decode("ascii", "replace").strip(" \x00")
    if not terms or terms == "ISO_IR 6":
        return _DEFAULT_ENCODING
    if "\\" in terms or terms not in python_encoding or "2022" in terms:
        raise NotScanned(f"character set {terms!r}")
    return python_encoding[terms]


def _render(tag: int, vr: str, value: bytes, encoding: str) -> str | None:
    """One value as text; None where pydicom's value is None (an empty number)."""
    if vr in _NUMBERS:
        size = struct.calcsize(_NUMBERS[vr])
        if not value:
            return None
        if len(value) % size:
            raise NotScanned(f"{vr} of {len(value)} bytes")
        numbers = struct.unpack(f"<{len(value) // size}{_NUMBERS[vr]}", value)
        return "\\".join(str(n) for n in numbers)
    if vr not in _STRING_VRS:
        raise NotScanned(f"a wanted {vr} value")
    if vr == "UI":
        value = value.rstrip(b"\x00")
    if b"\x00" in value:
        raise NotScanned(f"NUL in a {vr} value")
    text = value.decode(encoding if vr in _CHARSET_VRS else _DEFAULT_ENCODING)
    if vr in ("IS", "DS"):
        if not text.strip():
            return None
        parts = text.split("\\")
        if not all(_NUMBER_TEXT[vr].fullmatch(p) for p in parts):
            raise NotScanned(f"{vr} value {text!r}")
        return "\\".join(p.strip() for p in parts)
    if vr in _SINGLE_VALUED:
        return text.strip()
    return "\\".join(p.strip() for p in text.split("\\"))
