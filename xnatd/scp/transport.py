"""What xnatd changes under pynetdicom, in one place, each installed by scp/server.py:

- the accepted socket re-arms TCP_QUICKACK (senders that leave Nagle on);
- the DUL reactor waits on its socket and a doorbell instead of a 1 ms poll;
- the association reactor wakes when a DIMSE message is queued, not after 1 ms;
- data sets past 16 MiB spill to the node's spool folder as they arrive;
- a request's invalid UID is decoded as sent, so that request alone fails.

Most modalities (and stock DCMTK) send with Nagle on: the last small segment of a PDU
waits until the previous one is acknowledged, and Linux delays that ACK by up to 40 ms
- about 20 instances a second, whatever the hardware. Re-arming TCP_QUICKACK before
every read makes the kernel acknowledge at once (it clears the flag after each ACK).
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pynetdicom.association as association_module
import pynetdicom.dimse_messages as dimse_module
import pynetdicom.dimse_primitives as dimse_primitives
import pynetdicom.dul as dul_module
from pynetdicom.dul import DULServiceProvider

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class QuickAckSocket:
    """An accepted socket whose every ``recv`` acknowledges immediately."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # Our own small responses (C-STORE-RSP) must not wait either.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv(self, size: int, *flags: int) -> bytes:
        if _QUICKACK is not None:
            with contextlib.suppress(OSError):  # a closed socket: recv reports it
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return self._sock.recv(size, *flags)

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


class _WakeableClock:
    """Stands in for the ``time`` module inside ``pynetdicom.dul``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

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
# message off its queue. A C-STORE that the DUL finished decoding waits out the rest
# of that sleep before its handler runs. The shim makes the sleep a wait on the
# queue: it ends the moment a message is put there, and lasts the full 1 ms (release
# and abort checks keep their pace) when none is.
class _ReactorClock:
    """Stands in for the ``time`` module inside ``pynetdicom.association``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        messages = getattr(getattr(threading.current_thread(), "dimse", None), "msg_queue", None)
        if not isinstance(messages, queue.Queue):
            time.sleep(seconds)
            return
        with messages.not_empty:  # the queue's own lock: qsize() here would deadlock
            if not messages.queue:
                messages.not_empty.wait(seconds)


def wake_association_on_message() -> None:
    """Install the shim (idempotent; affects Association threads only)."""
    association_module.time = _ReactorClock()


# -- large data sets go to disk as they arrive ----------------------------------------
class SpillingBuffer(io.BytesIO):
    """pynetdicom's buffer for an incoming data set, which moves to a file in the spool
    folder once it grows past ``limit``: small objects stay in memory (no file to
    create and remove per instance), a 2 GB object never is. Installed as the
    ``BytesIO`` of ``pynetdicom.dimse_messages``; spills only once ``folder`` is set."""

    folder: Path | None = None
    limit = 16 * 2**20

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.spill: BinaryIO | None = None
        self.spill_path: Path | None = None

    def write(self, data: Any) -> int:
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
    SpillingBuffer.folder = folder
    dimse_module.BytesIO = SpillingBuffer


# -- one bad request, not the whole association ---------------------------------------
def tolerate_bad_uids() -> None:
    """Decode a request's UIDs as sent, even when they break the rules.

    pynetdicom refuses a UID that is not valid (longer than 64 characters, say) while
    it decodes a request; the exception ends in an A-ABORT and the rest of the send is
    lost. Decoded as sent, the request reaches our C-STORE handler, which answers that
    one request with an error status (as DCMTK and Orthanc do) and the association
    carries on.
    """
    if getattr(dimse_primitives.set_uid, "_xnatd_lenient", False):
        return
    strict = dimse_primitives.set_uid

    def lenient(
        value: Any,
        name: str,
        allow_empty: bool = True,
        allow_none: bool = True,
        validate: bool = True,
    ) -> Any:
        try:
            return strict(value, name, allow_empty, allow_none, validate)
        except ValueError:
            return strict(value, name, allow_empty, allow_none, validate=False)

    lenient._xnatd_lenient = True  # type: ignore[attr-defined]
    dimse_primitives.set_uid = lenient
