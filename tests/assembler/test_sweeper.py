"""The idle sweeper (SPEC 4.2): quiet sessions are built once, busy ones are left alone.

Builds run on the sweeper's own threads; the tests wait on events that the builder
and ``on_ready`` set, with a bound, never on a fixed sleep.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Site, wait_for

from xnatd.assembler.sweeper import Sweeper, early_digest_after, poll_interval
from xnatd.intake.intake import Received, Result
from xnatd.store import session_files
from xnatd.store.index.records import PENDING_DIGEST, PrearchiveSession, Status
from xnatd.store.layout import session_file

WAIT = 15.0  # seconds: a bound on a wait that normally ends in milliseconds


def routed(seed: str, label: str = "MR1", instances: int = 2) -> StudySpec:
    return StudySpec(
        seed,
        patient_comments=f"Project: DEMO Subject: SUBJ01 Session: {label}",
        series=[SeriesSpec(1, instances=instances)],
    )


class Watch:
    """Records each build and each ``on_ready`` call, and signals them as events."""

    def __init__(self, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
        self.builds: list[tuple[int, Status | None]] = []
        self.ready: list[PrearchiveSession] = []
        self.built = threading.Event()
        self.ready_called = threading.Event()
        self.crash_first = False
        self._lock = threading.Lock()
        real = site.builder.build

        def build(session: PrearchiveSession) -> Status | None:
            with self._lock:
                crash = self.crash_first and not self.builds
                if crash:
                    self.builds.append((session.id, None))
            if crash:
                self.built.set()
                raise RuntimeError("a bug in the builder")
            status = real(session)
            with self._lock:
                self.builds.append((session.id, status))
            self.built.set()
            return status

        monkeypatch.setattr(site.builder, "build", build)

    def on_ready(self, session: PrearchiveSession) -> None:
        with self._lock:
            self.ready.append(session)
        self.ready_called.set()


@pytest.fixture
def sweepers() -> Iterator[list[Sweeper]]:
    made: list[Sweeper] = []
    yield made
    for sweeper in made:
        sweeper.stop(wait=True)


def sweeper_for(site: Site, watch: Watch, made: list[Sweeper], *, idle_timeout: float) -> Sweeper:
    sweeper = Sweeper(
        site.store.assembly,
        site.builder,
        idle_timeout=idle_timeout,
        node="test-node",
        on_ready=watch.on_ready,
    )
    made.append(sweeper)
    return sweeper


def receive_through_open_association(site: Site, paths: list[Path]) -> None:
    """Store the files as association ``assoc-1`` delivers them; it stays open."""
    site.store.prearchive.association_opened(
        "assoc-1", node="test-node", called_ae="XNAT", calling_ae="SENDER",
        peer="127.0.0.1", lease=60,
    )  # fmt: skip
    for path in paths:
        item = Received(path.read_bytes(), source="XNAT", association_id="assoc-1")
        assert site.intake.receive(item).result is Result.STORED


def test_an_idle_session_is_built_once_and_handed_on(
    make_site, dcm_dir: Path, monkeypatch, sweepers
) -> None:
    site = make_site()
    watch = Watch(site, monkeypatch)
    assert set(site.receive(write_study(routed("idle"), dcm_dir))) == {"stored"}
    sweeper = sweeper_for(site, watch, sweepers, idle_timeout=0.05)

    sweeper.start()
    assert watch.ready_called.wait(WAIT), "the idle session was never built"
    sweeper.stop(wait=True)

    [session] = site.prearchive()
    assert (session.status, session.files) == (Status.READY, 2)
    assert watch.builds == [(session.id, Status.READY)]
    assert [s.id for s in watch.ready] == [session.id]
    # A READY session is not claimed again.
    assert sweeper.sweep_once() == []


def test_a_session_inside_its_idle_timeout_is_not_claimed(
    make_site, dcm_dir: Path, monkeypatch, sweepers
) -> None:
    site = make_site()
    watch = Watch(site, monkeypatch)
    site.receive(write_study(routed("fresh"), dcm_dir))
    sweeper = sweeper_for(site, watch, sweepers, idle_timeout=300)

    assert sweeper.sweep_once() == []

    [session] = site.prearchive()
    assert session.status is Status.RECEIVING
    assert watch.builds == []


def test_a_session_whose_association_is_open_waits_for_it(
    make_site, dcm_dir: Path, monkeypatch, sweepers
) -> None:
    """A sender may pause between series longer than the idle timeout; while its
    association is open the session is still receiving, however quiet."""
    site = make_site()
    watch = Watch(site, monkeypatch)
    prearchive = site.store.prearchive
    receive_through_open_association(site, write_study(routed("open"), dcm_dir))
    sweeper = sweeper_for(site, watch, sweepers, idle_timeout=-1)

    assert sweeper.sweep_once() == []
    assert [s.status for s in site.prearchive()] == [Status.RECEIVING]

    prearchive.association_closed("assoc-1")
    [claimed] = sweeper.sweep_once()
    assert watch.ready_called.wait(WAIT)
    assert watch.builds == [(claimed.id, Status.READY)]


def test_on_ready_is_not_called_for_a_failed_build(
    make_site, dcm_dir: Path, monkeypatch, sweepers
) -> None:
    site = make_site()
    watch = Watch(site, monkeypatch)
    site.receive(write_study(routed("broken"), dcm_dir))
    [session] = site.prearchive()
    [record, *_] = site.store.index.instances(session.id)
    folder = site.store.prearchive.session_dir(session.name)
    (folder / session_file(record.scan, record.file_name)).unlink()
    sweeper = sweeper_for(site, watch, sweepers, idle_timeout=-1)

    assert [s.id for s in sweeper.sweep_once()] == [session.id]
    assert watch.built.wait(WAIT)
    sweeper.stop(wait=True)  # on_ready, if it were called, ran before this returns

    assert watch.builds == [(session.id, Status.ERROR)]
    assert watch.ready == []
    [failed] = site.prearchive()
    assert failed.status is Status.ERROR


def test_a_crashing_build_does_not_stop_the_next(
    make_site, dcm_dir: Path, monkeypatch, sweepers
) -> None:
    """A bug in one build must not take the build pool down with it."""
    site = make_site()
    watch = Watch(site, monkeypatch)
    watch.crash_first = True
    site.receive(write_study(routed("first", label="MR1"), dcm_dir / "a"))
    sweeper = sweeper_for(site, watch, sweepers, idle_timeout=-1)
    [crashed] = sweeper.sweep_once()
    assert watch.built.wait(WAIT)
    watch.built.clear()

    site.receive(write_study(routed("second", label="MR2"), dcm_dir / "b"))
    [second] = sweeper.sweep_once()
    assert second.id != crashed.id

    assert watch.ready_called.wait(WAIT)
    assert [s.id for s in watch.ready] == [second.id]
    statuses = {s.label: s.status for s in site.prearchive()}
    # The crashed claim stays BUILDING until its lease runs out, then it is retried.
    assert statuses == {"MR1": Status.BUILDING, "MR2": Status.READY}


def test_a_quiet_session_is_digested_before_its_build_and_not_hashed_again(
    make_site, dcm_dir: Path, monkeypatch, sweepers
) -> None:
    """Once its senders are quiet, a session's files are hashed while its idle timeout
    runs; the build then reads no file for a digest, and the catalogs carry them."""
    site = make_site()
    watch = Watch(site, monkeypatch)
    paths = write_study(routed("early", instances=3), dcm_dir)
    site.receive(paths)
    [session] = site.prearchive()
    sweeper = sweeper_for(site, watch, sweepers, idle_timeout=0.4)  # quiet after 0.1 s

    wait_for(lambda: sweeper.digest_quiet_sessions() != [], timeout=WAIT, interval=0.02)
    index = site.store.index
    wait_for(
        lambda: all(r.md5 != PENDING_DIGEST for r in index.instances(session.id)),
        timeout=WAIT,
        interval=0.02,
    )
    [receiving] = site.prearchive()
    assert receiving.status is Status.RECEIVING  # hashed, not built: its timeout still runs
    folder = site.store.prearchive.session_dir(session.name)
    expected = {
        r.sop_instance_uid: hashlib.md5(
            (folder / session_file(r.scan, r.file_name)).read_bytes()
        ).hexdigest()
        for r in index.instances(session.id)
    }
    assert {r.sop_instance_uid: r.md5 for r in index.instances(session.id)} == expected
    assert sweeper.digest_quiet_sessions() == []  # nothing new since: not queued again

    hashed: list[int] = []
    real = session_files.files_md5
    monkeypatch.setattr(
        session_files, "files_md5", lambda p, s: hashed.append(len(p)) or real(p, s)
    )
    wait_for(lambda: sweeper.sweep_once() != [], timeout=WAIT, interval=0.02)
    assert watch.ready_called.wait(WAIT)
    assert hashed == []  # the build took the digests the sweeper had taken
    [built] = site.prearchive()
    assert built.status is Status.READY


def test_a_session_held_by_an_open_association_is_not_digested_early(
    make_site, dcm_dir: Path, monkeypatch, sweepers
) -> None:
    site = make_site()
    watch = Watch(site, monkeypatch)
    prearchive = site.store.prearchive
    receive_through_open_association(site, write_study(routed("held"), dcm_dir))
    sweeper = sweeper_for(site, watch, sweepers, idle_timeout=-1)  # quiet at once

    assert sweeper.digest_quiet_sessions() == []
    prearchive.association_closed("assoc-1")
    assert [s.label for s in sweeper.digest_quiet_sessions()] == ["MR1"]


def test_early_digests_wait_for_a_quarter_of_the_idle_timeout_at_most_a_second() -> None:
    assert early_digest_after(2.0) == 0.5
    assert early_digest_after(60) == 1.0


def test_poll_interval_is_a_tenth_of_the_timeout_within_bounds() -> None:
    assert poll_interval(5.0) == 0.5
    assert poll_interval(0.05) == 0.1
    assert poll_interval(300) == 1.0
