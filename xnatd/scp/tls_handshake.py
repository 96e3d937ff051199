"""DICOM over TLS on a receiver's port (SPEC 10.4), hooked into its pynetdicom server.

pynetdicom's own ``ssl_context`` does the handshake in ``get_request``, on the thread
that accepts every connection of the port (one slow or hostile peer would hold up
every other), and in the main process, before the connection may be handed to a
worker. Here the handshake runs on the connection's own thread, in the process that
serves the association (after the hand-off), with the context of the receivers
listening on the port at that moment: a SIGHUP that loads new certificates applies to
the next connection. A peer that fails the handshake (no certificate, one another CA
signed, TLS below 1.2, plain DICOM) is logged and closed; no association exists yet.

After the handshake the connection stays a ``QuickAckSocket`` (the Nagle fix works on
the TCP socket under the TLS layer); what differs is that bytes may wait decrypted
inside the TLS layer, where ``select`` cannot see them (``pending``), and that the
data phase cannot peek at the next PDU type with MSG_PEEK: the byte is read and
handed back by the next read instead.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from xnatd.scp.transport import QuickAckSocket
from xnatd.tls import peer_subject

log = structlog.get_logger(__name__)

HANDSHAKE_TIMEOUT = 30.0  # a peer that stalls the handshake holds only its own thread


class TLSQuickAckSocket(QuickAckSocket):
    """A QuickAckSocket over an established TLS connection."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        super().__init__(sock)
        self._tls = sock
        self._held = b""  # read by ``peek``, given back by the next read

    def peek(self) -> int | None:
        if not self._held:
            with contextlib.suppress(OSError):
                self._held = super().recv(1)
        return self._held[0] if self._held else None

    def arrived(self) -> int | None:
        # Only what TLS has decrypted already: a record still in the kernel may be
        # partial, and reading it would wait.
        return self.peek() if self.pending() else None

    def pending(self) -> int:
        return len(self._held) + self._tls.pending()

    def recv(self, size: int, *flags: int) -> bytes:
        """Read, the byte ``peek`` held back first."""
        if self._held:
            data, self._held = self._held[:size], self._held[size:]
            return data
        return super().recv(size)

    def recv_into(self, buffer: Any, size: int = 0, *flags: int) -> int:
        """Read into buffer, the byte ``peek`` held back first."""
        size = size or len(buffer)
        if self._held:
            count = min(size, len(self._held))
            buffer[:count] = self._held[:count]
            self._held = self._held[count:]
            return count
        return super().recv_into(buffer, size)


def _handshake(
    client: QuickAckSocket, context: ssl.SSLContext, address: Any
) -> TLSQuickAckSocket | None:
    """The server side of the handshake on an accepted connection, or None (closed)."""
    raw: socket.socket = client._sock
    timeout = raw.gettimeout()
    raw.settimeout(HANDSHAKE_TIMEOUT)
    try:
        secured = context.wrap_socket(raw, server_side=True)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        log.warning("tls_refused", peer=_peer(address), reason=str(reason))
        with contextlib.suppress(OSError):
            raw.close()
        return None
    secured.settimeout(timeout)
    log.info(
        "tls_established",
        peer=_peer(address),
        version=secured.version(),
        certificate=peer_subject(secured),
    )
    return TLSQuickAckSocket(secured)


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def handshake_before_serving(
    server: Any,
    context: Callable[[], ssl.SSLContext | None],
    refused: Callable[[], None] | None = None,
) -> None:
    """Make a pynetdicom AssociationServer secure each connection with ``context()``
    (None: plain DICOM) on the connection's thread before the association starts;
    ``refused`` is called for a connection that failed its handshake (it never opens
    an association, so no EVT_CONN_CLOSE will count it closed)."""
    finish_request = server.finish_request

    def secured_finish_request(request: Any, client_address: Any) -> None:
        current = context()
        if current is not None and isinstance(request, QuickAckSocket):
            request = _handshake(request, current, client_address)
            if request is None:
                if refused is not None:
                    refused()
                return
        finish_request(request, client_address)

    server.finish_request = secured_finish_request


def port_context(receivers: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The TLS context of a port's receivers (they share one: the handshake comes
    before the called AE title is known), or None for plain DICOM."""
    for receiver in receivers.values():
        if receiver.tls is not None:
            return receiver.tls.context
    return None
