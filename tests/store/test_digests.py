"""Catalog digests: a received file's MD5 is taken from the file when its session is
built (not on the receiving thread), recorded once, and named when it cannot be."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from lxml import etree

from xnatd import payload
from xnatd.store import digests
from xnatd.store.index.records import PENDING_DIGEST, Status
from xnatd.store.layout import session_file

CAT = {"cat": "http://nrg.wustl.edu/catalog"}


def received_session(make_site, folder: Path, instances: int = 5):
    site = make_site({"DEMO": {"prearchive": "manual"}})
    study = StudySpec(
        "digests",
        patient_comments="Project: DEMO Subject: SUBJ01 Session: MR1",
        series=[SeriesSpec(1, instances=instances)],
    )
    assert site.receive(write_study(study, folder)) == ["stored"] * instances
    [session] = site.prearchive()
    return site, session


def md5_of_stored(site, session) -> dict[str, str]:
    folder = site.store.prearchive.session_dir(session.name)
    return {
        record.sop_instance_uid: hashlib.md5(
            (folder / session_file(record.scan, record.file_name)).read_bytes()
        ).hexdigest()
        for record in site.store.index.instances(session.id)
    }


def test_digests_wait_for_the_build_then_match_the_files(make_site, dcm_dir: Path) -> None:
    site, session = received_session(make_site, dcm_dir)
    assert {r.md5 for r in site.store.index.instances(session.id)} == {PENDING_DIGEST}

    site.build_all()

    expected = md5_of_stored(site, session)
    recorded = {r.sop_instance_uid: r.md5 for r in site.store.index.instances(session.id)}
    assert recorded == expected
    folder = site.store.prearchive.session_dir(session.name)
    [catalog] = folder.glob("SCANS/*/DICOM/*_catalog.xml")
    entries = etree.parse(catalog).iterfind(".//cat:entry", CAT)
    assert {entry.get("UID"): entry.get("digest") for entry in entries} == expected


def test_archived_catalog_carries_the_digests(make_site, dcm_dir: Path) -> None:
    site, session = received_session(make_site, dcm_dir)
    expected = set(md5_of_stored(site, session).values())
    site.build_all()
    site.operations.archive(session.name, "none", "test")
    [archived] = site.archived()
    catalogs = list((site.store.data.root / archived.path).glob("SCANS/*/DICOM/*_catalog.xml"))
    digests = {
        entry.get("digest")
        for catalog in catalogs
        for entry in etree.parse(catalog).iterfind(".//cat:entry", CAT)
    }
    assert digests == expected


def test_a_recorded_file_gone_before_the_build_is_named(make_site, dcm_dir: Path) -> None:
    site, session = received_session(make_site, dcm_dir)
    record = site.store.index.instances(session.id)[2]
    gone = site.store.prearchive.session_dir(session.name) / session_file(
        record.scan, record.file_name
    )
    gone.unlink()

    site.build_all()

    [after] = site.prearchive()
    assert after.status is Status.ERROR
    assert gone.name in (after.reason or "")


@pytest.mark.parametrize("parallel_from", [0, 1 << 40])
def test_files_md5_in_threads_or_not_gives_each_file_its_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel_from: int
) -> None:
    monkeypatch.setattr(digests, "PARALLEL_FROM", parallel_from)
    monkeypatch.setattr(digests, "THREADS", 3)
    monkeypatch.setattr(payload, "IN_MEMORY_LIMIT", 1000)  # the larger ones read in chunks
    sizes = [0, 10, 999, 1001, 5000, 70_000, 3, 40_000]
    paths = []
    for number, size in enumerate(sizes):
        path = tmp_path / f"{number}.dcm"
        path.write_bytes(bytes([number]) * size)
        paths.append(path)
    expected = [hashlib.md5(path.read_bytes()).hexdigest() for path in paths]
    assert digests.files_md5(paths, sizes) == expected
