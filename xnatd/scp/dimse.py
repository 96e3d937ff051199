"""DIMSE command sets (PS3.7 section 9 and E.1) for the commands a storage SCP answers.

A command set is always implicit VR little endian: tag, 32-bit length, value. The
native data phase (``dataphase.py``) reads C-STORE and C-ECHO requests with
:func:`decode_command` and answers with :func:`encode_response`, without building a
pynetdicom primitive or a pydicom data set per instance.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

C_STORE_RQ = 0x0001
C_ECHO_RQ = 0x0030
C_CANCEL_RQ = 0x0FFF
RESPONSE_BIT = 0x8000
NO_DATA_SET = 0x0101  # (0000,0800) CommandDataSetType: no data set follows

# Command-set tags (group 0000) read from a request.
_AFFECTED_SOP_CLASS_UID = 0x00000002
_COMMAND_FIELD = 0x00000100
_MESSAGE_ID = 0x00000110
_MESSAGE_ID_RESPONDED_TO = 0x00000120  # in a response (the peer's to our N-EVENT-REPORT)
_DATA_SET_TYPE = 0x00000800
_AFFECTED_SOP_INSTANCE_UID = 0x00001000

_ELEMENT = struct.Struct("<HHI")  # group, element, value length
_US = struct.Struct("<H")


class MalformedCommand(ValueError):
    """A command set that cannot be read: the association is aborted (PS3.8 9.3.1)."""


@dataclass(frozen=True)
class Command:
    """The fields of a request command set that the data phase acts on.

    UIDs are kept as sent, even when they break the UID rules, so that one bad
    request is answered with an error status instead of ending the association.
    """

    command_field: int
    message_id: int
    has_data_set: bool
    affected_sop_class_uid: str = ""
    affected_sop_instance_uid: str = ""


def _text(value: bytes) -> str:
    return value.decode("ascii", errors="replace").rstrip("\x00 ")


def decode_command(data: bytes | bytearray) -> Command:
    """Read a request command set.

    Raises:
        MalformedCommand: an element runs past the end, or Command Field or Message ID
            is missing.
    """
    values: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if offset + 8 > end:
            raise MalformedCommand(f"truncated element header at byte {offset}")
        group, element, length = _ELEMENT.unpack_from(data, offset)
        offset += 8
        if offset + length > end:
            raise MalformedCommand(f"element ({group:04X},{element:04X}) runs past the end")
        values[group << 16 | element] = bytes(data[offset : offset + length])
        offset += length

    def number(tag: int, name: str) -> int:
        value = values.get(tag)
        if value is None or len(value) != 2:
            raise MalformedCommand(f"no {name} in the command set")
        return _US.unpack(value)[0]

    data_set_type = values.get(_DATA_SET_TYPE)
    command_field = number(_COMMAND_FIELD, "Command Field")
    if command_field & RESPONSE_BIT:
        message_id = number(_MESSAGE_ID_RESPONDED_TO, "Message ID Being Responded To")
    else:
        message_id = number(_MESSAGE_ID, "Message ID")
    return Command(
        command_field=command_field,
        message_id=message_id,
        has_data_set=data_set_type is not None and data_set_type != _US.pack(NO_DATA_SET),
        affected_sop_class_uid=_text(values.get(_AFFECTED_SOP_CLASS_UID, b"")),
        affected_sop_instance_uid=_text(values.get(_AFFECTED_SOP_INSTANCE_UID, b"")),
    )


def _uid_element(element: int, uid: str) -> bytes:
    value = uid.encode("ascii", errors="replace")
    if len(value) % 2:
        value += b"\x00"
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def _us_element(element: int, value: int) -> bytes:
    return _ELEMENT.pack(0x0000, element, 2) + _US.pack(value)


@dataclass(frozen=True)
class Reply:
    """The answer to one request: its status and, for a failure, why (Error Comment);
    ``afterwards`` runs on the same thread once the answer has been sent."""

    status: int
    comment: str | None = None
    afterwards: Callable[[], None] | None = None


ERROR_COMMENT_LENGTH = 64  # (0000,0902) is LO: at most 64 characters (PS3.5 6.2)


def error_comment(reason: str) -> bytes:
    """``reason`` as an Error Comment value: the first 64 characters, in the default
    repertoire (no backslash, which would split it, no control characters), padded
    to an even length."""
    text = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in reason.strip())
    value = text[:ERROR_COMMENT_LENGTH].encode("ascii")
    return value + b" " if len(value) % 2 else value


def _is_failure(status: int) -> bool:
    # Success 0x0000, pending 0xFF00/0xFF01, warnings 0x0001 and 0xBxxx carry no comment.
    return status not in (0x0000, 0x0001, 0xFF00, 0xFF01) and status >> 12 != 0xB


def encode_response(request: Command, status: int, comment: str | None = None) -> bytes:
    """The response command set to ``request``: C-STORE-RSP, C-ECHO-RSP or the failure
    answer to an operation this SCP does not perform (same field, response bit set).
    A failure carries ``comment`` as its Error Comment (0000,0902)."""
    elements = []
    if request.affected_sop_class_uid:
        elements.append(_uid_element(0x0002, request.affected_sop_class_uid))
    elements += [
        _us_element(0x0100, request.command_field | RESPONSE_BIT),
        _us_element(0x0120, request.message_id),
        _us_element(0x0800, NO_DATA_SET),
        _us_element(0x0900, status),
    ]
    if comment and _is_failure(status):
        value = error_comment(comment)
        elements.append(_ELEMENT.pack(0x0000, 0x0902, len(value)) + value)
    if request.command_field == C_STORE_RQ:
        elements.append(_uid_element(0x1000, request.affected_sop_instance_uid))
    body = b"".join(elements)
    return _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + body


def p_data_tf(context_id: int, command: bytes) -> bytes:
    """One P-DATA-TF PDU holding a whole command set as its last fragment (PS3.8 9.3.5)."""
    pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
    return struct.pack(">BxI", 0x04, len(pdv)) + pdv
