"""Idle builds, late files, crashes and signals, with real senders and real processes."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pydicom
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import (
    Xnatd,
    associate_result,
    dicom_files,
    free_port,
    port_accepts,
    pynetdicom_send,
    storescu_send,
    wait_for,
)


def builds(xnatd: Xnatd) -> list[dict]:
    return xnatd.events("session_built")


def acknowledged_until_killed(sender: subprocess.Popen, xnatd: Xnatd, *, after: int) -> list[Path]:
    """Follow ``storescu -v``; SIGKILL the daemon once ``after`` files are acknowledged.

    Returns the files storescu saw acknowledged with Success, in the order sent.
    """
    assert sender.stdout is not None
    acknowledged: list[Path] = []
    sending: Path | None = None
    for line in sender.stdout:
        if line.startswith("I: Sending file: "):
            sending = Path(line.removeprefix("I: Sending file: ").strip())
        elif line.startswith("I: Received Store Response (Success)") and sending is not None:
            acknowledged.append(sending)
            if len(acknowledged) == after:
                xnatd.process.send_signal(signal.SIGKILL)
    return acknowledged


def test_pause_shorter_than_timeout_gives_one_build(make_xnatd, dcm_dir: Path) -> None:
    # The pause is a second plus a `prearchive list` (a Python start: seconds on a busy
    # machine); the timeout leaves room for both.
    xnatd = make_xnatd(session_idle_timeout="8s")
    study = StudySpec(
        "short-pause", study_description="DEMO", series=[SeriesSpec(1), SeriesSpec(2)]
    )
    paths = write_study(study, dcm_dir)
    assert pynetdicom_send(xnatd.port, paths[:3]) == [0] * 3
    time.sleep(1.0)
    assert xnatd.prearchive()[0]["status"] == "RECEIVING"
    assert pynetdicom_send(xnatd.port, paths[3:]) == [0] * 3
    [row] = xnatd.wait_status("READY")
    assert (row["files"], row["scans"]) == (6, 2)
    time.sleep(1.0)
    assert len(builds(xnatd)) == 1


def test_pause_longer_than_timeout_reopens_the_ready_session(make_xnatd, dcm_dir: Path) -> None:
    """Late files reopen a READY session (RECEIVING) and it is built again, still one session."""
    xnatd = make_xnatd(session_idle_timeout="1s")
    study = StudySpec("long-pause", study_description="DEMO", series=[SeriesSpec(1), SeriesSpec(2)])
    paths = write_study(study, dcm_dir)
    assert pynetdicom_send(xnatd.port, paths[:3]) == [0] * 3
    [first] = xnatd.wait_status("READY")
    assert first["files"] == 3
    assert pynetdicom_send(xnatd.port, paths[3:]) == [0] * 3
    wait_for(lambda: len(builds(xnatd)) == 2, timeout=20)
    [row] = xnatd.wait_status("READY")
    assert row["name"] == first["name"] and (row["files"], row["scans"]) == (6, 2)


def test_open_association_holds_the_idle_timer(make_xnatd, dcm_dir: Path) -> None:
    """No build while the association that delivered the files is open, however long."""
    xnatd = make_xnatd(session_idle_timeout="1s")
    paths = write_study(StudySpec("held", study_description="DEMO"), dcm_dir)
    # Held open well past the check below, which starts a Python process (seconds on a
    # busy machine) after three times the idle timeout.
    sender = threading.Thread(
        target=pynetdicom_send, args=(xnatd.port, paths), kwargs={"hold_open": 9}
    )
    sender.start()
    time.sleep(3.0)
    assert [row["status"] for row in xnatd.prearchive()] == ["RECEIVING"]
    sender.join(timeout=30)
    released = time.monotonic()
    xnatd.wait_status("READY", timeout=10)
    assert time.monotonic() - released < 1.0 + 2.5


def test_study_split_over_two_associations_in_parallel(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    xnatd = make_xnatd(session_idle_timeout="1s")
    study = StudySpec(
        "parallel",
        study_description="DEMO",
        series=[SeriesSpec(n, instances=10) for n in (1, 2, 3, 4)],
    )
    paths = write_study(study, dcm_dir)
    senders = [
        subprocess.Popen(
            [
                storescu,
                "-aet",
                f"S{i}",
                "-aec",
                "XNAT",
                "127.0.0.1",
                str(xnatd.port),
                *map(str, paths[i::2]),
            ]
        )
        for i in range(2)
    ]
    assert [s.wait(timeout=60) for s in senders] == [0, 0]
    [row] = xnatd.wait_status("READY")
    assert (row["files"], row["scans"]) == (40, 4)


def test_kill_9_loses_no_acknowledged_instance_and_builds_once(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    """kill -9 mid-send; after restart every acknowledged file is there and the timer resumes.

    DCMTK's storescu sends: stock pynetdicom's requestor can lose a response to its own
    reactor thread (a race in its pause handshake), which would stall the send short of
    the kill.
    """
    xnatd = make_xnatd(session_idle_timeout="2s")
    study = StudySpec(
        "crash",
        study_description="DEMO",
        series=[SeriesSpec(1, instances=200, rows=64, columns=64)],
    )
    paths = write_study(study, dcm_dir)
    with subprocess.Popen(
        [storescu, "-v", "-td", "30", "-ta", "30", "-aet", "CRASH", "-aec", "XNAT",
         "127.0.0.1", str(xnatd.port), *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as sender:  # fmt: skip
        acknowledged = acknowledged_until_killed(sender, xnatd, after=60)
        sender.wait(timeout=60)
    xnatd.process.wait(timeout=10)
    xnatd.process = None
    assert 60 <= len(acknowledged) < len(paths)

    xnatd.start()
    [row] = xnatd.wait_status("READY", timeout=30)
    assert row["files"] >= len(acknowledged)
    stored = {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
        for p in dicom_files(xnatd.data_dir)
    }
    for path in acknowledged:
        assert pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID in stored
    assert not list(xnatd.data_dir.rglob("*.part"))
    assert len(builds(xnatd)) == 1

    # Killed again once READY: a restart does not build it a second time.
    xnatd.kill()
    xnatd.start()
    time.sleep(3.5)
    assert [r["status"] for r in xnatd.prearchive()] == ["READY"]
    assert len(builds(xnatd)) == 1


def test_sigterm_lets_the_open_association_finish_then_exits_0(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    xnatd = make_xnatd(session_idle_timeout="30s")
    paths = write_study(
        StudySpec(
            "drain",
            study_description="DEMO",
            series=[SeriesSpec(1, instances=200, rows=128, columns=128)],
        ),
        dcm_dir,
    )
    sender = subprocess.Popen(
        [storescu, "-aet", "SLOW", "-aec", "XNAT", "127.0.0.1", str(xnatd.port), *map(str, paths)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: xnatd.prearchive() and xnatd.prearchive()[0]["files"] >= 20, timeout=30)
    xnatd.process.send_signal(signal.SIGTERM)
    _, errors = sender.communicate(timeout=60)
    assert sender.returncode == 0, errors
    assert xnatd.process.wait(timeout=40) == 0
    xnatd.process = None
    assert len(dicom_files(xnatd.data_dir)) == 200
    # The listening socket closed when SIGTERM arrived.
    assert not port_accepts(xnatd.port)


def test_sighup_reloads_receivers_and_refuses_a_broken_file(make_xnatd, dcm_dir: Path) -> None:
    xnatd = make_xnatd()
    new_port = free_port()
    xnatd.settings["receivers"].append({"ae_title": "EXTRA", "port": new_port, "host": "127.0.0.1"})
    xnatd.write_config()
    xnatd.process.send_signal(signal.SIGHUP)
    wait_for(lambda: port_accepts(new_port), timeout=10)
    assert associate_result(new_port, aet="X", aec="EXTRA")[0]

    good = xnatd.config_path.read_text()
    xnatd.config_path.write_text(good + "\nreceivers: not-a-list\n")
    xnatd.process.send_signal(signal.SIGHUP)
    wait_for(lambda: xnatd.events("reload_refused"), timeout=10)
    assert associate_result(new_port, aet="X", aec="EXTRA")[0], "old configuration must stay"
    assert associate_result(xnatd.port, aet="X")[0]


def test_busy_port_added_by_reload_keeps_other_receivers_serving(make_xnatd) -> None:
    """A receiver added on SIGHUP whose port is taken is reported; the others serve on."""
    import json
    import signal
    import socket
    import urllib.error
    import urllib.request

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    try:
        xnatd = make_xnatd()
        xnatd.settings["receivers"].append({"ae_title": "BUSY", "port": busy, "host": "127.0.0.1"})
        xnatd.write_config()
        xnatd.process.send_signal(signal.SIGHUP)
        [event] = wait_for(lambda: xnatd.events("receiver_not_started"))
        assert event["port"] == busy
        assert associate_result(xnatd.port, aet="X")[0]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{xnatd.http_port}/healthz", timeout=5)
            raise AssertionError("healthz should report the dead receiver")
        except urllib.error.HTTPError as error:
            assert error.code == 503
            assert f"127.0.0.1:{busy}" in json.loads(error.read())["receivers_down"]
    finally:
        blocker.close()


def test_send_with_storescu_logs_json_events_with_context(
    xnatd: Xnatd, storescu: str, dcm_dir: Path
) -> None:
    paths = write_study(StudySpec("logs", study_description="DEMO"), dcm_dir)
    assert storescu_send(storescu, xnatd.port, paths, aet="CT9").returncode == 0
    xnatd.wait_status("READY")
    [accepted] = xnatd.events("association_accepted")
    assert (accepted["ae"], accepted["calling_ae"]) == ("XNAT", "CT9")
    built = wait_for(lambda: xnatd.events("session_built"))
    assert built[0]["study_uid"] and built[0]["session"].startswith("DEMO/")
