"""The receiving socket's tuning (scp/transport.py) against a real daemon and sender."""

from __future__ import annotations

import os
import queue
import threading
import time
import types
from pathlib import Path

import pynetdicom.association as association_module
from dicomgen import SeriesSpec, StudySpec, instances, write_study
from helpers import pynetdicom_send, wait_for
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import MRImageStorage

from xnatd.scp.transport import SpillingBuffer, wake_association_on_message, wake_dul_on_io


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_associations_leave_no_descriptors_behind(xnatd, dcm_dir: Path) -> None:
    """Each association's DUL doorbell (a pipe) is closed when its reactor ends."""
    paths = write_study(StudySpec("fds", series=[SeriesSpec(1, instances=2)]), dcm_dir)
    pynetdicom_send(xnatd.port, paths)  # warm: index connections, caches
    pid = xnatd.process.pid
    before = open_fds(pid)
    for _ in range(15):
        assert pynetdicom_send(xnatd.port, paths) == [0, 0]
    wait_for(lambda: open_fds(pid) <= before + 2, timeout=10)


def test_the_dul_reactor_waits_on_its_doorbell_and_closes_it(unused_port: int) -> None:
    """In-process: an acceptor's DUL thread idles through our select (its doorbell
    exists while the association runs) and drops the pipe when the reactor ends."""
    wake_dul_on_io()
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


def test_the_association_reactor_wakes_when_a_message_is_queued() -> None:
    """pynetdicom's association thread sleeps between looks at its DIMSE queue; with the
    shim the sleep ends the moment a message arrives, and lasts when none does."""
    wake_association_on_message()
    clock = association_module.time
    messages: queue.Queue = queue.Queue()
    slept: dict[str, float] = {}

    class Reactor(threading.Thread):  # stands in for an Association: a thread with .dimse
        dimse = types.SimpleNamespace(msg_queue=messages)

        def run(self) -> None:
            started = time.monotonic()
            clock.sleep(0.05)  # nothing queued: the whole sleep
            slept["idle"] = time.monotonic() - started
            started = time.monotonic()
            clock.sleep(30.0)  # ended by the put below
            slept["woken"] = time.monotonic() - started

    reactor = Reactor()
    reactor.start()
    time.sleep(0.3)
    messages.put((1, "C-STORE-RQ"))
    reactor.join(timeout=10)
    assert not reactor.is_alive()
    assert slept["idle"] >= 0.05 and slept["woken"] < 5.0


def test_large_data_sets_spill_to_the_spool_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(SpillingBuffer, "folder", tmp_path)
    monkeypatch.setattr(SpillingBuffer, "limit", 10)
    small = SpillingBuffer()
    small.write(b"12345")
    assert small.finish() is None and small.getvalue() == b"12345"
    large = SpillingBuffer()
    large.write(b"1234")
    large.write(b"5678901234567890")  # past the limit: memory moves to a file
    large.write(b"abc")
    spill = large.finish()
    assert spill is not None and spill.parent == tmp_path
    assert spill.read_bytes() == b"12345678901234567890abc"
    assert large.getvalue() == b""  # nothing left in memory
