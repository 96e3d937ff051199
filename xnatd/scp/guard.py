"""Association slots no peer can starve (issue 16.7).

pynetdicom gives a connection its slot when it is accepted and waits for the
A-ASSOCIATE-RQ for its ACSE timeout; a request cut in the middle blocks the reading
thread for the whole network timeout, and a peer that closes before its request
holds the slot until the wait ends. A hundred idle connections locked every sender
out. Here, per receiving process:

- a connection is admitted only while fewer than ``max_open`` are open, and fewer
  than ``max_per_peer`` from its address; else it is answered A-ASSOCIATE-RJ
  (transient, local limit exceeded) and closed. When every slot is taken, the oldest
  connection still without its request is closed to make room first: silent
  connections from many addresses cannot hold the slots either;
- a connection whose A-ASSOCIATE-RQ has not arrived whole within the ARTIM timeout
  (PS3.8 9.1.5), or whose peer closed before sending it, is closed and its slot freed
  at once (its association thread is woken as by pynetdicom's own timeout);
- a slot is freed when its connection closes or its association thread ends;
- every refusal is logged (``association_refused``) and counted
  (``xnatd_associations_refused{reason}``).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pynetdicom import evt
from pynetdicom.events import Event

from xnatd.config import Associations
from xnatd.metrics import Metrics

log = structlog.get_logger(__name__)

TICK = 0.2  # seconds between looks at the connections still waiting for their request
DRAIN = 2.0  # how long a refused connection may take to read its A-ASSOCIATE-RJ
ORPHAN = 30.0  # an admitted connection no association took up (a failed start)

# A-ASSOCIATE-RJ: rejected-transient (2), service-provider presentation (3), local
# limit exceeded (2); PS3.8 9.3.4.
LIMIT_REJECT = struct.pack(">BBLBBBB", 0x03, 0, 4, 0, 2, 3, 2)


@dataclass(eq=False)
class _Connection:
    sock: Any
    peer: str
    address: str
    deadline: float
    admitted: float
    assoc: Any = None
    requested: bool = False


@dataclass
class _Refused:
    sock: Any
    until: float


@dataclass
class ConnectionGuard:
    """Admission, ARTIM and slot accounting for one process's receivers."""

    settings: Associations
    metrics: Metrics | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: dict[int, _Connection] = field(default_factory=dict)
    _per_peer: Counter[str] = field(default_factory=Counter)
    _draining: list[_Refused] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    # -- what the listeners call ------------------------------------------------------
    def install(self, server: Any, on_refused: Callable[[], None] | None = None) -> None:
        """Admit each connection ``server`` is about to run an association on;
        ``on_refused`` hears of each one refused (no association will close it)."""
        original = server.process_request

        def process_request(request: Any, client_address: Any) -> None:
            if self.admit(request, client_address):
                original(request, client_address)
            elif on_refused is not None:
                on_refused()

        server.process_request = process_request
        self.start()

    def handlers(self) -> list[tuple]:
        """Event handlers binding each admitted connection to its association."""
        return [
            (evt.EVT_CONN_OPEN, self._opened),
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_CONN_CLOSE, self._closed),
        ]

    def admit(self, sock: Any, client_address: Any) -> bool:
        """Take a slot for a new connection, or refuse it (A-ASSOCIATE-RJ) and say why."""
        address = str(client_address[0]) if isinstance(client_address, tuple) else "local"
        peer = f"{address}:{client_address[1]}" if isinstance(client_address, tuple) else address
        now = time.monotonic()
        self._make_room(address)
        with self._lock:
            if len(self._open) >= self.settings.max_open:
                reason = f"{self.settings.max_open} connections open (associations.max_open)"
                kind = "max_open"
            elif self._per_peer[address] >= self.settings.max_per_peer:
                reason = (
                    f"{self.settings.max_per_peer} connections open from {address}"
                    " (associations.max_per_peer)"
                )
                kind = "max_per_peer"
            else:
                self._open[id(sock)] = _Connection(
                    sock, peer, address, now + self.settings.artim_timeout, now
                )
                self._per_peer[address] += 1
                return True
        self._refused(kind, reason, peer)
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(LIMIT_REJECT)
            sock.shutdown(socket.SHUT_WR)
        with self._lock:
            self._draining.append(_Refused(sock, now + DRAIN))
        return False

    def _make_room(self, address: str) -> bool:
        """Every slot taken: close the oldest connection still without its request. A
        sender makes its request within milliseconds of connecting; silent connections
        are what fills the slots, and the oldest of them is the first to go. True when
        one went."""
        with self._lock:
            if len(self._open) < self.settings.max_open:
                return False
            if self._per_peer[address] >= self.settings.max_per_peer:
                return False  # refused for its own bound, whatever room there is
            waiting = [c for c in self._open.values() if not c.requested]
        for victim in sorted(waiting, key=lambda c: c.admitted):
            if self._give_up(
                victim, "evicted", "closed to make room: every slot taken, no request yet"
            ):
                return True
        return False

    # -- events -----------------------------------------------------------------------
    def _connection(self, event: Event) -> _Connection | None:
        transport = getattr(event.assoc.dul, "socket", None)
        sock = getattr(transport, "socket", None)
        with self._lock:
            found = self._open.get(id(sock)) if sock is not None else None
            if found is None:
                found = next((c for c in self._open.values() if c.assoc is event.assoc), None)
            return found

    def _opened(self, event: Event) -> None:
        connection = self._connection(event)
        if connection is not None:
            connection.assoc = event.assoc

    def _requested(self, event: Event) -> None:
        connection = self._connection(event)
        if connection is not None:
            connection.requested = True

    def _closed(self, event: Event) -> None:
        connection = self._connection(event)
        if connection is None:
            return
        if connection.requested:
            self._release(connection)
        else:  # its association thread would wait out the ACSE timeout for nothing
            self._give_up(connection, "closed_before_request", "peer closed before its request")

    def _release(self, connection: _Connection) -> bool:
        """Free the connection's slot; False if it was free already."""
        with self._lock:
            if self._open.pop(id(connection.sock), None) is None:
                return False
            self._per_peer[connection.address] -= 1
            if self._per_peer[connection.address] <= 0:
                del self._per_peer[connection.address]
            return True

    def _refused(self, kind: str, reason: str, peer: str) -> None:
        log.warning("association_refused", peer=peer, reason=reason)
        if self.metrics is not None:
            self.metrics.associations_refused.labels(kind).inc()

    # -- the watcher --------------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher thread (once; a second call does nothing)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._watch, name="association-guard", daemon=True
            )
        self._thread.start()

    def stop(self) -> None:
        """Ask the watcher thread to stop."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.check()
            except Exception:  # a bug here must not stop the guard
                log.exception("association_guard_failed")

    def check(self) -> None:
        """Close silent and abandoned connections, free finished slots, drain refusals."""
        now = time.monotonic()
        with self._lock:
            connections = list(self._open.values())
            draining, self._draining = self._draining, []
        for connection in connections:
            assoc = connection.assoc
            if assoc is not None and assoc._started.is_set() and not assoc.is_alive():
                self._release(connection)
            elif connection.requested:
                continue
            elif _peer_closed(connection.sock):
                self._give_up(connection, "closed_before_request", "peer closed before its request")
            elif now > connection.deadline:
                self._give_up(
                    connection,
                    "artim_timeout",
                    f"no A-ASSOCIATE-RQ within {self.settings.artim_timeout:g}s"
                    " (associations.artim_timeout)",
                )
            elif assoc is None and now > connection.admitted + ORPHAN:
                self._release(connection)
        kept = [refused for refused in draining if not _drained(refused, now)]
        with self._lock:
            self._draining.extend(kept)

    def _give_up(self, connection: _Connection, kind: str, reason: str) -> bool:
        """Close a connection that never made its request; wake its association thread.
        False when its request arrived meanwhile or it was given up already."""
        assoc = connection.assoc
        if assoc is None:
            if connection.requested or not self._release(connection):
                return False
        else:
            primitives = assoc.dul.to_user_queue
            with primitives.mutex:
                if primitives.queue or assoc.requestor.primitive is not None:
                    return False  # the request arrived meanwhile
                if not self._release(connection):
                    return False  # given up already
                # What pynetdicom's own wait gives on its timeout: no primitive.
                primitives.queue.append(None)
                primitives.unfinished_tasks += 1
                primitives.not_empty.notify()
        self._refused(kind, reason, connection.peer)
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns at once
        return True


def _peer_closed(sock: Any) -> bool:
    """Whether the peer has hung up (EOF or reset) on a connection not yet requested."""
    try:
        fd = sock.fileno()
        if fd < 0:
            return True
        readable, _, _ = select.select([fd], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def _drained(refused: _Refused, now: float) -> bool:
    """Read what a refused peer sent until it hangs up (so it reads the reject, not a
    reset), or until its time is up; then close."""
    try:
        while True:
            chunk = refused.sock.recv(65536)
            if not chunk:
                break
    except BlockingIOError:
        if now < refused.until:
            return False
    except OSError:
        pass
    with contextlib.suppress(OSError):
        refused.sock.close()
    return True
