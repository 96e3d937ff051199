"""Listening sockets: one pynetdicom AE per (host, port), several AE titles on each.

The called AE title picks the receiver (its allow-list, routing and default project)
in the EVT_REQUESTED handler, so AE titles sharing a port are told apart there.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import
from pynetdicom.transport import AssociationServer, ThreadedAssociationServer

from xnatd.config import Receiver
from xnatd.scp.commitment import STORAGE_COMMITMENT
from xnatd.scp.guard import ConnectionGuard
from xnatd.scp.handoff import Load
from xnatd.scp.tls_handshake import handshake_before_serving, port_context
from xnatd.scp.transport import QuickAckSocket, quick_ack_requests

log = structlog.get_logger(__name__)

MAX_ASSOCIATIONS = 64
NETWORK_TIMEOUT = 60.0


class ListeningServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a deeper accept queue: socketserver's five let
    a burst of connections (many senders, or an attack) drop new SYNs, each costing
    its sender a retransmission of a second or more."""

    request_queue_size = 512


class HandoffServer(ListeningServer):
    """A worker's server for one receiver port: it serves the connections the main
    process hands over (``xnatd.scp.handoff``) and listens on no real port itself
    (an unused loopback port, as socketserver wants a socket)."""

    def server_bind(self) -> None:
        """Bind an unused loopback port, keeping the configured address as the one reported."""
        configured = self.server_address
        self.server_address = ("127.0.0.1", 0)
        super().server_bind()
        self.server_address = configured  # what pynetdicom reports as the local address


@dataclass(frozen=True)
class Endpoint:
    """The address and port a receiver listens on; receivers that share one share a server."""

    host: str
    port: int


def endpoints(receivers: tuple[Receiver, ...]) -> dict[Endpoint, dict[str, Receiver]]:
    """Receivers grouped by the socket they listen on, keyed by AE title."""
    grouped: dict[Endpoint, dict[str, Receiver]] = {}
    for receiver in receivers:
        grouped.setdefault(Endpoint(receiver.host, receiver.port), {})[receiver.ae_title] = receiver
    return grouped


class Listeners:
    """Starts, stops and re-targets the listening sockets as the configuration changes."""

    def __init__(
        self,
        handlers: Callable[[Callable[[], Mapping[str, Receiver]]], list],
        *,
        load: Load | None = None,
        place: Callable[[socket.socket, str, int], bool] | None = None,
        handed_only: bool = False,
        guard: ConnectionGuard | None = None,
    ) -> None:
        """``load`` counts open associations; ``place`` may send an accepted connection to
        a worker; ``handed_only``: a worker's servers, fed through ``serve``; ``guard``
        admits each connection this process runs an association on."""
        self._handlers = handlers
        self._load = load
        self._place = place
        self._guard = guard
        self._server_class = HandoffServer if handed_only else ListeningServer
        self._servers: dict[Endpoint, AssociationServer] = {}
        self._receivers: dict[Endpoint, dict[str, Receiver]] = {}
        self.failed: dict[Endpoint, str] = {}

    def apply(self, receivers: tuple[Receiver, ...]) -> None:
        """Make the sockets match the receivers; a port that cannot bind is logged, not fatal."""
        wanted = endpoints(receivers)
        for endpoint in list(self._servers):
            if endpoint not in wanted:
                self._stop(endpoint)
        for endpoint, by_title in wanted.items():
            # Same socket, new titles or rules: swap the table, keep open associations.
            self._receivers[endpoint] = by_title
            if endpoint not in self._servers:
                self._start(endpoint)
        for endpoint in list(self._receivers):
            if endpoint not in wanted:
                del self._receivers[endpoint]

    def _start(self, endpoint: Endpoint) -> None:
        ae = AE(ae_title=next(iter(self._receivers[endpoint])))
        ae.require_called_aet = False  # checked per receiver in EVT_REQUESTED
        ae.add_supported_context(Verification)
        if any(r.storage_commitment != "off" for r in self._receivers[endpoint].values()):
            ae.add_supported_context(
                STORAGE_COMMITMENT, [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
            )
        # The guard's associations.max_open is the limit; pynetdicom's own (which counts
        # threads, and refuses without a word) only backs it up.
        ae.maximum_associations = MAX_ASSOCIATIONS
        if self._guard is not None:
            ae.maximum_associations = max(MAX_ASSOCIATIONS, 2 * self._guard.settings.max_open)
        ae.maximum_pdu_size = 0  # unlimited: fewer, larger P-DATA reads
        ae.network_timeout = NETWORK_TIMEOUT
        ae.acse_timeout = 30
        ae.dimse_timeout = NETWORK_TIMEOUT

        def current() -> Mapping[str, Receiver]:
            return self._receivers.get(endpoint, {})

        handlers = self._handlers(current)
        if self._load is not None:
            handlers.append((evt.EVT_CONN_CLOSE, self._load.closed))
        if self._guard is not None:
            handlers.extend(self._guard.handlers())
        try:
            server = ae.make_server(
                (endpoint.host, endpoint.port),
                evt_handlers=handlers,
                server_class=self._server_class,
            )
        except OSError as exc:
            self.failed[endpoint] = str(exc)
            log.error(
                "receiver_not_started",
                host=endpoint.host,
                port=endpoint.port,
                ae_titles=sorted(current()),
                reason=exc.strerror or str(exc),
            )
            return
        place = self._place
        quick_ack_requests(
            server, None if place is None else lambda c: place(c, endpoint.host, endpoint.port)
        )
        if self._guard is not None:
            self._guard.install(server, self._load.closed if self._load is not None else None)
        handshake_before_serving(
            server, lambda: port_context(current()), self._load.closed if self._load else None
        )
        ae._servers.append(server)  # as start_server does: server.shutdown() removes it
        name = f"listener@{endpoint.host}:{endpoint.port}"
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
        self.failed.pop(endpoint, None)
        self._servers[endpoint] = server
        log.info(
            "receiver_started", host=endpoint.host, port=endpoint.port, ae_titles=sorted(current())
        )

    def serve(self, client: socket.socket, host: str, port: int) -> bool:
        """Run an association on a connection accepted elsewhere (a worker's share);
        False when no receiver listens on that port here (the caller closes it)."""
        server = self._servers.get(Endpoint(host, port))
        if server is None:
            return False
        try:
            address = client.getpeername()
        except OSError:  # the caller already hung up
            return False
        # socketserver hands the request object to the handler as it is.
        server.process_request(QuickAckSocket(client), address)  # type: ignore[arg-type]
        return True

    def _stop(self, endpoint: Endpoint) -> None:
        server = self._servers.pop(endpoint)
        server.shutdown()
        log.info("receiver_stopped", host=endpoint.host, port=endpoint.port)

    def stop_accepting(self) -> list[AssociationServer]:
        """Close every listening socket; associations already open carry on.

        Returns the stopped servers, whose open associations can still be counted.
        """
        stopped = list(self._servers.values())
        for endpoint in list(self._servers):
            self._stop(endpoint)
        return stopped
