"""The accepted socket: it re-arms TCP_QUICKACK for senders that leave Nagle on.

(What xnatd changes inside pynetdicom itself is all in scp/hooks.py.)

Most modalities (and stock DCMTK) send with Nagle on: the last small segment of a PDU
waits until the previous one is acknowledged, and Linux delays that ACK by up to 40 ms
- about 20 instances a second, whatever the hardware. Re-arming TCP_QUICKACK before
every read makes the kernel acknowledge at once (it clears the flag after each ACK).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

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
        """Send; the next read re-arms TCP_QUICKACK."""
        self._armed = False
        return self._sock.send(data, *flags)

    def sendall(self, data: Any, *flags: int) -> None:
        """Send all of data; the next read re-arms TCP_QUICKACK."""
        self._armed = False
        self._sock.sendall(data, *flags)

    def recv(self, size: int, *flags: int) -> bytes:
        """Read, acknowledging at once."""
        self._acknowledge_at_once()
        return self._sock.recv(size, *flags)

    def recv_into(self, buffer: Any, size: int = 0, *flags: int) -> int:
        """Read into buffer, acknowledging at once."""
        self._acknowledge_at_once()
        return self._sock.recv_into(buffer, size, *flags)

    def peek(self) -> int | None:
        """The type of the next PDU, left unread; None once the connection is gone."""
        with contextlib.suppress(OSError):
            peeked = self.recv(1, socket.MSG_PEEK)
            return peeked[0] if peeked else None
        return None

    def arrived(self) -> int | None:
        """The type of the next PDU if its first byte is here already, left unread;
        None if nothing has arrived (never waits) or the connection is gone."""
        try:
            peeked = self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:  # BlockingIOError: not yet; anything else, the reactor sees
            return None
        return peeked[0] if peeked else None

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
