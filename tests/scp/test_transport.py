"""The receiving socket's tuning (scp/transport.py) against a real daemon and sender."""

from __future__ import annotations

import os
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import pynetdicom_send, wait_for


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


def test_request_and_response_do_not_wait_for_the_poll(xnatd, dcm_dir: Path) -> None:
    """Many small instances on one association: every one stored, none lost to the
    reactor's wake-ups (the doorbell rings for each response)."""
    paths = write_study(
        StudySpec("many", series=[SeriesSpec(1, instances=150, rows=4, columns=4)]), dcm_dir
    )
    assert pynetdicom_send(xnatd.port, paths) == [0] * 150
    wait_for(lambda: xnatd.prearchive() and xnatd.prearchive()[0]["files"] == 150)
