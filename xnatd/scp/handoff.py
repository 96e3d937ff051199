"""Associations placed on the least busy receiving process, not by a hash.

With ``workers:`` above 1, only the main process listens. Each connection it accepts
goes to the process with the fewest open associations (itself included): the socket
itself is passed to a worker over a Unix SEQPACKET pair (SCM_RIGHTS), and the worker
runs the association in its own pynetdicom server for that port. SO_REUSEPORT, used
before, hashes connections: four associations often landed 3/1 or 4/0 on two
processes, leaving a core idle.

Each worker reports ``received active`` once it serves and after every change (a
worker still starting gets nothing: a socket queued to it would wait, or be lost if
it failed to start); the main process adds the sockets it sent that the worker has
not reported yet, so a burst of connections is spread before the reports arrive.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

HANDOFF_ENV = "XNATD_HANDOFF_FD"


class Load:
    """Open associations of one process, counted from accept to EVT_CONN_CLOSE."""

    def __init__(self, on_change: Callable[[int, int], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.received = 0  # connections this process was given, ever
        self.active = 0
        self.on_change = on_change

    def opened(self) -> None:
        """Count a connection accepted by this process."""
        with self._lock:
            self.received += 1
            self.active += 1
            received, active = self.received, self.active
        if self.on_change is not None:
            self.on_change(received, active)

    def closed(self, *_: Any) -> None:
        """Count a connection closed (an EVT_CONN_CLOSE handler; its event is not used)."""
        with self._lock:
            self.active = max(0, self.active - 1)
            received, active = self.received, self.active
        if self.on_change is not None:
            self.on_change(received, active)


class _Channel:
    """The main process's end of one worker's pair, and what the worker last said."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number = number
        self.sock = sock
        self.sent = 0
        self.received = 0
        self.active = 0
        self.ready = False  # the worker reports once it serves; nothing is sent before
        self.lock = threading.Lock()

    def load(self) -> int:
        with self.lock:
            return self.active + (self.sent - self.received)

    def listen(self) -> None:
        """Read the worker's reports until its end closes (the worker exited)."""
        while True:
            try:
                message = self.sock.recv(64)
            except OSError:
                return
            if not message:
                return
            try:
                received, active = (int(part) for part in message.split())
            except ValueError:
                continue
            with self.lock:
                self.received, self.active = received, active
                self.ready = True


class Dispatcher:
    """Main process: picks a process for each accepted connection."""

    def __init__(self, local: Load) -> None:
        self.local = local
        self._channels: dict[int, _Channel] = {}
        self._lock = threading.Lock()

    def attach(self, number: int) -> socket.socket:
        """A new pair for worker ``number``; the returned end goes to the worker."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        channel = _Channel(number, ours)
        with self._lock:
            old = self._channels.pop(number, None)
            self._channels[number] = channel
        if old is not None:
            old.sock.close()
        threading.Thread(target=channel.listen, name=f"handoff-w{number}", daemon=True).start()
        return theirs

    def detach(self, number: int) -> None:
        """Forget worker ``number`` and close its end of the pair (it died or failed)."""
        with self._lock:
            channel = self._channels.pop(number, None)
        if channel is not None:
            channel.sock.close()

    def place(self, client: socket.socket, host: str, port: int) -> bool:
        """Send the connection to a worker no busier than this process (True), or keep
        it here (False). A tie goes to the worker: this process also builds sessions
        (during a long send, those that went idle), archives and serves HTTP."""
        with self._lock:
            channels = [channel for channel in self._channels.values() if channel.ready]
        for channel in sorted(channels, key=_Channel.load):
            if channel.load() > self.local.active:
                break  # every worker is busier than this process
            with channel.lock:
                channel.sent += 1
            try:
                socket.send_fds(channel.sock, [f"{host} {port}".encode()], [client.fileno()])
            except OSError as exc:
                log.warning("handoff_failed", worker=channel.number, reason=str(exc))
                with channel.lock:
                    channel.sent -= 1
                self.detach(channel.number)
                continue
            client.close()
            return True
        self.local.opened()
        return False


class HandoffReceiver:
    """Worker process: takes the connections the main process sends and serves them
    on this process's server for the same port."""

    def __init__(self, sock: socket.socket, serve: Callable[[socket.socket, str, int], bool]):
        self.sock = sock
        self.serve = serve
        self.load = Load(on_change=self._report)
        self.accepting = True

    @classmethod
    def from_environment(
        cls, serve: Callable[[socket.socket, str, int], bool]
    ) -> HandoffReceiver | None:
        """The receiver for the pair the main process passed (``XNATD_HANDOFF_FD``), or
        None when this process was not started as a worker.
        """
        fd = os.environ.get(HANDOFF_ENV)
        if not fd:
            return None
        return cls(socket.socket(fileno=int(fd)), serve)

    def start(self) -> None:
        """Serve handed connections; the first report tells the main process we can."""
        threading.Thread(target=self._run, name="handoff", daemon=True).start()
        self._report(self.load.received, self.load.active)

    def _report(self, received: int, active: int) -> None:
        # OSError: the main process is gone, and this worker is about to be killed.
        with contextlib.suppress(OSError):
            self.sock.send(f"{received} {active}".encode())

    def _run(self) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.sock, 256, 1)
            except OSError:
                return
            if not message and not fds:
                return  # the main process closed its end
            for fd in fds:
                client = socket.socket(fileno=fd)
                host, _, port = message.decode().rpartition(" ")
                self.load.opened()
                if not self.accepting or not self.serve(client, host, int(port)):
                    client.close()
                    self.load.closed()
