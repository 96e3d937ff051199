"""Storage Commitment Push Model SCP (SPEC 10.4; PS3.4 annex J, PS3.7 10.1.1 and 10.1.4).

A requester sends N-ACTION (Action Type 1) listing instances by SOP Class and Instance
UID under a Transaction UID. The N-ACTION is answered at once. The N-EVENT-REPORT
(Event Type 1: all committed; 2: some failed, each with its Failure Reason) follows
on the same association when every instance can be judged then (``durable``: always;
``archived``: when all are archived already or not held); otherwise the request is
kept in the index and ``Committer`` (in the main process) reports on a new association
to the requester's ``commitment_peers`` address once every held instance is archived.
The requests arrive through the native data phase (``dataphase.py``), so the
N-ACTION-RSP and N-EVENT-REPORT-RQ are encoded here by hand, as the C-STORE-RSP is.
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

import structlog
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.presentation import build_role

from xnatd.config import Config, Receiver
from xnatd.store.commitments import Commitments, Verdict
from xnatd.store.index.records import PendingCommitment
from xnatd.tls import TLSError, client_context

log = structlog.get_logger(__name__)

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model SOP Class
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_COMMITMENT = 1  # Action Type ID
ALL_COMMITTED, SOME_FAILED = 1, 2  # Event Type ID

N_EVENT_REPORT_RQ, N_ACTION_RQ, RESPONSE_BIT = 0x0100, 0x0130, 0x8000
DATA_SET_FOLLOWS, NO_DATA_SET = 0x0102, 0x0101
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_ACTION = 0x0123
NO_SUCH_SOP_CLASS = 0x0118
INVALID_ARGUMENT = 0x0115

CHECK_EVERY = 2.0  # seconds between looks at a pending request
RETRY_AFTER = 30.0  # after a report could not be delivered
CLAIM_LEASE = 120.0

_ELEMENT = struct.Struct("<HHI")


# -- command sets and PDUs --------------------------------------------------------------
def _command_values(data: bytes) -> dict[int, bytes]:
    values: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(data):
        group, element, length = _ELEMENT.unpack_from(data, offset)
        values[group << 16 | element] = data[offset + 8 : offset + 8 + length]
        offset += 8 + length
    return values


def _uid(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    value += b"\0" * (len(value) % 2)
    return _ELEMENT.pack(0, element, len(value)) + value


def _us(element: int, value: int) -> bytes:
    return _ELEMENT.pack(0, element, 2) + struct.pack("<H", value)


def _command_set(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


def _pdus(context_id: int, fragment: bytes, control: int, max_pdu: int) -> bytes:
    """P-DATA-TF PDUs carrying ``fragment``, each no longer than the peer accepts."""
    room = max_pdu - 6 if max_pdu else len(fragment) or 1
    pieces = [fragment[i : i + room] for i in range(0, len(fragment), room)] or [b""]
    out = []
    for number, piece in enumerate(pieces):
        last = 0x02 if number == len(pieces) - 1 else 0x00
        pdv = struct.pack(">IBB", len(piece) + 2, context_id, control | last) + piece
        out.append(struct.pack(">BxI", 0x04, len(pdv)) + pdv)
    return b"".join(out)


def _encode(ds: Dataset, transfer_syntax: str) -> bytes:
    syntax = UID(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax.is_little_endian
    buffer.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(buffer, ds)
    return buffer.getvalue()


def event_information(transaction_uid: str, verdict: Verdict) -> tuple[int, Dataset]:
    """Event Type ID and Event Information of the report (PS3.4 J.3.3)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    if verdict.committed:
        ds.ReferencedSOPSequence = [
            _reference(sop_class, uid) for sop_class, uid in verdict.committed
        ]
    if verdict.failed:
        failed = []
        for sop_class, uid, reason in verdict.failed:
            item = _reference(sop_class, uid)
            item.FailureReason = reason
            failed.append(item)
        ds.FailedSOPSequence = failed
    return (SOME_FAILED if verdict.failed else ALL_COMMITTED), ds


def _reference(sop_class: str, uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = uid
    return item


# -- the N-ACTION handler (on the association's DUL thread) ------------------------------
class CommitmentService:
    """Answers N-ACTION requests of the associations of one process."""

    def __init__(self, commitments: Commitments) -> None:
        self.commitments = commitments
        self._message_ids = itertools.count(1)

    def handlers(self, associations: Any) -> list[tuple]:
        """The EVT_N_ACTION entry for a listener's handler table; ``associations``
        (scp/handlers.py) tells which receiver an association called."""

        def receiver_of(assoc: Any) -> Receiver | None:
            state = associations.get(assoc)
            return state.receiver if state is not None else None

        return [(evt.EVT_N_ACTION, self.handle, [receiver_of])]

    def handle(self, event: Any, receiver_of: Callable[[Any], Receiver | None]) -> bytes:
        """The bytes to send back: the N-ACTION-RSP, then the report if it is due now."""
        values = _command_values(event.request.command)
        message_id = struct.unpack("<H", values.get(0x00000110, b"\0\0")[:2])[0]
        action = struct.unpack("<H", values.get(0x00001008, b"\0\0")[:2])[0]
        sop_class = values.get(0x00000003, b"").decode("ascii", "replace").rstrip("\0 ")
        context = event.context
        max_pdu = event.assoc.requestor.maximum_length or 0

        def answer(status: int) -> bytes:
            command = _command_set(
                _uid(0x0002, STORAGE_COMMITMENT),
                _us(0x0100, N_ACTION_RQ | RESPONSE_BIT),
                _us(0x0120, message_id),
                _us(0x0800, NO_DATA_SET),
                _us(0x0900, status),
                _uid(0x1000, WELL_KNOWN_INSTANCE),
                _us(0x1008, action),
            )
            return _pdus(context.context_id, command, 0x01, max_pdu)

        receiver = receiver_of(event.assoc)
        if receiver is None or receiver.storage_commitment == "off":
            return answer(NO_SUCH_SOP_CLASS)
        if sop_class != STORAGE_COMMITMENT:
            return answer(NO_SUCH_SOP_CLASS)
        if action != REQUEST_COMMITMENT:
            return answer(NO_SUCH_ACTION)
        try:
            transaction_uid, instances = _read_request(event.request.data, context)
        except ValueError as exc:
            log.warning("commitment_refused", reason=str(exc))
            return answer(INVALID_ARGUMENT)
        calling_ae = event.assoc.requestor.ae_title
        verdict = self.commitments.judge(instances, receiver.storage_commitment)
        log.info(
            "commitment_requested",
            transaction_uid=transaction_uid,
            calling_ae=calling_ae,
            instances=len(instances),
            mode=receiver.storage_commitment,
            pending=verdict.pending,
        )
        if verdict.pending:
            self.commitments.keep(
                PendingCommitment(
                    transaction_uid=transaction_uid,
                    calling_ae=calling_ae,
                    called_ae=receiver.ae_title,
                    mode=receiver.storage_commitment,
                    instances=instances,
                    requested=time.time(),
                ),
                delay=CHECK_EVERY,
            )
            return answer(SUCCESS)
        event_type, information = event_information(transaction_uid, verdict)
        report = _command_set(
            _uid(0x0002, STORAGE_COMMITMENT),
            _us(0x0100, N_EVENT_REPORT_RQ),
            _us(0x0110, next(self._message_ids) & 0xFFFF),
            _us(0x0800, DATA_SET_FOLLOWS),
            _uid(0x1000, WELL_KNOWN_INSTANCE),
            _us(0x1002, event_type),
        )
        data = _encode(information, context.transfer_syntax)
        _log_report(transaction_uid, calling_ae, verdict, "same association")
        self.commitments.reported(calling_ae, transaction_uid, verdict, "same association")
        return (
            answer(SUCCESS)
            + _pdus(context.context_id, report, 0x01, max_pdu)
            + _pdus(context.context_id, data, 0x00, max_pdu)
        )


def _read_request(data: bytes, context: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    syntax = UID(context.transfer_syntax)
    try:
        ds = read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
        transaction_uid = str(ds.TransactionUID)
        instances = tuple(
            (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
            for item in ds.ReferencedSOPSequence
        )
    except Exception as exc:  # pydicom raises many kinds on a malformed data set
        raise ValueError(f"unreadable N-ACTION data set: {type(exc).__name__}") from None
    if not transaction_uid or not instances:
        raise ValueError("N-ACTION without a Transaction UID or instances")
    return transaction_uid, instances


def _log_report(transaction_uid: str, calling_ae: str, verdict: Verdict, how: str) -> None:
    log.info(
        "commitment_reported",
        transaction_uid=transaction_uid,
        calling_ae=calling_ae,
        committed=len(verdict.committed),
        failed=len(verdict.failed),
        via=how,
    )


# -- reports owed on a new association (main process) -----------------------------------
class Committer:
    """Sends the reports of pending requests once they can be judged."""

    def __init__(self, commitments: Commitments, config: Callable[[], Config], node: str) -> None:
        self.commitments = commitments
        self.config = config
        self.node = node
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commitments", daemon=True)

    def start(self) -> None:
        """Start looking at pending requests, on a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop looking; waits up to 30 s for a report being sent."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(CHECK_EVERY / 2):
            try:
                self.run_once()
            except Exception:
                log.exception("commitment_check_failed")

    def run_once(self) -> None:
        """Claim the requests due a look and report those that can be judged; a request
        still pending, or whose report could not be delivered, is looked at again later.
        """
        for pending in self.commitments.claim(self.node, CLAIM_LEASE):
            verdict = self.commitments.judge(pending.instances, pending.mode)
            if verdict.pending:
                self.commitments.later(pending.transaction_uid, CHECK_EVERY)
            elif self._deliver(pending, verdict):
                self.commitments.delivered(pending.transaction_uid)
            else:
                self.commitments.later(pending.transaction_uid, RETRY_AFTER)

    def _deliver(self, pending: PendingCommitment, verdict: Verdict) -> bool:
        receiver = _receiver(self.config().receivers, pending.called_ae)
        address = receiver.commitment_peers.get(pending.calling_ae) if receiver else None
        if address is None:
            log.error(
                "commitment_undeliverable",
                transaction_uid=pending.transaction_uid,
                calling_ae=pending.calling_ae,
                reason=f"no commitment_peers entry for {pending.calling_ae}",
            )
            return False
        ae = AE(ae_title=pending.called_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.add_requested_context(STORAGE_COMMITMENT)
        role = build_role(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
        host, port = address
        event_type, information = event_information(pending.transaction_uid, verdict)
        tls_args = None
        if receiver is not None and receiver.tls is not None:
            # A receiver that speaks TLS only reports over TLS too, with its own certificate.
            tls = receiver.tls
            try:
                tls_args = (client_context(tls.ca, tls.cert, tls.key), host)
            except TLSError as exc:
                log.error(
                    "commitment_undeliverable",
                    transaction_uid=pending.transaction_uid,
                    calling_ae=pending.calling_ae,
                    reason=str(exc),
                )
                return False
        assoc = ae.associate(
            host, port, ae_title=pending.calling_ae, ext_neg=[role], tls_args=tls_args
        )
        try:
            if not assoc.is_established:
                log.warning(
                    "commitment_undeliverable",
                    transaction_uid=pending.transaction_uid,
                    calling_ae=pending.calling_ae,
                    reason=f"no association with {host}:{port}",
                )
                return False
            status, _ = assoc.send_n_event_report(
                information, event_type, STORAGE_COMMITMENT, WELL_KNOWN_INSTANCE
            )
            assoc.release()
            code = int(status.Status) if status is not None and "Status" in status else None
            if code != SUCCESS:
                log.warning(
                    "commitment_undeliverable",
                    transaction_uid=pending.transaction_uid,
                    calling_ae=pending.calling_ae,
                    reason=f"N-EVENT-REPORT status {code}",
                )
                return False
        finally:
            ae.shutdown()
            transport = assoc.dul.socket
            if transport is not None and transport.socket is not None:
                transport.socket.close()
        _log_report(pending.transaction_uid, pending.calling_ae, verdict, f"{host}:{port}")
        self.commitments.reported(
            pending.calling_ae, pending.transaction_uid, verdict, f"{host}:{port}"
        )
        return True


def _receiver(receivers: tuple[Receiver, ...], called_ae: str) -> Receiver | None:
    for receiver in receivers:
        if receiver.ae_title == called_ae:
            return receiver
    return None
