"""Files a writer named but never recorded (it died, or a power cut lost the row) are
adopted by the session's build: recorded, catalogued and archived like the rest."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Site
from lxml import etree

from xnatd.store.index.records import Status

CAT = {"cat": "http://nrg.wustl.edu/catalog"}


def spec() -> StudySpec:
    return StudySpec(
        "unrecorded",
        patient_comments="Project: DEMO Subject: SUBJ01 Session: MR1",
        series=[SeriesSpec(1, instances=4)],
    )


def receive_all_but_last(site: Site, folder: Path) -> tuple[Path, Path]:
    """Receive all but the last file; returns the last file and its scan folder."""
    paths = write_study(spec(), folder)
    assert site.receive(paths[:-1]) == ["stored"] * 3
    [stored, *_] = sorted(site.store.data.prearchive.rglob("*.dcm"))
    return paths[-1], stored.parent


def as_if_written_without_row(source: Path, scan_folder: Path, name: str, age: float) -> Path:
    target = scan_folder / name
    shutil.copyfile(source, target)
    then = time.time() - age
    os.utime(target, (then, then))
    return target


def catalogued(site: Site, session_name) -> set[str]:
    folder = site.store.prearchive.session_dir(session_name)
    [catalog] = folder.glob("SCANS/*/DICOM/*_catalog.xml")
    return {entry.get("URI") for entry in etree.parse(catalog).iterfind(".//cat:entry", CAT)}


def test_a_whole_file_without_a_row_is_recorded_and_catalogued(make_site, dcm_dir: Path) -> None:
    site = make_site({"DEMO": {"prearchive": "manual"}})
    last, scan_folder = receive_all_but_last(site, dcm_dir)
    orphan = as_if_written_without_row(last, scan_folder, "written-before-a-crash.dcm", 10)

    site.build_all()

    [session] = site.prearchive()
    assert (session.status, session.files) == (Status.READY, 4)
    assert session.bytes == sum(p.stat().st_size for p in scan_folder.glob("*.dcm"))
    assert orphan.name in catalogued(site, session.name)
    [record] = [r for r in site.store.index.instances(session.id) if r.file_name == orphan.name]
    assert record.size == orphan.stat().st_size


def test_a_file_still_being_recorded_is_left_to_its_writer(make_site, dcm_dir: Path) -> None:
    site = make_site({"DEMO": {"prearchive": "manual"}})
    last, scan_folder = receive_all_but_last(site, dcm_dir)
    as_if_written_without_row(last, scan_folder, "just-named.dcm", 0)

    site.build_all()

    [session] = site.prearchive()
    assert session.files == 3
    assert "just-named.dcm" not in catalogued(site, session.name)


def test_an_unrecorded_copy_of_a_recorded_instance_is_removed(make_site, dcm_dir: Path) -> None:
    """The same SOP instance under another name was a resend never acknowledged."""
    site = make_site({"DEMO": {"prearchive": "manual"}})
    _, scan_folder = receive_all_but_last(site, dcm_dir)
    recorded = sorted(scan_folder.glob("*.dcm"))[0]
    copy = as_if_written_without_row(recorded, scan_folder, "resent-copy.dcm", 10)

    site.build_all()

    [session] = site.prearchive()
    assert session.files == 3
    assert not copy.exists() and recorded.exists()


def test_the_adopted_file_is_archived_with_the_session(make_site, dcm_dir: Path) -> None:
    site = make_site({"DEMO": {"prearchive": "auto-archive"}})
    last, scan_folder = receive_all_but_last(site, dcm_dir)
    as_if_written_without_row(last, scan_folder, "written-before-a-crash.dcm", 10)

    site.build_all()

    [archived] = site.archived()
    folder = site.store.data.root / archived.path
    assert len(list(folder.glob("SCANS/*/DICOM/*.dcm"))) == 4
    assert len(site.store.index.archived_instances(archived.id)) == 4
