"""What xnatd changes under pynetdicom, in one place, each installed by scp/server.py:

- the accepted socket re-arms TCP_QUICKACK (senders that leave Nagle on);
- the DUL reactor waits on its socket and a doorbell instead of a 1 ms poll;
- the association reactor idles on its queues instead of a 1 ms poll.

The data phase itself (P-DATA, C-STORE, C-ECHO) is xnatd's own: dataphase.py.

Most modalities (and stock DCMTK) send with Nagle on: the last small segment of a PDU
waits until the previous one is acknowledged, and Linux delays that ACK by up to 40 ms
- about 20 instances a second, whatever the hardware. Re-arming TCP_QUICKACK before
every read makes the kernel acknowledge at once (it clears the flag after each ACK).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pynetdicom.association as association_module
import pynetdicom.dul as dul_module
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class QuickAckSocket:
    """An accepted socket that acknowledges what it receives immediately.

    Linux delays ACKs while a connection is in "pingpong" (interactive) mode, which
    it enters when we send soon after receiving: after every C-STORE-RSP. Setting
    TCP_QUICKACK leaves that mode, and nothing but our next send enters it again, so
    the flag is re-armed before the first read after each send, not before every
    read (a setsockopt holds the GIL: eight a C-STORE were an eighth of the reading
    thread's Python time).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._armed = False
        # Our own small responses (C-STORE-RSP) must not wait either.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _acknowledge_at_once(self) -> None:
        if _QUICKACK is not None and not self._armed:
            with contextlib.suppress(OSError):  # a closed socket: the read reports it
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                self._armed = True

    def send(self, data: Any, *flags: int) -> int:
        self._armed = False
        return self._sock.send(data, *flags)

    def sendall(self, data: Any, *flags: int) -> None:
        self._armed = False
        self._sock.sendall(data, *flags)

    def recv(self, size: int, *flags: int) -> bytes:
        self._acknowledge_at_once()
        return self._sock.recv(size, *flags)

    def recv_into(self, buffer: Any, size: int = 0, *flags: int) -> int:
        self._acknowledge_at_once()
        return self._sock.recv_into(buffer, size, *flags)

    def peek(self) -> int | None:
        """The type of the next PDU, left unread; None once the connection is gone."""
        with contextlib.suppress(OSError):
            peeked = self.recv(1, socket.MSG_PEEK)
            return peeked[0] if peeked else None
        return None

    def pending(self) -> int:
        """Bytes received but held above the kernel (none here; TLS holds some)."""
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def quick_ack_requests(server: Any, place: Callable[[socket.socket], bool] | None = None) -> None:
    """Make a pynetdicom AssociationServer hand out QuickAckSockets.

    ``place`` may take the accepted socket elsewhere (another process) and say so; the
    server then skips it (socketserver ignores an OSError from ``get_request``).
    """
    original = server.get_request

    def get_request() -> tuple[QuickAckSocket, Any]:
        client, address = original()
        if place is not None and place(client):
            raise OSError("connection handed to another receiving process")
        return QuickAckSocket(client), address

    server.get_request = get_request


# -- the DUL reactor's idle wait -------------------------------------------------------
# pynetdicom's DUL thread polls: when nothing happened it sleeps 1 ms, then looks at
# the socket and at the PDUs the association queued. Each instance waits out that
# sleep twice (to see the request, then to send the response): about 2 ms of a
# 3-7 ms instance. The shim below replaces the sleep, for DUL threads only, with a
# select() on the socket and on a doorbell that ``send_pdu`` rings, so the reactor
# wakes the moment there is something to do and still sleeps when there is not.
IDLE_WAIT = 0.02  # the longest a quiet reactor sleeps; its timers count in seconds


class _TimeModule:
    """Stands in for the ``time`` module inside a pynetdicom module; only ``sleep``
    differs, and only on the threads a subclass knows."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _WakeableClock(_TimeModule):
    """``time`` inside ``pynetdicom.dul``."""

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


def wake_dul_on_io() -> None:
    """Install the shim (idempotent; affects pynetdicom's DUL threads only)."""
    if getattr(DULServiceProvider, "_xnatd_wakeable", False):
        return
    send_pdu, run_reactor = DULServiceProvider.send_pdu, DULServiceProvider.run_reactor

    def ringing_send_pdu(self: DULServiceProvider, primitive: Any) -> None:
        send_pdu(self, primitive)
        _ring(self)

    def closing_run_reactor(self: DULServiceProvider) -> None:
        try:
            run_reactor(self)
        finally:
            _close_bell(self)

    DULServiceProvider.send_pdu = ringing_send_pdu
    DULServiceProvider.run_reactor = closing_run_reactor
    DULServiceProvider._xnatd_wakeable = True
    dul_module.time = _WakeableClock()


# -- the association reactor's idle wait ---------------------------------------------
# The association thread polls too: it sleeps 1 ms, then takes the next decoded DIMSE
# message off its queue and looks for a release or abort from the peer. With the data
# phase read natively (dataphase.py) an acceptor's queue stays empty, so that poll
# would only burn a thousand wake-ups a second per association, each taking the GIL
# from the thread that receives. The shim makes the sleep a wait on the DIMSE queue,
# rung also when the DUL hands the association a primitive (a release or abort
# request) and when a thread asks the reactor to pause: it ends the moment there is
# something to do, and lasts IDLE_WAIT when there is not.
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


def wake_association_on_message() -> None:
    """Install the shim (idempotent; affects Association threads only)."""
    association_module.time = _ReactorClock()
    if getattr(Association, "_xnatd_belled", False):
        return
    init = Association.__init__

    def belled_init(self: Association, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bell = _ReactorBell(self.dimse.msg_queue)
        primitives = self.dul.to_user_queue
        put = primitives.put

        def ringing_put(item: Any, *put_args: Any, **put_kwargs: Any) -> None:
            put(item, *put_args, **put_kwargs)
            bell.ring()

        primitives.put = ringing_put  # type: ignore[method-assign]
        self._reactor_checkpoint = _Checkpoint(self, bell)
        self._reactor_checkpoint.set()
        self.__dict__["_xnatd_bell"] = bell

    Association.__init__ = belled_init  # type: ignore[method-assign]
    Association._xnatd_belled = True  # type: ignore[attr-defined]
