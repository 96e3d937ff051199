"""The receiving socket's tuning (scp/transport.py) against a real daemon and sender."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pynetdicom.association as association_module
import pytest
from dicomgen import SeriesSpec, StudySpec, instances, write_study
from helpers import pynetdicom_send, storescu_send, wait_for
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import MRImageStorage

from xnatd.scp import hooks


@pytest.fixture
def hooked() -> Iterator[None]:
    """xnatd's pynetdicom hooks, in this process for one test only."""
    hooks.install()
    try:
        yield
    finally:
        hooks.uninstall()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def delayed_acks() -> int:
    """ACKs this machine's TCP sent late, on its delayed-ACK timer (TcpExt DelayedACKs)."""
    names, values = (
        line.split()
        for line in Path("/proc/net/netstat").read_text().splitlines()
        if line.startswith("TcpExt:")
    )
    return int(values[names.index("DelayedACKs")])


def test_a_sender_with_nagle_on_is_acknowledged_at_once(
    xnatd, storescu: str, dcm_dir: Path
) -> None:
    """DCMTK storescu with Nagle on (as most modalities) writes each C-STORE in four
    pieces; the second waits for the first to be acknowledged. Were xnatd's ACKs
    delayed, each instance would wait out the 40 ms timer: about 100 late ACKs here."""
    study = StudySpec("nagle", series=[SeriesSpec(1, instances=100, rows=64, columns=64)])
    paths = write_study(study, dcm_dir)
    storescu_send(storescu, xnatd.port, paths[:2], nagle=True)  # warm: the session exists
    before = delayed_acks()
    sent = storescu_send(storescu, xnatd.port, paths, nagle=True)
    late = delayed_acks() - before
    assert sent.returncode == 0, sent.stderr
    assert late < 20, f"{late} delayed ACKs for 100 instances"
    assert xnatd.prearchive()[0]["files"] == 100


def test_associations_leave_no_descriptors_behind(xnatd, dcm_dir: Path) -> None:
    """Each association's DUL doorbell (a pipe) is closed when its reactor ends."""
    paths = write_study(StudySpec("fds", series=[SeriesSpec(1, instances=2)]), dcm_dir)
    pynetdicom_send(xnatd.port, paths)  # warm: index connections, caches
    pid = xnatd.process.pid
    before = open_fds(pid)
    for _ in range(15):
        assert pynetdicom_send(xnatd.port, paths) == [0, 0]
    wait_for(lambda: open_fds(pid) <= before + 2, timeout=10)


def test_the_dul_reactor_waits_on_its_doorbell_and_closes_it(unused_port: int, hooked) -> None:
    """In-process: an acceptor's DUL thread idles through our select (its doorbell
    exists while the association runs) and drops the pipe when the reactor ends."""
    seen: dict[str, object] = {}

    def on_store(event: evt.Event) -> int:
        seen["dul"] = event.assoc.dul
        seen["bell"] = event.assoc.dul.__dict__.get("_xnatd_bell")
        return 0x0000

    scp = AE(ae_title="SCP")
    scp.add_supported_context(MRImageStorage, ExplicitVRLittleEndian)
    server = scp.start_server(
        ("127.0.0.1", unused_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        scu = AE(ae_title="SCU")
        scu.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", unused_port, ae_title="SCP")
        study = StudySpec("bell", series=[SeriesSpec(1, instances=1)])
        [dataset] = instances(study)
        assert assoc.send_c_store(dataset).Status == 0x0000
        assoc.release()
        assert isinstance(seen["bell"], tuple)  # the DUL thread slept in our select
        dul = seen["dul"]
        wait_for(lambda: not dul.is_alive(), timeout=10)
        assert "_xnatd_bell" not in dul.__dict__
    finally:
        server.shutdown()


def unstarted_association() -> Association:
    """A real pynetdicom Association (its DIMSE queue, DUL queue and checkpoint), with
    the shim installed (the ``hooked`` fixture) and no thread started."""
    return Association(AE(ae_title="SHIM"), "requestor")


def test_a_pause_asked_right_after_the_reactor_passed_its_checkpoint_waits_for_it(
    hooked,
) -> None:
    """pynetdicom's reactor sets _is_paused before its checkpoint wait and resets it
    after: a pause asked in between saw a stale True and sent a request the reactor
    then took the response of. With the shim, clear() forgets that flag, rings the
    reactor, and only a wait that really blocks says paused again."""
    assoc = unstarted_association()
    checkpoint, bell = assoc._reactor_checkpoint, assoc._xnatd_bell
    assoc._is_paused = True  # the reactor, just before its checkpoint...
    assert checkpoint.wait()  # ...which is open: it goes on, the flag not yet reset
    rung = bell.rung
    checkpoint.clear()  # a thread asks for the reactor to pause, now
    assert assoc._is_paused is False and bell.rung == rung + 1
    reactor = threading.Thread(target=checkpoint.wait, daemon=True)
    reactor.start()  # the reactor's next look at its checkpoint blocks...
    wait_for(lambda: assoc._is_paused, timeout=10)  # ...and only now says so
    assert reactor.is_alive()
    checkpoint.set()
    reactor.join(timeout=10)
    assert not reactor.is_alive()


def test_a_pause_asked_after_the_association_ended_returns_at_once(hooked) -> None:
    """A sender whose association the peer just reset calls send_c_store again before
    it notices: kill() has stopped the reactor and said paused; clear() must leave that
    so, or pynetdicom's wait for the pause spins for ever (a hung test in CI)."""
    assoc = unstarted_association()
    assoc.kill()  # what the reactor does on its way out
    assoc._reactor_checkpoint.clear()
    assert assoc._is_paused is True


def test_the_association_reactor_wakes_when_a_message_or_primitive_is_queued(
    monkeypatch, hooked
) -> None:
    """pynetdicom's association thread sleeps between looks at its DIMSE queue and at
    its DUL's primitives; with the shim a quiet sleep lasts IDLE_WAIT (not 1 ms, a
    thousand wake-ups a second) and ends the moment a message or a primitive (a
    release request, say) is queued, or at once if one came while it was looking."""
    clock = association_module.time
    monkeypatch.setattr(hooks, "IDLE_WAIT", 0.2)
    assoc = unstarted_association()
    messages, primitives = assoc.dimse.msg_queue, assoc.dul.to_user_queue
    slept: dict[str, float] = {}
    asleep = threading.Event()

    class Reactor(threading.Thread):  # runs as the association's reactor would
        def __init__(self) -> None:
            super().__init__()
            self._xnatd_bell = assoc._xnatd_bell

        def nap(self, name: str) -> None:
            started = time.monotonic()
            clock.sleep(0.001)  # what pynetdicom asks for
            slept[name] = time.monotonic() - started

        def run(self) -> None:
            self.nap("quiet")
            monkeypatch.setattr(hooks, "IDLE_WAIT", 30.0)  # only a put ends these
            asleep.set()
            self.nap("message")
            messages.get()
            asleep.set()
            self.nap("primitive")
            primitives.put("A-ABORT")  # queued between two looks
            self.nap("between")

    reactor = Reactor()
    reactor.start()
    for put in (lambda: messages.put((1, "C-STORE-RQ")), lambda: primitives.put("A-RELEASE")):
        assert asleep.wait(timeout=10)
        asleep.clear()
        time.sleep(0.3)
        put()
    reactor.join(timeout=20)
    assert not reactor.is_alive()
    assert slept["quiet"] >= 0.2
    assert 0.3 <= slept["message"] < 10 and 0.3 <= slept["primitive"] < 10
    assert slept["between"] < 10


def test_a_message_for_another_waiter_is_not_swallowed_by_the_reactor(monkeypatch, hooked) -> None:
    """An SCU thread waits in get() for its response while the reactor idles on the same
    queue: put() wakes one waiter, the reactor first; it must pass the wake-up on, or
    the SCU sleeps out its DIMSE timeout (the 30 s stalls our pynetdicom senders saw)."""
    clock = association_module.time
    monkeypatch.setattr(hooks, "IDLE_WAIT", 30.0)
    assoc = unstarted_association()
    messages = assoc.dimse.msg_queue
    got: dict[str, float] = {}

    class Reactor(threading.Thread):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self._xnatd_bell = assoc._xnatd_bell

        def run(self) -> None:
            clock.sleep(0.001)

    def user() -> None:
        started = time.monotonic()
        messages.get(timeout=20)
        got["after"] = time.monotonic() - started

    reactor = Reactor(daemon=True)
    reactor.start()
    time.sleep(0.2)  # the reactor waits first, so put() wakes it, not the user
    waiter = threading.Thread(target=user, daemon=True)
    waiter.start()
    time.sleep(0.2)
    messages.put((1, "C-STORE-RSP"))
    waiter.join(timeout=30)
    assert got["after"] < 5


def test_arrived_tells_the_next_pdu_type_without_waiting_or_reading_it() -> None:
    import socket

    from xnatd.scp.transport import QuickAckSocket

    with socket.create_server(("127.0.0.1", 0)) as server:
        theirs = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
    with ours, theirs:
        sock = QuickAckSocket(ours)
        started = time.monotonic()
        assert sock.arrived() is None  # nothing yet: no wait
        assert time.monotonic() - started < 0.5
        theirs.sendall(b"\x04\x00\x00\x00\x00\x06")
        wait_for(lambda: sock.arrived() == 0x04, timeout=5, interval=0.01)
        assert sock.recv(6) == b"\x04\x00\x00\x00\x00\x06"  # left unread by the peek
        theirs.close()
        assert sock.arrived() is None  # closed: the reactor finds that out itself
