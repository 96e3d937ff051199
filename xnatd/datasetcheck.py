"""Is a Part 10 file whole? Every element header, length, item and delimiter, checked.

Intake checks every received file with :func:`check_part10` before a success status
(issue 16): a data set cut short in its header or its pixel data, an element whose
length runs past the end, bytes where a VR should be, an item or delimiter out of
place are refused instead of filed. Values are never decoded (pixel data least of
all): one pass over the element headers, skipping each value by its length.

The walk is a loop over an explicit stack, never a recursion, so no nesting depth can
exhaust Python's stack; nesting deeper than :data:`MAX_DEPTH` is refused, because
pydicom, which reads the file later (the build, anonymization), recurses per level.

Every transfer syntax: implicit and explicit VR little endian, explicit big endian,
deflated (inflated, then walked), and encapsulated pixel data (items, then the
sequence delimiter). A transfer syntax xnatd does not know is walked as explicit VR
little endian, as every encapsulated syntax is.
"""

from __future__ import annotations

import functools
import mmap
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

MAX_DEPTH = 64  # nested sequences: pydicom reads, writes and copies 64 (its copy fails near 80)

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, _PIXEL_DATA})
_ROWS = 0x00280010
_SOP_CLASS = 0x00080016
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {
        *(b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO"),
        *(b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"),
    }
)
_FRAGMENT_VRS = frozenset({b"OB", b"OW"})  # undefined length: items, then a delimiter

# What the walk is inside of: a data set (the top, or an item's), a sequence, or the
# fragments of encapsulated pixel data.
_DATA_SET, _SEQUENCE, _FRAGMENTS = 0, 1, 2

_implicit_sequences: dict[int, bool] = {}
_CACHED_TAGS = 8192


class Malformed(ValueError):
    """The file is not a whole, well-formed data set; the message says where."""


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _is_sequence(tag: int) -> bool:
    """An implicit VR element of defined length is a sequence if the dictionary says so
    (a private one is walked past: its VR is unknown)."""
    if tag >> 16 & 1:
        return False
    known = _implicit_sequences.get(tag)
    if known is None:
        try:
            known = dictionary_VR(tag) == "SQ"
        except KeyError:
            known = False
        if len(_implicit_sequences) < _CACHED_TAGS:  # hostile tags must not grow it
            _implicit_sequences[tag] = known
    return known


Buffer = bytes | memoryview | mmap.mmap
Found = dict[int, tuple[str | None, bytes]]  # tag -> (explicit VR or None, value)


def check_data_set(
    data: Buffer,
    start: int,
    end: int,
    *,
    implicit: bool,
    little: bool,
    wanted: Iterable[int] = (),
) -> Found:
    """Walk the data set in bytes ``start`` to ``end`` of ``data``; returns the values
    of the ``wanted`` top-level elements found on the way (the routing tags, read in
    the same pass).

    Raises:
        Malformed: with the first problem found and its byte offset.
    """
    order = "<" if little else ">"
    tag_length = struct.Struct(order + "HHI").unpack_from
    explicit_short = struct.Struct(order + "HH2sH").unpack_from
    long_length = struct.Struct(order + "I").unpack_from
    wanted = {*wanted, _SOP_CLASS}  # an image must have pixel data: see the end
    found: Found = {}
    # Each frame: (what, where it ends or None until its delimiter, the nearest defined
    # end around it, implicit VR inside, closed by an item delimiter).
    stack: list[tuple[int, int | None, int, bool, bool]] = [(_DATA_SET, end, end, implicit, False)]
    depth = 0
    position = start
    rows = pixels = False
    while stack:
        what, limit, bound, implicit_vr, delimited = stack[-1]
        if what == _DATA_SET:
            # The elements of one data set, one after the other, until one opens a
            # sequence (pushed: the walk goes into it) or the data set ends (popped).
            top = len(stack) == 1
            while True:
                if limit is not None and position >= limit:
                    stack.pop()
                    break
                if bound - position < 8:
                    if top and not bytes(data[position:bound]).strip(b"\x00"):
                        stack.pop()  # trailing NUL padding, as pydicom allows
                        break
                    raise Malformed(
                        f"the data set ends inside an element header at byte {position}"
                    )
                if implicit_vr:
                    group, element, length = tag_length(data, position)
                    vr = None
                else:
                    group, element, vr, length = explicit_short(data, position)
                if group == 0xFFFE:  # no VR: the delimiter of an item of undefined length
                    group, element, length = tag_length(data, position)
                    if element == 0xE00D and delimited:
                        stack.pop()
                        position += 8
                        break
                    raise Malformed(
                        f"{_tag_text(group << 16 | element)} at byte {position} outside a sequence"
                    )
                tag = group << 16 | element
                value = position + 8
                if vr is not None:
                    if vr in _LONG_VRS:
                        if bound - position < 12:
                            raise Malformed(f"the data set ends inside {_tag_text(tag)}'s header")
                        length = long_length(data, value)[0]
                        value += 4
                    elif vr not in _SHORT_VRS:
                        raise Malformed(f"invalid VR {vr!r} in {_tag_text(tag)} at byte {position}")
                if top:
                    if tag in wanted and length <= bound - value:
                        found[tag] = (vr and vr.decode(), bytes(data[value : value + length]))
                    if tag >= _ROWS:
                        rows = rows or tag == _ROWS
                        pixels = pixels or tag in _PIXEL_DATA_TAGS
                if length == _UNDEFINED:
                    if vr is None or vr == b"SQ" or vr == b"UN":
                        contents = _FRAGMENTS if tag == _PIXEL_DATA and vr is None else _SEQUENCE
                        inner_implicit = implicit_vr or vr == b"UN"  # PS3.5 6.2.2
                    elif vr in _FRAGMENT_VRS:
                        contents, inner_implicit = _FRAGMENTS, implicit_vr
                    else:
                        name = vr.decode("ascii", "replace")
                        raise Malformed(f"{_tag_text(tag)} ({name}) has undefined length")
                    if contents == _SEQUENCE:
                        depth += 1
                        if depth > MAX_DEPTH:
                            raise Malformed(f"sequences nested more than {MAX_DEPTH} deep")
                    stack.append((contents, None, bound, inner_implicit, False))
                    position = value
                    break
                if length > bound - value:
                    raise Malformed(
                        f"{_tag_text(tag)} at byte {position}: its length {length}"
                        " runs past the end"
                    )
                if vr == b"SQ" or (vr is None and _is_sequence(tag)):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise Malformed(f"sequences nested more than {MAX_DEPTH} deep")
                    stack.append((_SEQUENCE, value + length, value + length, implicit_vr, False))
                    position = value
                    break
                position = value + length
            continue
        # A sequence's items, or pixel data fragments: always tag and 32-bit length.
        if limit is not None and position >= limit:
            stack.pop()
            depth -= what == _SEQUENCE
            continue
        if bound - position < 8:
            raise Malformed(f"the data set ends inside an item header at byte {position}")
        group, element, length = tag_length(data, position)
        tag = group << 16 | element
        if tag == _SEQUENCE_END and limit is None:
            stack.pop()
            depth -= what == _SEQUENCE
            position += 8
            continue
        if tag != _ITEM:
            raise Malformed(f"{_tag_text(tag)} at byte {position} where an item should be")
        position += 8
        if length == _UNDEFINED:
            if what == _FRAGMENTS:
                raise Malformed(f"a pixel data fragment of undefined length at byte {position}")
            stack.append((_DATA_SET, None, bound, implicit_vr, True))
            continue
        if length > bound - position:
            raise Malformed(f"an item of {length} bytes at byte {position} runs past the end")
        if what == _SEQUENCE:
            stack.append((_DATA_SET, position + length, position + length, implicit_vr, False))
        else:
            position += length
    if not pixels and (rows or _is_image_class(found.get(_SOP_CLASS, (None, b""))[1])):
        # Cut short at an element boundary: every element whole, the pixels gone.
        raise Malformed("an image without pixel data (the data set was cut short?)")
    return found


def _is_image_class(value: bytes) -> bool:
    uid = UID(bytes(value).rstrip(b"\x00 ").decode("ascii", "replace"))
    return "Image Storage" in uid.name


@dataclass(frozen=True)
class Checked:
    """A checked file: its transfer syntax and the wanted top-level values."""

    transfer_syntax: str
    found: Found


def _meta(data: Buffer) -> tuple[str, int]:
    """The transfer syntax named in the meta group, and where the data set starts."""
    size = len(data)
    if data[128:132] != b"DICM":
        raise Malformed("no DICM prefix")
    position, syntax = 132, ""
    element_header = struct.Struct("<HH2sH").unpack_from
    while position + 8 <= size:
        group, element, vr, length = element_header(data, position)
        if group != 0x0002:
            return syntax, position
        position += 8
        if vr in _LONG_VRS:
            if position + 4 > size:
                break
            length = struct.unpack_from("<I", data, position)[0]
            position += 4
        if length > size - position:
            break
        if element == 0x0010:
            syntax = (
                bytes(data[position : position + length])
                .rstrip(b"\x00 ")
                .decode("ascii", "replace")
            )
        position += length
    if position == size:
        raise Malformed("no data set after the file meta group")
    raise Malformed("the file meta group is cut short")


@functools.lru_cache(maxsize=64)
def transfer_syntax(syntax: str) -> UID:
    """The transfer syntax UID of that name, made once: a handful of syntaxes name every
    file, and pydicom validates a UID each time one is made."""
    return UID(syntax)


def check_part10(data: Buffer, wanted: Iterable[int] = ()) -> Checked:
    """Check a whole Part 10 file: meta group, then the data set in its transfer syntax.

    Raises:
        Malformed: the first problem found.
    """
    syntax, start = _meta(data)
    uid = transfer_syntax(syntax)
    if uid.is_transfer_syntax and uid.is_deflated:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            inflated = inflater.decompress(data[start:])
        except zlib.error as exc:
            raise Malformed(f"the deflated data set cannot be inflated: {exc}") from None
        if not inflater.eof:
            raise Malformed("the deflated data set is cut short")
        found = check_data_set(inflated, 0, len(inflated), implicit=False, little=True)
        return Checked(syntax, found)
    known = uid.is_transfer_syntax
    little = not known or uid.is_little_endian
    implicit = _looks_implicit(bytes(data[start : start + 6]), known and uid.is_implicit_VR)
    found = check_data_set(data, start, len(data), implicit=implicit, little=little, wanted=wanted)
    return Checked(syntax, found)


def _looks_implicit(first: bytes, declared: bool) -> bool:
    """Whether the data set is implicit VR, from its first element, as pydicom decides:
    a file whose meta group names the other VR mode is read as it is written."""
    if first[0:2] in (b"\xfe\xff", b"\xff\xfe") or len(first) < 6:
        return declared
    return not (first[4:6] in _LONG_VRS or first[4:6] in _SHORT_VRS)
