"""The accepted socket, tuned for senders that leave Nagle's algorithm on.

Most modalities (and stock DCMTK) send with Nagle on: the last small segment of a PDU
waits until the previous one is acknowledged, and Linux delays that ACK by up to 40 ms
- about 20 instances a second, whatever the hardware. Re-arming TCP_QUICKACK before
every read makes the kernel acknowledge at once (it clears the flag after each ACK).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

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


def quick_ack_requests(server: Any) -> None:
    """Make a pynetdicom AssociationServer hand out QuickAckSockets."""
    original = server.get_request

    def get_request() -> tuple[QuickAckSocket, Any]:
        client, address = original()
        return QuickAckSocket(client), address

    server.get_request = get_request
