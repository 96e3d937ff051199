"""A stock pynetdicom SCU that sends data set bytes exactly as given (damaged or not).

pynetdicom's ``send_c_store`` parses or at least frames what it sends; for hostile
input a test needs the bytes on the wire to be the bytes it wrote, with the command's
UIDs chosen freely. The C-STORE primitive is built by hand and sent through the
association's DIMSE provider, as ``send_c_store`` does internally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE


@dataclass(frozen=True)
class RawStore:
    """One C-STORE: the command's UIDs, the context's transfer syntax, the bytes."""

    sop_class: str
    sop_instance: str
    transfer_syntax: str
    data_set: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    error_comment: str | None


def exchange(assoc: Any, request: Any, context_id: int) -> Any:
    """Send one DIMSE request as built (bad UIDs included) and return the response.

    As pynetdicom's own send_c_store: the reactor is paused so it does not take the reply.
    """
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assoc.dimse.send_msg(request, context_id)
        _, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    return response


def send_raw(port: int, stores: list[RawStore], *, aec: str = "XNAT") -> list[Answer]:
    """Send each store on one association; returns each response's status and comment."""
    ae = AE(ae_title="RAWSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for pair in sorted({(s.sop_class, s.transfer_syntax) for s in stores}):
        ae.add_requested_context(pair[0], [pair[1]])
    assoc = ae.associate("127.0.0.1", port, ae_title=aec)
    try:
        if not assoc.is_established:
            raise ConnectionError(f"association to {aec} on {port} not established")
        contexts = {
            (cx.abstract_syntax, cx.transfer_syntax[0]): cx.context_id
            for cx in assoc.accepted_contexts
        }
        answers = []
        for number, store in enumerate(stores, start=1):
            request = C_STORE()
            request.MessageID = number
            request._affected_sop_class_uid = UID(store.sop_class)  # as given, even if bad
            request._affected_sop_instance_uid = UID(store.sop_instance)
            request.Priority = 2
            request.DataSet = BytesIO(store.data_set)
            context_id = contexts[(store.sop_class, store.transfer_syntax)]
            response = exchange(assoc, request, context_id)
            if response is None:
                raise ConnectionError("no C-STORE response")
            answers.append(Answer(int(response.Status), response.ErrorComment))
        assoc.release()
        return answers
    finally:
        ae.shutdown()
        transport = assoc.dul.socket
        if transport is not None and transport.socket is not None:
            transport.socket.close()
