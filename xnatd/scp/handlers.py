"""pynetdicom event handlers: association policy, C-ECHO and C-STORE.

The C-STORE handler calls intake once and maps its outcome through one status
table; anything unexpected goes back to the caller (pynetdicom for events, the data
phase for C-ECHO and C-STORE), which logs it and answers 0xC211. Dependencies arrive
as bound handler arguments, never module globals.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping

import structlog
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.pdu import A_RELEASE_RQ
from structlog.contextvars import bind_contextvars

from xnatd.config import Receiver
from xnatd.intake.acceptance import identity_problem
from xnatd.intake.intake import Intake, Received, Result
from xnatd.intake.open_associations import Associations, AssociationState
from xnatd.metrics import Metrics
from xnatd.scp.admission import REJECT_CALLED_AE, REJECT_CALLING_AE, is_allowed
from xnatd.scp.dataphase import RequestEvent, StoreRequest
from xnatd.scp.dimse import Reply

log = structlog.get_logger(__name__)

STATUS = {
    Result.STORED: 0x0000,  # Success
    Result.DROPPED: 0x0000,  # Success, as XNAT answers for a file its script rejects
    Result.REJECTED: 0xC000,  # Error: cannot understand
    # The request names one SOP class and the data set is of another: PS3.4 B.2.3's
    # "Error: Data Set does not match SOP Class" says exactly that. (An Affected SOP
    # Instance UID that differs is REJECTED, 0xC000: the data set is not the instance
    # the request is about, which no more specific status describes.)
    Result.MISMATCHED: 0xA900,
    Result.REFUSED: 0xA700,  # Refused: out of resources
    Result.NOT_PERMITTED: 0x0124,  # Refused: not authorized
}


def _peer(event: Event) -> tuple[str, str]:
    requestor = event.assoc.requestor
    return requestor.address, f"{requestor.address}:{requestor.port}"


def _ae_titles(event: Event) -> tuple[str, str]:
    """The called and calling AE titles of the association's request."""
    primitive = event.assoc.requestor.primitive
    assert primitive is not None  # EVT_REQUESTED and later: the request was received
    return str(primitive.called_ae_title).strip(), str(primitive.calling_ae_title).strip()


def handle_requested(
    event: Event, receivers: Callable[[], Mapping[str, Receiver]], metrics: Metrics
) -> None:
    """Reject at association time: unknown called AE, or a caller not on the allow-list."""
    called, calling = _ae_titles(event)
    address, peer = _peer(event)
    receiver = receivers().get(called)
    if receiver is None:
        reject = REJECT_CALLED_AE
        reason = "called AE title not recognized"
    elif not is_allowed(receiver.allow, calling, address):
        reject = REJECT_CALLING_AE
        reason = "calling AE not on the allow-list"
    else:
        return
    log.warning("association_rejected", ae=called, calling_ae=calling, peer=peer, reason=reason)
    metrics.associations.labels(called, calling, "rejected").inc()
    event.assoc.acse.send_reject(*reject)
    # As pynetdicom's own reject path: wait until the DUL has sent the A-ASSOCIATE-RJ,
    # otherwise the socket is closed first and the caller sees an abort, not a reject.
    event.assoc.kill()


def handle_established(
    event: Event, receivers: Callable[[], Mapping[str, Receiver]], associations: Associations
) -> None:
    """Register the accepted association; abort it if its receiver went in a reload."""
    called, calling = _ae_titles(event)
    receiver = receivers().get(called)
    if receiver is None:  # removed by a reload between request and accept
        event.assoc.abort()
        return
    _, peer = _peer(event)
    state = AssociationState(uuid.uuid4().hex, receiver, calling, peer)
    associations.add(event.assoc, state)
    log.info(
        "association_accepted", ae=called, calling_ae=calling, peer=peer, node=associations.node
    )


def handle_released(event: Event, associations: Associations) -> None:
    """Note that the association ended with a release (for the closing log and metric)."""
    state = associations.get(event.assoc)
    if state is not None:
        state.result = "released"


def handle_pdu_received(event: Event, associations: Associations) -> None:
    """A-RELEASE-RQ, seen on the reading thread: the peer's close that follows may be
    handled before the association thread gets to EVT_RELEASED."""
    if isinstance(event.pdu, A_RELEASE_RQ):
        state = associations.get(event.assoc)
        if state is not None:
            state.result = "released"


def handle_aborted(event: Event, associations: Associations) -> None:
    """Note that the association ended with an abort (for the closing log and metric)."""
    state = associations.get(event.assoc)
    if state is not None:
        state.result = "aborted"


def handle_closed(event: Event, associations: Associations, metrics: Metrics) -> None:
    """Connection gone: drop the index row (idle timers may run) and audit what came in."""
    state = associations.remove(event.assoc)
    if state is None:
        return
    ae = state.receiver.ae_title
    metrics.associations.labels(ae, state.calling_ae, state.result).inc()
    for session, files in state.cache.files_by_session.items():
        associations.prearchive.audit(
            "receive",
            actor=state.calling_ae,
            session=session,
            files=files,
            ae=ae,
            peer=state.peer,
            association=state.id,
        )
    log.info(
        "association_closed",
        ae=ae,
        calling_ae=state.calling_ae,
        result=state.result,
        sessions=sorted(state.cache.files_by_session),
        files=sum(state.cache.files_by_session.values()),
    )


def handle_echo(event: Event) -> int:
    """Answer a C-ECHO: Success."""
    return 0x0000


def handle_store(event: RequestEvent, intake: Intake, associations: Associations) -> Reply:
    """Durably store one instance, then answer; the reply's ``afterwards`` (the file's
    MD5) runs on this thread once the answer is sent.

    Called by the native data phase (``dataphase.py``) with a complete request: the
    file, framed as Part 10 while its bytes arrived. A failure's answer carries the
    reason that is logged and audited as its Error Comment.
    """
    state = associations.get(event.assoc)
    if state is None:
        reason = "association not registered with the receiver"
        log.warning("store_failed", result="refused", reason=reason)
        return Reply(STATUS[Result.REFUSED], reason)
    request: StoreRequest = event.request
    thread = threading.get_ident()
    if state.logging_thread != thread:
        # The association's own reading thread, which ends with it: its events name the
        # AE titles from now on (bound per request, that was a twentieth of its time).
        bind_contextvars(ae=state.receiver.ae_title, calling_ae=state.calling_ae)
        state.logging_thread = thread
    if request.data is None:  # the command's UIDs break the rule: this request fails
        problem = identity_problem(request.AffectedSOPClassUID, request.AffectedSOPInstanceUID)
        reason = (problem or "invalid request").replace("SOP", "Affected SOP", 1)
        log.warning("store_failed", result="rejected", reason=reason)
        associations.prearchive.audit(
            "reject",
            actor=state.calling_ae,
            session=None,
            reason=reason,
            source=state.receiver.ae_title,
        )
        return Reply(STATUS[Result.REJECTED], reason)
    outcome = intake.receive(
        Received(
            data=request.data,
            source=state.receiver.ae_title,
            calling_ae=state.calling_ae,
            association_id=state.id,
            receiver=state.receiver,
            requested=(request.AffectedSOPClassUID, request.AffectedSOPInstanceUID),
        ),
        state.cache,
    )
    if outcome.result is not Result.STORED:
        log.warning(
            "store_failed",
            result=outcome.result.value,
            reason=outcome.reason,
            study_uid=outcome.study_uid,
            sop_instance_uid=request.AffectedSOPInstanceUID,
        )
    return Reply(STATUS[outcome.result], outcome.reason, outcome.afterwards)


def event_handlers(
    intake: Intake,
    associations: Associations,
    receivers: Callable[[], Mapping[str, Receiver]],
    metrics: Metrics,
) -> list[tuple]:
    """The handler table one listening port is started with."""
    return [
        (evt.EVT_REQUESTED, handle_requested, [receivers, metrics]),
        (evt.EVT_ACCEPTED, handle_established, [receivers, associations]),
        (evt.EVT_RELEASED, handle_released, [associations]),
        (evt.EVT_PDU_RECV, handle_pdu_received, [associations]),
        (evt.EVT_ABORTED, handle_aborted, [associations]),
        (evt.EVT_CONN_CLOSE, handle_closed, [associations, metrics]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [intake, associations]),
    ]
