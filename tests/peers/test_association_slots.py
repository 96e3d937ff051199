"""Issue 16.7: idle and half-open connections cannot lock senders out.

Raw sockets play the abusive peers, each from its own loopback address (127.0.0.2,
127.0.0.3) so that the bound per peer address shows; DCMTK's echoscu and storescu,
from 127.0.0.1, must still get through within a bounded time.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, storescu_send, wait_for


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _half_request(sock: socket.socket) -> None:
    """The start of an A-ASSOCIATE-RQ that announces 200 bytes and sends 10."""
    sock.sendall(struct.pack(">BBL", 0x01, 0, 200) + b"\x00\x01\x00\x00XNAT  ")


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        with contextlib.suppress(OSError):
            sock.close()


def _echo(echoscu: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [echoscu, "-aet", "SCANNER", "-aec", "XNAT", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _refused(xnatd: Xnatd, reason: str) -> float:
    for line in xnatd.metrics().splitlines():
        if line.startswith(f'xnatd_associations_refused_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_idle_and_half_sent_requests_do_not_lock_senders_out(
    make_xnatd, storescu: str, echoscu: str, dcm_dir: Path, sockets: list[socket.socket]
) -> None:
    """The issue's case: 100 idle connections and 50 cut mid-request hold every slot
    (the default bounds, one process); a sender still gets in at once, long before the
    ARTIM timeout frees anything."""

    def one_process(settings: dict) -> None:
        settings["workers"] = 1

    xnatd: Xnatd = make_xnatd(hook=one_process)
    for _ in range(100):
        sockets.append(_connect(xnatd.port, "127.0.0.2"))
    for _ in range(50):
        sock = _connect(xnatd.port, "127.0.0.3")
        _half_request(sock)
        sockets.append(sock)
    # 32 from each address take the 64 slots; the other 86 are refused. (Bounded, not
    # asserted: a daemon without the guard counts nothing, and fails on echoscu.)
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: _refused(xnatd, "max_per_peer") + _refused(xnatd, "max_open") == 86,
            timeout=5,
        )
    started = time.monotonic()
    echo = _echo(echoscu, xnatd.port)
    assert echo.returncode == 0, echo.stdout + echo.stderr
    paths = write_study(
        StudySpec("starved", study_description="DEMO", series=[SeriesSpec(1, instances=2)]),
        dcm_dir,
    )
    sent = storescu_send(storescu, xnatd.port, paths)
    assert sent.returncode == 0, sent.stderr
    assert time.monotonic() - started < 5  # the ARTIM timeout is 10 s
    assert _refused(xnatd, "artim_timeout") == 0
    assert _refused(xnatd, "evicted") >= 1  # the oldest silent one made room for echoscu
    refusals = xnatd.events("association_refused")
    assert any("associations.max_per_peer" in e["reason"] for e in refusals)


def test_silent_connections_time_out(make_xnatd, sockets: list[socket.socket]) -> None:
    """ARTIM: a connection that sends nothing, or half a request, is closed after
    associations.artim_timeout, not before."""

    def limits(settings: dict) -> None:
        settings["workers"] = 1
        settings["associations"] = {"artim_timeout": "1s", "max_open": 6, "max_per_peer": 6}

    xnatd: Xnatd = make_xnatd(hook=limits)
    started = time.monotonic()
    for index in range(6):
        sock = _connect(xnatd.port, "127.0.0.2")
        if index % 2:
            _half_request(sock)
        sockets.append(sock)
    for sock in sockets:  # the server hangs up on each within the ARTIM timeout
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""
    assert 0.9 < time.monotonic() - started < 5
    wait_for(lambda: _refused(xnatd, "artim_timeout") == 6, timeout=5)


def test_a_peer_hanging_up_frees_its_slot_at_once(
    make_xnatd, echoscu: str, sockets: list[socket.socket]
) -> None:
    """Closed before or in the middle of its request: the slot is free long before ARTIM."""

    def limits(settings: dict) -> None:
        settings["workers"] = 1
        settings["associations"] = {"artim_timeout": "60s", "max_open": 6, "max_per_peer": 6}

    xnatd: Xnatd = make_xnatd(hook=limits)
    for index in range(6):
        sock = _connect(xnatd.port, "127.0.0.2")
        if index % 2:
            _half_request(sock)
        sockets.append(sock)
    for sock in sockets:
        sock.close()
    wait_for(lambda: _refused(xnatd, "closed_before_request") == 6, timeout=3)
    # Had they kept their slots, 127.0.0.2 would be at its bound of 6.
    for _ in range(6):
        sockets.append(_connect(xnatd.port, "127.0.0.2"))
    echo = _echo(echoscu, xnatd.port)
    assert echo.returncode == 0, echo.stdout + echo.stderr
    assert _refused(xnatd, "max_per_peer") == 0
