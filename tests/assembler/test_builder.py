"""``Builder.build`` (SPEC 4.2, 5.2) on sessions received through the in-process site.

Each test claims its sessions as the sweeper would (idle timeout ignored) and builds
them directly, so the outcome of one build is what is asserted.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Site
from lxml import etree

from xnatd.intake.intake import Received, Result, SessionCache
from xnatd.store.durable import part_name
from xnatd.store.index.records import PENDING_DIGEST, PrearchiveSession, Status
from xnatd.store.layout import session_file

NS = {"xnat": "http://nrg.wustl.edu/xnat", "cat": "http://nrg.wustl.edu/catalog"}


def routed(seed: str, series: list[SeriesSpec]) -> StudySpec:
    return StudySpec(
        seed, patient_comments="Project: DEMO Subject: SUBJ01 Session: MR1", series=series
    )


def claim(site: Site) -> PrearchiveSession:
    [session] = site.store.assembly.claim_idle_sessions(idle_timeout=-1, node="test-node", lease=60)
    assert session.status is Status.BUILDING
    return session


def current(site: Site) -> PrearchiveSession | None:
    found = site.prearchive()
    assert len(found) <= 1
    return found[0] if found else None


def scan_ids(site: Site, session: PrearchiveSession) -> list[str]:
    document = site.store.data.session_document(session.name)
    root = etree.parse(str(document)).getroot()
    return [scan.get("ID") for scan in root.iterfind(".//xnat:scans/xnat:scan", NS)]


def test_a_session_builds_ready_with_its_scans_and_files(make_site, dcm_dir: Path) -> None:
    site = make_site()
    spec = routed("ready", [SeriesSpec(1, instances=3), SeriesSpec(2, instances=2)])
    assert set(site.receive(write_study(spec, dcm_dir))) == {"stored"}

    assert site.builder.build(claim(site)) is Status.READY

    session = current(site)
    assert session is not None
    assert (session.status, session.scans, session.files) == (Status.READY, 2, 5)
    assert session.reason is None and session.xsi_type == "mrSessionData"
    assert scan_ids(site, session) == ["1", "2"]
    folder = site.store.prearchive.session_dir(session.name)
    for scan, count in (("1", 3), ("2", 2)):
        catalog = folder / "SCANS" / scan / "DICOM" / f"scan_{scan}_catalog.xml"
        entries = etree.parse(str(catalog)).getroot().findall(".//cat:entry", NS)
        assert len(entries) == count
        assert all((catalog.parent / e.get("URI")).is_file() for e in entries)
    [event] = [e for e in site.store.audit.events(str(session.name)) if e.event == "build"]
    assert (event.details["files"], event.details["scans"]) == (5, 2)


def test_digests_are_the_md5_of_the_stored_files(make_site, dcm_dir: Path) -> None:
    site = make_site()
    assert set(site.receive(write_study(routed("md5", [SeriesSpec(1)]), dcm_dir))) == {"stored"}
    session = claim(site)
    # Received files are not hashed on the receiving thread: the build does it.
    assert {r.md5 for r in site.store.index.instances(session.id)} == {PENDING_DIGEST}

    site.builder.build(session)

    folder = site.store.prearchive.session_dir(session.name)
    records = site.store.index.instances(session.id)
    assert len(records) == 3
    for record in records:
        data = (folder / session_file(record.scan, record.file_name)).read_bytes()
        assert record.md5 == hashlib.md5(data).hexdigest()


def test_a_series_number_used_twice_is_split_into_scans(make_site, dcm_dir: Path) -> None:
    """Two series both numbered 5 (a scanner restarted numbering): each keeps its own
    scan, the second named ``5-MR1``, and its files move to that folder."""
    site = make_site()
    spec = routed(
        "dup", [SeriesSpec(5, instances=2, uid_seed="a"), SeriesSpec(5, instances=3, uid_seed="b")]
    )
    assert set(site.receive(write_study(spec, dcm_dir))) == {"stored"}
    session = claim(site)

    assert site.builder.build(session) is Status.READY

    built = current(site)
    assert built is not None and built.scans == 2
    assert sorted(scan_ids(site, built)) == ["5", "5-MR1"]
    records = site.store.index.instances(session.id)
    by_scan: dict[str, set[str]] = {}
    for record in records:
        by_scan.setdefault(record.scan, set()).add(record.series_uid)
    assert sorted(by_scan) == ["5", "5-MR1"]
    assert all(len(uids) == 1 for uids in by_scan.values())  # one series per scan
    folder = site.store.prearchive.session_dir(session.name)
    on_disk = {
        scan: len(list((folder / "SCANS" / scan / "DICOM").glob("*.dcm"))) for scan in by_scan
    }
    counts = sorted(on_disk.values())
    assert counts == [2, 3]
    for record in records:
        assert (folder / session_file(record.scan, record.file_name)).is_file()


def test_a_rebuild_keeps_the_split_scan_names(make_site, dcm_dir: Path) -> None:
    site = make_site()
    spec = routed("dup2", [SeriesSpec(5, uid_seed="a"), SeriesSpec(5, uid_seed="b")])
    site.receive(write_study(spec, dcm_dir))
    session = claim(site)
    site.builder.build(session)
    before = {(r.sop_instance_uid, r.scan) for r in site.store.index.instances(session.id)}

    assert site.operations.rebuild(session.name, "t") is Status.READY

    after = {(r.sop_instance_uid, r.scan) for r in site.store.index.instances(session.id)}
    assert after == before


def test_an_empty_session_is_discarded(make_site, dcm_dir: Path) -> None:
    """A session whose only file was rolled back (a failed upload) has nothing to
    build: it goes, folder and all, rather than becoming an empty READY session."""
    site = make_site()
    [path] = write_study(routed("empty", [SeriesSpec(1, instances=1)]), dcm_dir)
    cache = SessionCache(written=[])
    item = Received(path.read_bytes(), source="import")
    assert site.intake.receive(item, cache).result is Result.STORED
    site.store.prearchive.roll_back(cache.written, created=set())
    session = claim(site)
    assert session.files == 0

    assert site.builder.build(session) is None

    assert site.prearchive() == []
    assert not site.store.prearchive.session_dir(session.name).exists()
    assert list(site.store.data.prearchive.rglob("*")) == []


def test_a_vanished_file_makes_an_error_that_names_it(make_site, dcm_dir: Path) -> None:
    site = make_site()
    site.receive(write_study(routed("gone", [SeriesSpec(1, instances=3)]), dcm_dir))
    session = claim(site)
    [victim, *_] = site.store.index.instances(session.id)
    folder = site.store.prearchive.session_dir(session.name)
    (folder / session_file(victim.scan, victim.file_name)).unlink()

    assert site.builder.build(session) is Status.ERROR

    failed = current(site)
    assert failed is not None and failed.status is Status.ERROR
    assert failed.reason.startswith("build failed")
    assert victim.file_name in failed.reason
    # A missing file will not come back by waiting: no automatic retry is scheduled.
    assert failed.retry_at is None
    assert not site.store.data.session_document(session.name).exists()


def test_a_file_arriving_during_the_build_reopens_the_session(make_site, dcm_dir: Path) -> None:
    """The build must not mark READY a session that got a file it did not catalog."""
    site = make_site()
    first, second = write_study(routed("late", [SeriesSpec(1, instances=2)]), dcm_dir)
    site.receive([first])
    session = claim(site)
    site.receive([second])

    assert site.builder.build(session) is None

    reopened = current(site)
    assert reopened is not None
    assert (reopened.status, reopened.files) == (Status.RECEIVING, 2)


def test_a_crashed_writers_part_file_is_removed_by_the_build(make_site, dcm_dir: Path) -> None:
    """A writer killed between its fsync and its rename leaves ``.FILE...part``; the
    build is the only thing that ever looks in the folder again."""
    site = make_site()
    site.receive(write_study(routed("part", [SeriesSpec(1, instances=2)]), dcm_dir))
    session = claim(site)
    folder = site.store.prearchive.session_dir(session.name) / "SCANS" / "1" / "DICOM"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now that of a dead writer
    mine = part_name(folder / "never-finished.dcm")
    crashed = mine.with_name(mine.name.replace(f".{os.getpid()}@", f".{child.pid}@"))
    crashed.write_bytes(b"half a file")
    live = part_name(folder / "being-written.dcm")  # this process: still writing
    live.write_bytes(b"half a file")

    assert site.builder.build(session) is Status.READY

    assert not crashed.exists()
    assert live.exists()
    built = current(site)
    assert built is not None and built.files == 2
