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
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification
from pynetdicom.transport import AssociationServer, ThreadedAssociationServer

from xnatd.config import Receiver
from xnatd.scp.transport import (
    quick_ack_requests,
    tolerate_bad_uids,
    wake_association_on_message,
    wake_dul_on_io,
)

log = structlog.get_logger(__name__)

# Accept every storage SOP class, private ones included, in the transfer syntax the
# sender proposes first: files are kept as sent, never transcoded.
_config.UNRESTRICTED_STORAGE_SERVICE = True
# pynetdicom logs every C-STORE at INFO with its identifiers; our own events say enough.
_config.LOG_REQUEST_IDENTIFIERS = False
wake_dul_on_io()
wake_association_on_message()
tolerate_bad_uids()

MAX_ASSOCIATIONS = 64
NETWORK_TIMEOUT = 60.0


class ReusePortServer(ThreadedAssociationServer):
    """A listener that shares its port with the daemon's other receiving processes."""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


@dataclass(frozen=True)
class Endpoint:
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
        reuse_port: bool = False,
    ) -> None:
        self._handlers = handlers
        self._server_class = ReusePortServer if reuse_port else ThreadedAssociationServer
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
        ae.maximum_associations = MAX_ASSOCIATIONS
        ae.maximum_pdu_size = 0  # unlimited: fewer, larger P-DATA reads
        ae.network_timeout = NETWORK_TIMEOUT
        ae.acse_timeout = 30
        ae.dimse_timeout = NETWORK_TIMEOUT

        def current() -> Mapping[str, Receiver]:
            return self._receivers.get(endpoint, {})

        try:
            server = ae.make_server(
                (endpoint.host, endpoint.port),
                evt_handlers=self._handlers(current),
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
        quick_ack_requests(server)
        ae._servers.append(server)  # as start_server does: server.shutdown() removes it
        name = f"listener@{endpoint.host}:{endpoint.port}"
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
        self.failed.pop(endpoint, None)
        self._servers[endpoint] = server
        log.info(
            "receiver_started", host=endpoint.host, port=endpoint.port, ae_titles=sorted(current())
        )

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
