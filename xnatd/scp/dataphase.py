"""An established association's P-DATA, read straight off the socket (PS3.8 9.3.5).

pynetdicom reads a P-DATA-TF PDU 4 kB per ``recv``, decodes it into PDU objects and
primitives, queues them for the association thread, which reassembles the message,
builds a C_STORE primitive, calls the handler and encodes the response through pydicom:
about 7 CPU-seconds a GB (issue 5), more than the rest of the receive path. Here, on the
DUL's own thread, once the association is established: each P-DATA-TF PDU is read in
pieces of up to 1 MiB, its data set fragments go straight into the instance's buffer
(which spills to disk past 16 MiB, so a huge PDU never sits in memory), and the complete
message goes to the same EVT_C_STORE / EVT_C_ECHO handler pynetdicom would call. The
response is encoded by hand and sent on the same thread. Association negotiation,
release, abort and every other PDU stay with pynetdicom's state machine.

Only xnatd's listeners use this path (their sockets are ``QuickAckSocket``); an SCU or
any other pynetdicom SCP in the process is untouched.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import structlog
from pynetdicom import evt
from pynetdicom.dul import DULServiceProvider
from pynetdicom.presentation import PresentationContextTuple

from xnatd.dicom import received_prefix
from xnatd.intake.acceptance import identity_problem
from xnatd.payload import IN_MEMORY_LIMIT, Payload, SpooledFile
from xnatd.scp.dimse import (
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_STORE_RQ,
    RESPONSE_BIT,
    Command,
    Reply,
    decode_command,
    encode_response,
    p_data_tf,
)
from xnatd.scp.transport import QuickAckSocket

log = structlog.get_logger(__name__)

P_DATA_TF = 0x04
VERIFICATION = "1.2.840.10008.1.1"
N_ACTION_RQ = 0x0130  # Storage Commitment's request (scp/commitment.py answers it)
CHUNK = 1 << 20  # the most read from the socket at once
CONTINUE_FOR = 0.25  # longest a message's PDUs are read without a turn of the reactor
ESTABLISH_WAIT = 30.0  # longest a first request waits for EVT_ACCEPTED's handler to finish

# DIMSE statuses this module answers itself (PS3.7 C.4, C.5)
PROCESSING_FAILURE = 0xC211  # a handler raised; as pynetdicom answers
CANNOT_UNDERSTAND = 0xC000  # C-STORE-RQ without a data set
SOP_CLASS_NOT_SUPPORTED = 0x0122  # C-STORE on the Verification context, or C-ECHO elsewhere
UNRECOGNIZED_OPERATION = 0x0211  # a command no storage SCP performs


# -- large data sets go to disk as they arrive ----------------------------------------
class SpillingBuffer(io.BytesIO):
    """One incoming data set, which moves to a file in the spool folder once it grows
    past ``limit``: small objects stay in memory (no file to create and remove per
    instance), a 2 GB object never is. Spills only once ``folder`` is set."""

    folder: Path | None = None
    limit = IN_MEMORY_LIMIT

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.spill: BinaryIO | None = None
        self.spill_path: Path | None = None

    def write(self, data: Any) -> int:
        """Append data, moving everything to a spool file once past ``limit``."""
        if self.spill is not None:
            return self.spill.write(data)
        if self.folder is not None and self.tell() + len(data) > self.limit:
            fd, name = tempfile.mkstemp(dir=self.folder, suffix=".part")
            self.spill, self.spill_path = os.fdopen(fd, "wb"), Path(name)
            self.spill.write(super().getvalue())
            self.seek(0)
            self.truncate()
            return self.spill.write(data)
        return super().write(data)

    def finish(self) -> Path | None:
        """Close the spill file, if any, and give its path (the caller removes it)."""
        if self.spill is not None:
            self.spill.close()
        return self.spill_path


def spill_large_data_sets(folder: Path) -> None:
    """Where this process spills data sets past ``SpillingBuffer.limit``."""
    SpillingBuffer.folder = folder


class ProtocolViolation(Exception):
    """The peer broke PS3.8's framing: pynetdicom's reactor aborts the association."""


class ConnectionLost(Exception):
    """The peer closed the connection in the middle of a PDU."""


@dataclass(frozen=True)
class StoreRequest:
    """A complete C-STORE request, named as pynetdicom's C_STORE primitive names it.

    ``data`` is the file to keep: xnatd's meta group (``dicom.received_prefix``), then
    the data set as received, in memory or spilled to disk. It is None exactly when the
    command's UIDs break intake's rule (``intake.acceptance.identity_problem``, checked
    once, here): the handler fails that request alone.
    """

    MessageID: int
    AffectedSOPClassUID: str
    AffectedSOPInstanceUID: str
    data: Payload | None


@dataclass(frozen=True)
class ActionRequest:
    """A complete N-ACTION request: its command set and data set, as received."""

    command: bytes
    data: bytes


@dataclass(frozen=True)
class RequestEvent:
    """Stands for pynetdicom's ``Event`` in a request handler: assoc, request, context."""

    assoc: Any
    request: Any
    context: PresentationContextTuple


@dataclass
class _Message:
    """One DIMSE message as its fragments arrive."""

    context_id: int
    command_bytes: bytearray = field(default_factory=bytearray)
    command: Command | None = None
    data: SpillingBuffer | None = None
    framed: bool = False  # data begins with our Part 10 prefix


def _discard(buffer: SpillingBuffer | None) -> None:
    if buffer is not None:
        spilled = buffer.finish()
        if spilled is not None:
            spilled.unlink(missing_ok=True)


class DataPhase:
    """The P-DATA side of one acceptor association, driven by its DUL thread."""

    def __init__(self, dul: DULServiceProvider) -> None:
        self.dul = dul
        self.assoc = dul.assoc
        assert dul.socket is not None  # an established association's transport
        self.transport = dul.socket
        self.sock = cast(QuickAckSocket, dul.socket.socket)  # xnatd's listeners only
        self._buffer = memoryview(bytearray(CHUNK))
        self._contexts: dict[int, PresentationContextTuple] | None = None
        self._message: _Message | None = None

    # -- reading ---------------------------------------------------------------------
    def _fill(self, view: memoryview) -> None:
        while view:
            received = self.sock.recv_into(view)
            if not received:
                raise ConnectionLost("connection closed in the middle of a PDU")
            view = view[received:]

    def _exact(self, length: int) -> bytes:
        data = bytearray(length)
        self._fill(memoryview(data))
        return bytes(data)

    def _copy(self, length: int, message: _Message) -> None:
        assert message.data is not None
        while length:
            piece = self._buffer[: min(length, CHUNK)]
            self._fill(piece)
            message.data.write(piece)
            length -= len(piece)

    def read_pdu(self) -> None:
        """Read P-DATA-TF PDUs and act on every message they complete.

        Once a message has begun, its next PDUs are read here while they have already
        arrived: a trip back through pynetdicom's reactor for each (its queue checks,
        two selects and a peek) cost more Python time than reading the PDU. The reactor
        has its turn again once the message is complete, when the next PDU has not
        arrived or is not P-DATA, and at least every ``CONTINUE_FOR`` seconds (its
        timers).
        """
        deadline = 0.0
        while True:
            self._read_one_pdu()
            if self._message is None:
                return
            now = time.monotonic()
            if not deadline:
                deadline = now + CONTINUE_FOR
            elif now > deadline:
                return
            if self.sock.arrived() != P_DATA_TF:
                return

    def _read_one_pdu(self) -> None:
        _, _, remaining = struct.unpack(">BBI", self._exact(6))
        while remaining:
            if remaining < 6:
                raise ProtocolViolation("a PDV item header runs past the end of its PDU")
            item_length, context_id, control = struct.unpack(">IBB", self._exact(6))
            if item_length < 2 or item_length + 4 > remaining:
                raise ProtocolViolation(f"a PDV item of {item_length} bytes does not fit its PDU")
            self._fragment(context_id, control, item_length - 2)
            remaining -= item_length + 4

    def _fragment(self, context_id: int, control: int, length: int) -> None:
        message = self._message
        if message is None:
            message = self._message = _Message(context_id)
        elif context_id != message.context_id:
            raise ProtocolViolation(
                f"presentation context {context_id} inside a message on {message.context_id}"
            )
        if control & 0x01:  # a command fragment
            if message.command is not None:
                raise ProtocolViolation("a command fragment after the command set was complete")
            message.command_bytes += self._exact(length)
            if control & 0x02:
                message.command = decode_command(message.command_bytes)
                if message.command.has_data_set:
                    self._start_data(message)
                else:
                    self._complete()
        else:
            if message.data is None:
                raise ProtocolViolation("a data set fragment before its command set")
            self._copy(length, message)
            if control & 0x02:
                self._complete()

    def _start_data(self, message: _Message) -> None:
        """A buffer for the data set, opened with the file's meta group when this is a
        store whose UIDs can go in one."""
        command = message.command
        assert command is not None
        message.data = SpillingBuffer()
        context = self._context(message.context_id)
        if (
            command.command_field == C_STORE_RQ
            and context.abstract_syntax != VERIFICATION
            and identity_problem(command.affected_sop_class_uid, command.affected_sop_instance_uid)
            is None
        ):
            prefix = received_prefix(
                command.affected_sop_class_uid,
                command.affected_sop_instance_uid,
                context.transfer_syntax,
                self._calling_ae(),
            )
            message.data.write(prefix)
            message.framed = True

    # -- answering -------------------------------------------------------------------
    def _calling_ae(self) -> str:
        primitive = self.assoc.requestor.primitive
        assert primitive is not None  # established: the A-ASSOCIATE-RQ was received
        return str(primitive.calling_ae_title)

    def _handler(self, event: Any) -> tuple[Callable[..., Any] | None, list[Any] | None]:
        """The handler bound to an intervention event, and its extra arguments."""
        return cast(
            tuple[Callable[..., Any] | None, list[Any] | None], self.assoc.get_handlers(event)
        )

    def _context(self, context_id: int) -> PresentationContextTuple:
        if self._contexts is None:
            self._contexts = {
                cx.context_id: cx.as_tuple
                for cx in self.assoc.accepted_contexts
                if cx.context_id is not None
            }
        context = self._contexts.get(context_id)
        if context is None:
            raise ProtocolViolation(f"presentation context {context_id} was not accepted")
        return context

    def _complete(self) -> None:
        message, self._message = self._message, None
        assert message is not None and message.command is not None
        command = message.command
        afterwards = None
        try:
            context = self._context(message.context_id)
            if command.command_field == C_CANCEL_RQ:
                return  # nothing of ours runs long enough to cancel
            if command.command_field & RESPONSE_BIT:
                return  # the peer's answer to our N-EVENT-REPORT: nothing to say back
            if command.command_field == N_ACTION_RQ:
                pdu = self._action(message, context)
            else:
                reply = self._reply(command, context, message)
                response = encode_response(command, reply.status, reply.comment)
                pdu = p_data_tf(message.context_id, response)
                afterwards = reply.afterwards
        finally:
            _discard(message.data)  # written durably by now, if it was kept
        self.transport.send(pdu)
        if afterwards is not None:
            # While the sender reads its answer and sends the next request: the next
            # PDUs wait in the socket's buffer meanwhile.
            try:
                afterwards()
            except Exception:
                log.exception("after_reply_failed", message_id=command.message_id)

    def _action(self, message: _Message, context: PresentationContextTuple) -> bytes:
        """An N-ACTION: the EVT_N_ACTION handler gives every PDU to send back."""
        command = message.command
        assert command is not None
        handler, args = self._handler(evt.EVT_N_ACTION)
        if handler is None:
            return p_data_tf(message.context_id, encode_response(command, UNRECOGNIZED_OPERATION))
        data = b""
        if message.data is not None:
            spilled = message.data.finish()
            data = spilled.read_bytes() if spilled else message.data.getvalue()
        request = ActionRequest(bytes(message.command_bytes), data)
        self._wait_until_established()
        try:
            return handler(RequestEvent(self.assoc, request, context), *(args or ()))
        except Exception:
            log.exception("request_handler_failed", message_id=command.message_id)
            return p_data_tf(message.context_id, encode_response(command, PROCESSING_FAILURE))

    def _reply(
        self, command: Command, context: PresentationContextTuple, message: _Message
    ) -> Reply:
        verification = context.abstract_syntax == VERIFICATION
        if command.command_field == C_STORE_RQ and not verification:
            if message.data is None:
                return _failed(CANNOT_UNDERSTAND, "C-STORE request without a data set")
            data: Payload | None = None
            if message.framed:
                spilled = message.data.finish()
                data = SpooledFile(b"", spilled) if spilled else message.data.getvalue()
            request = StoreRequest(
                command.message_id,
                command.affected_sop_class_uid,
                command.affected_sop_instance_uid,
                data,
            )
            return self._call(evt.EVT_C_STORE, request, context)
        if command.command_field == C_ECHO_RQ and verification:
            return self._call(evt.EVT_C_ECHO, command, context)
        if command.command_field == C_STORE_RQ:
            return _failed(SOP_CLASS_NOT_SUPPORTED, "C-STORE on the Verification context")
        if command.command_field == C_ECHO_RQ:
            return _failed(SOP_CLASS_NOT_SUPPORTED, "C-ECHO on a storage context")
        return _failed(
            UNRECOGNIZED_OPERATION, f"command 0x{command.command_field:04X} is not performed here"
        )

    def _call(self, event: Any, request: Any, context: PresentationContextTuple) -> Reply:
        handler, args = self._handler(event)
        if handler is None:
            if event is evt.EVT_C_ECHO:
                return Reply(0x0000)
            return _failed(PROCESSING_FAILURE, "no handler for this request")
        self._wait_until_established()
        try:
            answer = handler(RequestEvent(self.assoc, request, context), *(args or ()))
        except Exception:
            log.exception("request_handler_failed", message_id=getattr(request, "MessageID", None))
            return Reply(PROCESSING_FAILURE, "internal error in the receiver (see its log)")
        if isinstance(answer, Reply):
            return answer
        return Reply(int(getattr(answer, "Status", answer)))

    def _wait_until_established(self) -> None:
        """The peer may send its first request the moment it has the A-ASSOCIATE-AC,
        while the association thread is still in the EVT_ACCEPTED handler."""
        deadline = time.monotonic() + ESTABLISH_WAIT
        assoc = self.assoc
        while not assoc.is_established and not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        """The connection ended: drop a message cut off in the middle."""
        message, self._message = self._message, None
        if message is not None:
            _discard(message.data)


def _failed(status: int, reason: str) -> Reply:
    """A failure this module answers itself: logged, and the reason sent back."""
    log.warning("request_failed", status=f"0x{status:04X}", reason=reason)
    return Reply(status, reason)
