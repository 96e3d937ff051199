"""Every change xnatd makes inside pynetdicom, checked and installed by one call.

pynetdicom negotiates, releases and aborts xnatd's associations; xnatd reads the data
phase itself (``scp/dataphase.py``). Four things still have to reach inside it, and
they all live here, installed by :func:`install` (the daemon calls it at start, ``xnatd
send`` before its first association) and undone by :func:`uninstall` (tests):

- **negotiation**: storage contexts are accepted by intake's rule
  (``scp/negotiation.py``), through pynetdicom's unrestricted-storage hook;
- **the data phase**: an established acceptor's P-DATA-TF PDUs go to
  ``scp/dataphase.py`` instead of pynetdicom's decoder;
- **the DUL reactor's idle wait**: a ``select`` on the socket and a doorbell instead of
  a 1 ms poll (each instance waited out that sleep twice, about 2 ms of 3-7 ms);
- **the association reactor's idle wait**: a wait on its DIMSE queue instead of a 1 ms
  poll, with a race-free pause (pynetdicom's lets an SCU lose a response);
- **TLS**: pynetdicom's readiness check sees bytes decrypted and held in the TLS layer.

Each hook depends on a private detail of pynetdicom. :data:`TESTED` bounds the versions
these were written against; :func:`shape_problems` checks the details themselves, so
that a pynetdicom that moved them is refused at start with a message, not half-hooked.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import pynetdicom
import pynetdicom.acse as acse_module
import pynetdicom.association as association_module
import pynetdicom.dimse as dimse_module
import pynetdicom.dul as dul_module
import structlog
from pynetdicom import _config
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket

from xnatd.scp.dataphase import P_DATA_TF, ConnectionLost, DataPhase, ProtocolViolation
from xnatd.scp.dimse import MalformedCommand
from xnatd.scp.negotiation import negotiate
from xnatd.scp.tls_handshake import TLSQuickAckSocket
from xnatd.scp.transport import QuickAckSocket

log = structlog.get_logger(__name__)

TESTED = ((3, 0, 4), (3, 1))
"""pynetdicom versions these hooks were written and tested against: from, and below."""

IDLE_WAIT = 0.02  # the longest a quiet reactor sleeps; its timers count in seconds


class UnsupportedPynetdicom(RuntimeError):
    """The installed pynetdicom is not one these hooks fit; the message says why."""


# -- what the hooks rely on ----------------------------------------------------------
def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def version_problem(version: str | None = None) -> str | None:
    """Why this pynetdicom version is not supported, or None when it is tested."""
    version = version or pynetdicom.__version__
    low, high = TESTED
    if low <= _version(version) < high:
        return None
    return (
        f"pynetdicom {version} is installed; xnatd is tested with pynetdicom >= "
        f"{'.'.join(map(str, low))}, < {'.'.join(map(str, high))} "
        "(pip install -c constraints.txt .)"
    )


def _mentions(obj: Any, *markers: str) -> bool:
    """Whether ``obj``'s source holds every marker. An install without sources (only
    bytecode) cannot be read: the version range and the signatures vouch for it then,
    rather than refusing a pynetdicom that may well fit."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return True
    return all(marker in source for marker in markers)


def _parameters(function: Any) -> list[str]:
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return []


def shape_problems() -> list[str]:
    """The private details of pynetdicom the hooks use that are missing or changed."""
    dul, assoc = DULServiceProvider, Association
    checks: list[tuple[bool, str]] = [
        # negotiation: ACSE calls the module-level function when storage is unrestricted
        (
            callable(getattr(acse_module, "negotiate_unrestricted", None))
            and _mentions(acse_module.ACSE, "negotiate_unrestricted("),
            "pynetdicom.acse.negotiate_unrestricted is not what ACSE calls",
        ),
        (
            hasattr(_config, "UNRESTRICTED_STORAGE_SERVICE")
            and hasattr(_config, "LOG_REQUEST_IDENTIFIERS"),
            "pynetdicom._config lacks UNRESTRICTED_STORAGE_SERVICE or LOG_REQUEST_IDENTIFIERS",
        ),
        # the data phase and the DUL's idle wait
        (
            _parameters(getattr(dul, "_read_pdu_data", None)) == ["self"]
            and _mentions(dul, "_read_pdu_data()"),
            "DULServiceProvider._read_pdu_data(self) is gone or no longer called",
        ),
        (
            _parameters(getattr(dul, "send_pdu", None)) == ["self", "primitive"],
            "DULServiceProvider.send_pdu(self, primitive) changed",
        ),
        (
            _parameters(getattr(dul, "run_reactor", None)) == ["self"]
            and _mentions(dul.run_reactor, "time.sleep(")
            and getattr(dul_module, "time", None) is not None,
            "DULServiceProvider.run_reactor no longer idles with time.sleep",
        ),
        (
            _mentions(dul.__init__, "event_queue", "to_user_queue"),
            "DULServiceProvider has no event_queue / to_user_queue",
        ),
        # the association's idle wait and its pause
        (
            _mentions(assoc._run_reactor, "time.sleep(")
            and getattr(association_module, "time", None) is not None,
            "Association._run_reactor no longer idles with time.sleep",
        ),
        (
            _mentions(assoc, "_reactor_checkpoint", "_is_paused", "_kill"),
            "Association has no _reactor_checkpoint / _is_paused / _kill",
        ),
        (
            _mentions(dimse_module.DIMSEServiceProvider.__init__, "msg_queue"),
            "DIMSEServiceProvider has no msg_queue",
        ),
        # TLS readiness
        (
            isinstance(inspect.getattr_static(AssociationSocket, "ready", None), property)
            and _mentions(AssociationSocket, "_is_connected"),
            "AssociationSocket.ready is not a property over _is_connected",
        ),
        (
            isinstance(getattr(threading.Event(), "_cond", None), threading.Condition),
            "threading.Event has no _cond (the association pause builds on it)",
        ),
    ]
    return [problem for fits, problem in checks if not fits]


# -- install and undo ----------------------------------------------------------------
_installed: list[tuple[Any, str, Any]] = []  # (owner, attribute, original) in order


def _replace(owner: Any, name: str, value: Any) -> None:
    _installed.append((owner, name, owner.__dict__.get(name, getattr(owner, name))))
    setattr(owner, name, value)


def installed() -> bool:
    """Whether :func:`install` has run (and not been undone)."""
    return bool(_installed)


def install() -> None:
    """Check pynetdicom and install every hook (idempotent).

    Raises:
        UnsupportedPynetdicom: an untested version, or one whose internals moved.
    """
    if _installed:
        return
    problem = version_problem()
    if problem is None:
        shape = shape_problems()
        problem = (
            f"pynetdicom {pynetdicom.__version__} does not fit xnatd's hooks: " + "; ".join(shape)
            if shape
            else None
        )
    if problem is not None:
        raise UnsupportedPynetdicom(problem)
    # Accept every storage SOP class, private ones included, by intake's rule.
    _replace(_config, "UNRESTRICTED_STORAGE_SERVICE", True)
    _replace(acse_module, "negotiate_unrestricted", negotiate)
    # pynetdicom logs every C-STORE at INFO with its identifiers; our own events say enough.
    _replace(_config, "LOG_REQUEST_IDENTIFIERS", False)
    _hook_dul()
    _hook_association()
    _hook_tls_readiness()
    log.debug("pynetdicom_hooked", version=pynetdicom.__version__)


def uninstall() -> None:
    """Put back everything :func:`install` replaced (tests; threads started since keep
    what they saw)."""
    while _installed:
        owner, name, original = _installed.pop()
        setattr(owner, name, original)


# -- the DUL: data phase, doorbell, idle wait ---------------------------------------
class _TimeModule:
    """Stands in for the ``time`` module inside a pynetdicom module; only ``sleep``
    differs, and only on the threads a subclass knows."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _WakeableClock(_TimeModule):
    """``time`` inside ``pynetdicom.dul``: a DUL thread's sleep is a select on its socket
    and its doorbell, ended the moment there is something to read or send."""

    def sleep(self, seconds: float) -> None:
        provider = threading.current_thread()
        connection = getattr(getattr(provider, "socket", None), "socket", None)
        if not isinstance(provider, DULServiceProvider) or connection is None:
            time.sleep(seconds)
            return
        bell = provider.__dict__.get("_xnatd_bell")
        if bell is None:
            bell = provider.__dict__["_xnatd_bell"] = os.pipe()
            os.set_blocking(bell[0], False)
            os.set_blocking(bell[1], False)
        pending = getattr(connection, "pending", None)
        if pending is not None and pending():  # decrypted by TLS already: select cannot see it
            return
        try:
            ready, _, _ = select.select([connection, bell[0]], [], [], IDLE_WAIT)
        except (OSError, ValueError):  # closed under us: the reactor finds out itself
            return
        if bell[0] in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(bell[0], 4096)


def _ring(provider: DULServiceProvider) -> None:
    bell = provider.__dict__.get("_xnatd_bell")
    if bell is not None:
        with contextlib.suppress(OSError):  # full pipe: it is ringing already
            os.write(bell[1], b"\0")


def _close_bell(provider: DULServiceProvider) -> None:
    bell = provider.__dict__.pop("_xnatd_bell", None)
    for fd in bell or ():
        with contextlib.suppress(OSError):
            os.close(fd)


def _hook_dul() -> None:
    send_pdu = DULServiceProvider.send_pdu
    run_reactor = DULServiceProvider.run_reactor
    read_pdu_data = DULServiceProvider._read_pdu_data

    def ringing_send_pdu(self: DULServiceProvider, primitive: Any) -> None:
        send_pdu(self, primitive)
        _ring(self)

    def native_read_pdu_data(self: DULServiceProvider) -> None:
        # Only xnatd's listeners (QuickAckSocket), only once established, only P-DATA.
        sock = getattr(self.socket, "socket", None)
        if (
            not isinstance(sock, QuickAckSocket)
            or self.state_machine.current_state != "Sta6"
            or sock.peek() != P_DATA_TF
        ):
            read_pdu_data(self)
            return
        phase = self.__dict__.get("_xnatd_phase")
        if phase is None:
            phase = self.__dict__["_xnatd_phase"] = DataPhase(self)
        try:
            phase.read_pdu()
        except (OSError, ConnectionLost):
            self.event_queue.put("Evt17")  # transport closed, as pynetdicom reports it
        except (ProtocolViolation, MalformedCommand) as exc:
            log.warning("association_aborted", reason=f"protocol error: {exc}")
            raise  # pynetdicom's reactor sends an A-ABORT and stops

    def finishing_run_reactor(self: DULServiceProvider) -> None:
        try:
            run_reactor(self)
        finally:
            _close_bell(self)
            phase = self.__dict__.pop("_xnatd_phase", None)
            if phase is not None:
                phase.close()

    _replace(DULServiceProvider, "send_pdu", ringing_send_pdu)
    _replace(DULServiceProvider, "_read_pdu_data", native_read_pdu_data)
    _replace(DULServiceProvider, "run_reactor", finishing_run_reactor)
    _replace(dul_module, "time", _WakeableClock())


# -- the association reactor: idle wait and pause ------------------------------------
# With the data phase read natively an acceptor's DIMSE queue stays empty, so the
# reactor's 1 ms poll would only burn a thousand wake-ups a second per association,
# each taking the GIL from the thread that receives. Its sleep becomes a wait on the
# DIMSE queue, rung also when the DUL hands it a primitive (release, abort) and when a
# thread asks the reactor to pause.
class _ReactorBell:
    """What wakes one association's reactor besides a DIMSE message."""

    def __init__(self, messages: queue.Queue) -> None:
        self.messages = messages
        self.rung = self.seen = 0

    def ring(self) -> None:
        with self.messages.not_empty:
            self.rung += 1
            self.messages.not_empty.notify_all()


class _Checkpoint(threading.Event):
    """pynetdicom's reactor checkpoint, made safe to pause on.

    A thread about to use the association (``send_c_store``, ``release``) clears the
    checkpoint, then waits until the reactor says ``_is_paused``. pynetdicom sets that
    flag just before its wait and resets it just after, so a clear() landing between a
    wait that returned and the reset saw a stale True: the thread sent its request
    while the reactor went on to take the response ("Received unexpected C-STORE
    service message", then a DIMSE timeout). Here a wait about to block sets the flag
    under the checkpoint's own lock, and clear() forgets it and rings the reactor so
    that it gets to that wait at once. Once the association is killed there is no
    reactor to pause: the True that kill() leaves must stand, or the thread spins on.
    """

    # threading.Event's own state, used under its own lock (shape_problems checks it).
    _cond: threading.Condition
    _flag: bool

    def __init__(self, assoc: Association, bell: _ReactorBell) -> None:
        super().__init__()
        self._assoc = assoc
        self._bell = bell

    def clear(self) -> None:
        with self._cond:
            was_set, self._flag = self._flag, False
            if was_set and not self._assoc._kill:
                self._assoc._is_paused = False
        if was_set:
            self._bell.ring()

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            if not self._flag:
                self._assoc._is_paused = True  # blocked from here until set()
                self._cond.wait(timeout)
            return self._flag


class _ReactorClock(_TimeModule):
    """``time`` inside ``pynetdicom.association``."""

    def sleep(self, seconds: float) -> None:
        bell = threading.current_thread().__dict__.get("_xnatd_bell")
        if bell is None:  # not an association's reactor
            time.sleep(seconds)
            return
        messages = bell.messages
        with messages.not_empty:  # the queue's own lock: qsize() here would deadlock
            if not messages.queue and bell.rung == bell.seen:
                messages.not_empty.wait(IDLE_WAIT)
            bell.seen = bell.rung  # rung since the last look: look again now
            if messages.queue:
                # put() wakes one waiter. An SCU's own thread may be waiting in get()
                # for this very response: pass the wake-up on, or that thread sleeps
                # out its whole DIMSE timeout.
                messages.not_empty.notify()


def _hook_association() -> None:
    init = Association.__init__

    def belled_init(self: Association, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bell = _ReactorBell(self.dimse.msg_queue)
        primitives = self.dul.to_user_queue
        put: Callable[..., None] = primitives.put

        def ringing_put(item: Any, *put_args: Any, **put_kwargs: Any) -> None:
            put(item, *put_args, **put_kwargs)
            bell.ring()

        primitives.put = ringing_put  # type: ignore[method-assign]
        self._reactor_checkpoint = _Checkpoint(self, bell)
        self._reactor_checkpoint.set()
        self.__dict__["_xnatd_bell"] = bell

    _replace(Association, "__init__", belled_init)
    _replace(association_module, "time", _ReactorClock())


# -- TLS ----------------------------------------------------------------------------
def _hook_tls_readiness() -> None:
    ready = AssociationSocket.ready

    def ready_or_held(self: AssociationSocket) -> bool:
        sock = self.socket
        if isinstance(sock, TLSQuickAckSocket) and self._is_connected and sock.pending():
            return True
        return bool(ready.fget(self))  # type: ignore[attr-defined]

    _replace(AssociationSocket, "ready", property(ready_or_held))
