"""What xnatd accepts as an instance, the same at every door (issue 16).

C-STORE (at association and per request), ``xnatd import``, the inbox and STOW-RS all
decide with :func:`identity_problem` and :func:`sop_class_problem`, and intake checks
every file whole with :func:`checked_header` before anything is stored.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import re
from collections.abc import Iterable, Iterator

from pydicom._uid_dict import UID_dictionary

from xnatd.datasetcheck import Buffer, Malformed, check_part10, transfer_syntax
from xnatd.dicom import is_valid_uid, read_header_with_pydicom
from xnatd.headerscan import NotScanned, render_header
from xnatd.payload import Payload, SpooledFile, readable

_CHARACTER_SET = 0x00080005
# A SOP Instance UID as senders and anonymizers make them: decimal UIDs, and the
# 64-hex-digit hashes some tools write (kept as sent, so C-STORE takes what import
# takes). Punctuation, spaces and the value separator are refused: they are not an
# identifier's, and a backslash would make the value two.
_INSTANCE_UID = re.compile(r"[0-9A-Za-z]+(\.[0-9A-Za-z]+)*")
_NOT_STORAGE = ("Storage Commitment", "Media Storage Directory")


class RejectedFile(ValueError):
    """The file is not one xnatd keeps; the message says why (one line)."""


@functools.lru_cache(maxsize=1024)
def sop_class_problem(uid: str) -> str | None:
    """None when instances of this SOP class are stored, else why not.

    Every storage SOP class is: those pydicom's dictionary names "... Storage" (Color
    Palette, Hanging Protocol, implant templates, Defined Procedure Protocol, Protocol
    Approval, Inventory and the rest, retired ones too), private classes, and standard
    UIDs newer than the dictionary. Other services' SOP classes (Verification, query,
    print, Storage Commitment, a DICOMDIR's class) and other kinds of UID are not.
    """
    if not is_valid_uid(uid):
        return f"SOP Class UID {uid[:24]!r} is not a UID"
    entry = UID_dictionary.get(uid)
    if entry is None:
        return None
    name, kind = entry[0], entry[1]
    if kind == "SOP Class" and "Storage" in name and not name.startswith(_NOT_STORAGE):
        return None
    return f"not a storage SOP class: {name}"


def instance_uid_problem(uid: str) -> str | None:
    """None when the SOP Instance UID is one xnatd keeps, else why not."""
    if 0 < len(uid) <= 64 and _INSTANCE_UID.fullmatch(uid):
        return None
    return f"SOP Instance UID {uid[:24]!r} is not a UID"


def identity_problem(sop_class_uid: str | None, sop_instance_uid: str | None) -> str | None:
    """The one rule every door applies to an instance's SOP Class and Instance UIDs."""
    missing = [
        name
        for name, value in (
            ("SOP Class UID", sop_class_uid),
            ("SOP Instance UID", sop_instance_uid),
        )
        if not value
    ]
    if missing:
        return f"no {' and no '.join(missing)}"
    assert sop_class_uid is not None and sop_instance_uid is not None
    return sop_class_problem(sop_class_uid) or instance_uid_problem(sop_instance_uid)


@contextlib.contextmanager
def _buffer(data: Payload) -> Iterator[Buffer]:
    """The whole file as one buffer: the bytes, or a large file mapped, not read."""
    if not isinstance(data, SpooledFile):
        yield data
        return
    if data.prefix or data.suffix or data.start or data.end != data.source.stat().st_size:
        yield data.read_all()  # rewritten by a script: not what a door hands in
        return
    if data.end == 0:
        yield b""
        return
    with (
        data.source.open("rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
    ):
        yield mapped


def checked_header(data: Payload, tags: Iterable[int]) -> dict[int, str]:
    """Check the file whole and read its top-level ``tags`` in the same pass.

    Raises:
        RejectedFile: the file is cut short or malformed.
        UnparsableDicom: it is whole, but pydicom cannot read it either.
    """
    wanted = frozenset(tags)
    with _buffer(data) as buffer:
        try:
            checked = check_part10(buffer, wanted | {_CHARACTER_SET})
        except Malformed as exc:
            raise RejectedFile(f"malformed data set: {exc}") from None
        syntax = transfer_syntax(checked.transfer_syntax)
        if syntax.is_transfer_syntax and syntax.is_little_endian and not syntax.is_deflated:
            with contextlib.suppress(NotScanned):
                return render_header(checked.found, wanted)
    # Big endian, deflated, ISO 2022, private tags in implicit VR: pydicom reads them.
    with readable(data) as source:
        return read_header_with_pydicom(source, wanted)
