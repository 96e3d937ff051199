"""The index interface: grouping, reopening, compare-and-set builds, idle claims, audit.

Every test runs against each backend through the ``index`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import postgres_schema

from xnatd.store.index import open_index
from xnatd.store.index.base import Index
from xnatd.store.index.records import (
    PENDING_DIGEST,
    InstanceRecord,
    SessionClosed,
    SessionKey,
    Status,
    TakenDigest,
)
from xnatd.store.index.schema import SCHEMA_VERSION

KEY = SessionKey("DEMO", "1.2.3", "S01_MR1")
NODE = "node-a"


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    """Each test on each backend; PostgreSQL gets a schema of its own, dropped after."""
    if request.param == "sqlite":
        backend = open_index("sqlite", tmp_path / "index.sqlite")
        yield backend
        backend.close()
        return
    with postgres_schema() as url:
        backend = open_index(url, tmp_path / "index.sqlite")
        yield backend
        backend.close()


def record(
    uid: str, series: str = "1.2.3.1", scan: str = "1", received: float = 0.0
) -> InstanceRecord:
    return InstanceRecord(
        sop_instance_uid=uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        series_uid=series,
        series_number=scan,
        instance_number="1",
        modality="MR",
        scan=scan,
        file_name=f"{uid}.dcm",
        size=100,
        md5="0" * 32,
        received=received,
    )


def open_session(
    index: Index, key: SessionKey = KEY, now: float = 1000.0, stamp: str = "20240101_000000000"
):
    return index.open_session(
        key, subject="S01", auto_archive=None, source="XNAT", timestamp=stamp, now=now
    )


class TestGrouping:
    def test_same_key_same_session(self, index: Index) -> None:
        first = open_session(index)
        again = open_session(index, now=1001.0, stamp="20240101_000001000")
        assert again.id == first.id and again.timestamp == first.timestamp

    def test_other_study_or_label_is_another_session(self, index: Index) -> None:
        first = open_session(index)
        other_study = open_session(index, SessionKey("DEMO", "9.9", "S01_MR1"))
        other_label = open_session(index, SessionKey("DEMO", "1.2.3", "S01_MR2"))
        assert len({first.id, other_study.id, other_label.id}) == 3

    def test_same_name_in_same_millisecond_gets_next_timestamp(self, index: Index) -> None:
        first = open_session(index)
        second = open_session(index, SessionKey("DEMO", "9.9", "S01_MR1"))
        assert second.timestamp == "20240101_000000001" != first.timestamp

    def test_record_is_idempotent_per_sop_instance(self, index: Index) -> None:
        session = open_session(index)
        assert index.record_instance(session.id, record("1.1"), None, 1000.0).new_instance
        assert not index.record_instance(session.id, record("1.1"), None, 1001.0).new_instance
        stored = index.get_session(session.name)
        assert stored.files == 1 and stored.bytes == 100

    def test_resent_instance_with_new_scan_reports_old_path(self, index: Index) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1", scan="1"), None, 1000.0)
        result = index.record_instance(session.id, record("1.1", scan="7"), None, 1001.0)
        assert result.replaced == ("1", "1.1.dcm")
        assert [r.scan for r in index.instances(session.id)] == ["7"]


class TestBuildClaims:
    def test_idle_session_is_claimed_once(self, index: Index) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        assert index.claim_idle_sessions(now=1004.0, idle_timeout=5, node=NODE, lease=60) == []
        claimed = index.claim_idle_sessions(now=1005.0, idle_timeout=5, node=NODE, lease=60)
        assert [c.id for c in claimed] == [session.id] and claimed[0].status is Status.BUILDING
        assert index.claim_idle_sessions(now=1006.0, idle_timeout=5, node="node-b", lease=60) == []

    def test_open_association_holds_the_timer(self, index: Index) -> None:
        session = open_session(index)
        index.open_association(
            "a1", node=NODE, called_ae="XNAT", calling_ae="CT", peer="x", lease_until=2000.0
        )
        index.record_instance(session.id, record("1.1"), "a1", 1000.0)
        assert index.claim_idle_sessions(now=1100.0, idle_timeout=5, node=NODE, lease=60) == []
        index.close_association("a1")
        assert len(index.claim_idle_sessions(now=1100.0, idle_timeout=5, node=NODE, lease=60)) == 1

    def test_the_association_opening_a_session_holds_it_before_its_first_file(
        self, index: Index
    ) -> None:
        """A 2 GB object may take longer to write than the idle timeout: the empty
        session it opened must not be built (and discarded as empty) meanwhile."""
        index.open_association(
            "a1", node=NODE, called_ae="XNAT", calling_ae="CT", peer="x", lease_until=2000.0
        )
        session = index.open_session(
            KEY,
            subject="S01",
            auto_archive=None,
            source="XNAT",
            timestamp="20240101_000000000",
            now=1000.0,
            association_id="a1",
        )
        assert index.claim_idle_sessions(now=1100.0, idle_timeout=5, node=NODE, lease=60) == []
        index.record_instance(session.id, record("1.1"), "a1", 1100.0)
        index.close_association("a1")
        assert len(index.claim_idle_sessions(now=1200.0, idle_timeout=5, node=NODE, lease=60)) == 1

    def test_expired_association_lease_frees_the_session(self, index: Index) -> None:
        """A node that died without closing its association does not hold a session forever."""
        session = open_session(index)
        index.open_association(
            "a1", node="dead", called_ae="XNAT", calling_ae="CT", peer="x", lease_until=1050.0
        )
        index.record_instance(session.id, record("1.1"), "a1", 1000.0)
        assert index.claim_idle_sessions(now=1040.0, idle_timeout=5, node=NODE, lease=60) == []
        assert len(index.claim_idle_sessions(now=1060.0, idle_timeout=5, node=NODE, lease=60)) == 1

    def test_files_during_build_reopen_and_void_the_build(self, index: Index) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        index.claim_idle_sessions(now=1010.0, idle_timeout=5, node=NODE, lease=60)
        index.record_instance(session.id, record("1.2"), None, 1011.0)
        assert not index.finish_build(
            session.id, node=NODE, status=Status.READY, reason=None, xsi_type=None
        )
        assert index.get_session(session.name).status is Status.RECEIVING

    def test_finish_build_needs_the_claim(self, index: Index) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        index.claim_idle_sessions(now=1010.0, idle_timeout=5, node=NODE, lease=60)
        assert not index.finish_build(
            session.id, node="other", status=Status.READY, reason=None, xsi_type=None
        )
        assert index.finish_build(
            session.id, node=NODE, status=Status.READY, reason=None, xsi_type="mrSessionData"
        )
        assert index.get_session(session.name).status is Status.READY

    def test_expired_build_claim_is_retaken(self, index: Index) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        index.claim_idle_sessions(now=1010.0, idle_timeout=5, node="dead", lease=60)
        assert index.claim_idle_sessions(now=1060.0, idle_timeout=5, node=NODE, lease=60) == []
        assert len(index.claim_idle_sessions(now=1071.0, idle_timeout=5, node=NODE, lease=60)) == 1

    def test_release_claims_returns_sessions_to_receiving(self, index: Index) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        index.claim_idle_sessions(now=1010.0, idle_timeout=5, node=NODE, lease=60)
        assert index.release_claims(NODE) == 1
        assert index.get_session(session.name).status is Status.RECEIVING

    def test_quiet_sessions_are_receiving_unheld_and_quiet_and_are_not_claimed(
        self, index: Index
    ) -> None:
        """What the sweeper digests early: a session no open association holds and no
        file has reached for ``quiet`` seconds; reading them claims nothing."""
        session = open_session(index)
        index.open_association(
            "a1", node=NODE, called_ae="XNAT", calling_ae="CT", peer="x", lease_until=2000.0
        )
        index.record_instance(session.id, record("1.1"), "a1", 1000.0)
        assert index.quiet_sessions(now=1100.0, quiet=1) == []  # its sender is still there
        index.close_association("a1")
        assert index.quiet_sessions(now=1000.5, quiet=1) == []  # not quiet long enough
        [quiet] = index.quiet_sessions(now=1001.0, quiet=1)
        assert (quiet.id, quiet.status, quiet.files) == (session.id, Status.RECEIVING, 1)
        claimed = index.claim_idle_sessions(now=1100.0, idle_timeout=5, node=NODE, lease=60)
        assert [c.id for c in claimed] == [session.id]
        assert index.quiet_sessions(now=1100.0, quiet=1) == []  # BUILDING: the build's now


class TestReopening:
    @pytest.mark.parametrize("status", [Status.READY, Status.CONFLICT, Status.ERROR])
    def test_files_reopen_ready_conflict_error(self, index: Index, status: Status) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        index.claim_idle_sessions(now=1010.0, idle_timeout=5, node=NODE, lease=60)
        index.finish_build(session.id, node=NODE, status=status, reason="x", xsi_type=None)
        again = open_session(index, now=1020.0)
        assert again.id == session.id and again.status is Status.RECEIVING and again.reason is None

    @pytest.mark.parametrize("status", ["ARCHIVING", "MOVING", "DELETING"])
    def test_files_during_archiving_start_a_new_session(self, index: Index, status: str) -> None:
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        _force_status(index, session.id, status)
        with pytest.raises(SessionClosed):
            index.record_instance(session.id, record("1.2"), None, 1001.0)
        fresh = open_session(index, now=1002.0, stamp="20240101_000002000")
        assert fresh.id != session.id and fresh.status is Status.RECEIVING


def test_digests_fill_pending_rows_but_not_a_replacement(index: Index) -> None:
    """A digest taken from a file lands on its row only if the row is still that
    file's: a copy received meanwhile (another ``received``) waits for its own."""
    session = open_session(index)
    for uid, received in (("1.1", 1.0), ("1.2", 2.0), ("1.2", 3.0)):
        pending = replace(record(uid, received=received), md5=PENDING_DIGEST)
        index.record_instance(session.id, pending, None, 1000.0 + received)
    index.set_digests(session.id, [("1.1", 1.0, "a" * 32), ("1.2", 2.0, "b" * 32)])
    digests = {r.sop_instance_uid: r.md5 for r in index.instances(session.id)}
    assert digests == {"1.1": "a" * 32, "1.2": PENDING_DIGEST}
    index.set_digests(session.id, [("1.1", 1.0, "c" * 32)])  # taken once, never overwritten
    assert index.instances(session.id)[0].md5 == "a" * 32


def test_digests_taken_on_receipt_ride_on_the_next_row_or_on_their_own(index: Index) -> None:
    """A receiving thread's digests are recorded with its next file's row, the last
    ones at the association's close; each only on the row its file made, never on a
    later copy of the instance (another ``received``) or a row rewritten since (another
    size), and never over a digest already taken."""
    session = open_session(index)

    def receive(uid: str, received: float, digests: list[TakenDigest]) -> None:
        pending = replace(record(uid, received=received), md5=PENDING_DIGEST)
        index.record_instance(session.id, pending, "a1", 1000.0 + received, (), digests)

    receive("1.1", 1.0, [])
    receive("1.2", 2.0, [TakenDigest(session.id, "1.1", 1.0, 100, "a" * 32)])
    assert {r.sop_instance_uid: r.md5 for r in index.instances(session.id)} == {
        "1.1": "a" * 32,
        "1.2": PENDING_DIGEST,
    }
    receive("1.3", 3.0, [])
    other = open_session(index, SessionKey("OTHER", "4.5", "X"))
    twin = replace(record("1.3", received=3.0), md5=PENDING_DIGEST)  # same UID, time, size
    index.record_instance(other.id, twin, None, 1003.0)
    index.record_digests(
        [
            TakenDigest(session.id, "1.2", 2.0, 100, "b" * 32),
            TakenDigest(session.id, "1.3", 3.0, 99, "c" * 32),  # not this row's size
            TakenDigest(session.id, "1.1", 1.0, 100, "d" * 32),  # has one already
            TakenDigest(other.id, "1.3", 3.0, 100, "e" * 32),  # the other session's
        ]
    )
    assert {r.sop_instance_uid: r.md5 for r in index.instances(session.id)} == {
        "1.1": "a" * 32,
        "1.2": "b" * 32,
        "1.3": PENDING_DIGEST,
    }
    assert [r.md5 for r in index.instances(other.id)] == ["e" * 32]
    receive("1.3", 4.0, [TakenDigest(session.id, "1.3", 3.0, 100, "f" * 32)])  # a resend
    assert index.instances(session.id)[-1].md5 == PENDING_DIGEST


def _force_status(index: Index, session_id: int, status: str) -> None:
    # Archive/move/delete transitions are tested with the archive; set the state directly.
    with index._write() as connection:  # type: ignore[attr-defined]
        connection.execute("UPDATE prearchive SET status = ? WHERE id = ?", (status, session_id))


def test_empty_session_is_removed(index: Index) -> None:
    session = open_session(index)
    assert index.delete_session_if_empty(session.id)
    assert index.get_session(session.name) is None


def test_listing_filters_and_counts(index: Index) -> None:
    a = open_session(index)
    index.record_instance(a.id, record("1.1", scan="1"), None, 1000.0)
    index.record_instance(a.id, record("1.2", series="1.2.3.2", scan="2"), None, 1000.0)
    open_session(index, SessionKey("OTHER", "4.5", "X"))
    assert [s.project for s in index.list_sessions(project="DEMO")] == ["DEMO"]
    assert index.list_sessions(project="DEMO")[0].scans == 2
    assert len(index.list_sessions(status="receiving")) == 2
    assert index.count_by_status() == {"RECEIVING": 2}


def test_audit_is_append_only_and_filtered_by_session(index: Index) -> None:
    index.audit("receive", actor="CT1", session="DEMO/1/S", details={"files": 3}, now=1.0)
    index.audit("build", actor="xnatd", session="DEMO/1/S", details={}, now=2.0)
    index.audit("reject", actor="CT1", session=None, details={"reason": "x"}, now=3.0)
    events = index.audit_events("DEMO/1/S")
    assert [e.event for e in events] == ["receive", "build"] and events[0].details == {"files": 3}
    assert len(index.audit_events()) == 3


def test_schema_is_versioned_and_reopens(tmp_path: Path) -> None:
    first = open_index("sqlite", tmp_path / "index.sqlite")
    assert first.schema_version() == SCHEMA_VERSION
    first.close()
    again = open_index("sqlite", tmp_path / "index.sqlite")
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_index_from_a_newer_xnatd_is_refused(tmp_path: Path) -> None:
    first = open_index("sqlite", tmp_path / "index.sqlite")
    first.db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")  # type: ignore[attr-defined]
    first.close()
    with pytest.raises(RuntimeError, match="newer"):
        open_index("sqlite", tmp_path / "index.sqlite")


class TestFlushOnCommit:
    """SQLite: a file's row commits without an fsync of the WAL (the file is flushed and
    the build records it again if a power cut loses the row); a change the build could
    not recover from the files is flushed."""

    @pytest.fixture
    def flushes(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
        from xnatd.store.index import sqlite as sqlite_module

        index = open_index("sqlite", tmp_path / "index.sqlite")
        wal_fsyncs: list[int] = []
        real_fsync = sqlite_module.os.fsync
        monkeypatch.setattr(
            sqlite_module.os, "fsync", lambda fd: (wal_fsyncs.append(fd), real_fsync(fd))
        )
        levels: list[str] = []
        index.db.conn.set_trace_callback(
            lambda sql: levels.append(sql) if "synchronous" in sql else None
        )
        yield index, wal_fsyncs, levels
        index.close()

    def test_a_new_instance_in_a_receiving_session_is_not_flushed(self, flushes) -> None:
        index, wal_fsyncs, levels = flushes
        session = open_session(index)
        assert len(wal_fsyncs) == 1  # opening a session is flushed
        wal_fsyncs.clear()
        levels.clear()
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        index.record_instance(session.id, record("1.2"), None, 1001.0)
        assert wal_fsyncs == []
        assert levels == []  # no setting changed per write: the WAL's fsync is ours

    def test_a_write_that_changed_nothing_is_not_flushed(self, flushes) -> None:
        index, wal_fsyncs, _ = flushes
        open_session(index)
        wal_fsyncs.clear()
        assert index.claim_idle_sessions(now=0.0, idle_timeout=1, node=NODE, lease=60) == []
        assert wal_fsyncs == []

    def test_reopening_a_built_session_is_flushed(self, flushes) -> None:
        index, wal_fsyncs, _ = flushes
        session = open_session(index)
        index.record_instance(session.id, record("1.1"), None, 1000.0)
        [claimed] = index.claim_idle_sessions(now=2000.0, idle_timeout=1, node=NODE, lease=60)
        assert index.finish_build(
            claimed.id, node=NODE, status=Status.READY, reason=None, xsi_type=None
        )
        wal_fsyncs.clear()
        index.record_instance(session.id, record("1.2"), None, 2001.0)
        assert len(wal_fsyncs) == 1
        assert index.get_session(session.name).status is Status.RECEIVING

    def test_a_resent_instance_is_flushed(self, flushes) -> None:
        index, wal_fsyncs, _ = flushes
        session = open_session(index)
        index.record_instance(session.id, record("1.1", scan="1"), None, 1000.0)
        wal_fsyncs.clear()
        index.record_instance(session.id, record("1.1", scan="7"), None, 1001.0)
        assert len(wal_fsyncs) == 1
