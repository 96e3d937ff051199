"""``Intake.receive`` in process (SPEC 3, 4.1): what a sender's file becomes.

Every door (C-STORE, import, inbox, HTTP) hands its files to this one call; these
tests call it directly on real Part 10 files, without sockets.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Site

from xnatd import payload
from xnatd.intake.intake import Received, Result
from xnatd.payload import SpooledFile, file_payload
from xnatd.routing import UNASSIGNED
from xnatd.store.index.records import Status


def routed(seed: str, project: str = "DEMO", **kw) -> StudySpec:
    comments = f"Project: {project} Subject: SUBJ01 Session: MR1"
    return StudySpec(seed, patient_comments=comments, **kw)


def receive(site: Site, data: bytes):
    return site.intake.receive(Received(data, source="TEST", calling_ae="SENDER"))


def stored_files(site: Site) -> list[Path]:
    return sorted(site.store.data.prearchive.rglob("*.dcm"))


def test_a_valid_file_is_stored_in_its_routed_session(make_site, dcm_dir: Path) -> None:
    site = make_site()
    [path] = write_study(routed("one", series=[SeriesSpec(4, instances=1)]), dcm_dir)

    outcome = receive(site, path.read_bytes())

    assert outcome.result is Result.STORED and outcome.reason is None
    [session] = site.prearchive()
    assert (session.project, session.subject, session.label) == ("DEMO", "SUBJ01", "MR1")
    assert session.status is Status.RECEIVING and session.files == 1
    assert outcome.session == str(session.name)
    assert outcome.study_uid == session.study_uid == routed("one").study_uid
    [stored] = stored_files(site)
    assert stored.parent == site.store.prearchive.session_dir(session.name) / "SCANS/4/DICOM"
    assert stored.read_bytes() == path.read_bytes()


def test_a_second_file_of_the_study_joins_the_session(make_site, dcm_dir: Path) -> None:
    site = make_site()
    first, second = write_study(routed("two", series=[SeriesSpec(1, instances=2)]), dcm_dir)

    a = receive(site, first.read_bytes())
    b = receive(site, second.read_bytes())

    assert a.result is b.result is Result.STORED
    assert a.session == b.session
    [session] = site.prearchive()
    assert session.files == 2
    assert len(site.store.index.instances(session.id)) == 2
    assert len(stored_files(site)) == 2


def test_a_resent_instance_is_not_a_second_instance(make_site, dcm_dir: Path) -> None:
    """A sender that retries after a lost response sends the same SOP instance again:
    it is acknowledged, and the session still holds it once."""
    site = make_site()
    [path] = write_study(routed("again", series=[SeriesSpec(1, instances=1)]), dcm_dir)

    outcomes = [receive(site, path.read_bytes()) for _ in range(2)]

    assert [o.result for o in outcomes] == [Result.STORED, Result.STORED]
    [session] = site.prearchive()
    assert session.files == 1
    [record] = site.store.index.instances(session.id)
    assert record.sop_instance_uid == pydicom.dcmread(path).SOPInstanceUID
    [stored] = stored_files(site)
    assert stored.read_bytes() == path.read_bytes()


def test_bytes_that_are_not_dicom_are_rejected_and_nothing_is_written(make_site) -> None:
    site = make_site()

    outcome = receive(site, b"this is not a DICOM file at all" * 10)

    assert outcome.result is Result.REJECTED
    assert outcome.reason and outcome.session is None
    assert site.prearchive() == []
    assert stored_files(site) == []
    [event] = [e for e in site.store.audit.events() if e.event == "reject"]
    assert event.actor == "SENDER" and event.details["reason"] == outcome.reason


def test_a_truncated_file_is_rejected_and_nothing_is_written(make_site, dcm_dir: Path) -> None:
    """A file cut inside its pixel data parses as far as its header: it must still be
    refused, not stored short."""
    site = make_site()
    [path] = write_study(routed("cut", series=[SeriesSpec(1, instances=1)]), dcm_dir)
    data = path.read_bytes()

    outcome = receive(site, data[: len(data) - 40])

    assert outcome.result is Result.REJECTED and outcome.reason
    assert site.prearchive() == []
    assert stored_files(site) == []


def test_a_file_without_a_sop_instance_uid_is_rejected(make_site, dcm_dir: Path) -> None:
    site = make_site()
    [path] = write_study(routed("nouid", series=[SeriesSpec(1, instances=1)]), dcm_dir)
    ds = pydicom.dcmread(path)
    del ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)

    outcome = receive(site, path.read_bytes())

    assert outcome.result is Result.REJECTED
    assert "SOP Instance UID" in outcome.reason
    assert site.prearchive() == [] and stored_files(site) == []


def test_a_file_for_an_unknown_project_goes_to_unassigned(make_site, dcm_dir: Path) -> None:
    """SPEC 3.1: a candidate that names no configured project is skipped; with none
    left (and no receiver default) the file goes to Unassigned, not refused."""
    site = make_site()
    spec = routed("lost", project="NOSUCH", series=[SeriesSpec(1, instances=1)])
    [path] = write_study(spec, dcm_dir)

    outcome = receive(site, path.read_bytes())

    assert outcome.result is Result.STORED
    [session] = site.prearchive()
    assert session.project == UNASSIGNED
    assert (session.subject, session.label) == ("SUBJ01", "MR1")
    [stored] = stored_files(site)
    assert stored.is_relative_to(site.store.data.prearchive / UNASSIGNED)


def test_the_site_script_runs_before_the_write(make_site, tmp_path: Path, dcm_dir: Path) -> None:
    script = tmp_path / "site.das"
    script.write_text('version "6.3"\n(0018,1030) := "SCRIPTED"\n(0010,0010) := "ANON"\n')
    site = make_site(anonymization=str(script))
    [path] = write_study(routed("script", series=[SeriesSpec(1, instances=1)]), dcm_dir)
    assert "ProtocolName" not in pydicom.dcmread(path)

    outcome = receive(site, path.read_bytes())

    assert outcome.result is Result.STORED
    [stored] = stored_files(site)
    ds = pydicom.dcmread(stored)
    assert ds.ProtocolName == "SCRIPTED"
    assert ds.PatientName == "ANON"
    # Routing read the sender's header: the session is where its comments said.
    [session] = site.prearchive()
    assert (session.project, session.label) == ("DEMO", "MR1")


def test_an_upload_marked_anonymized_skips_the_site_script(
    make_site, tmp_path: Path, dcm_dir: Path
) -> None:
    script = tmp_path / "site.das"
    script.write_text('version "6.3"\n(0018,1030) := "SCRIPTED"\n')
    site = make_site(anonymization=str(script))
    [path] = write_study(routed("prevent", series=[SeriesSpec(1, instances=1)]), dcm_dir)

    item = Received(path.read_bytes(), source="import", anonymize=False)
    assert site.intake.receive(item).result is Result.STORED

    [stored] = stored_files(site)
    assert stored.read_bytes() == path.read_bytes()


def test_a_resend_with_a_new_instance_number_replaces_the_first_file(
    make_site, dcm_dir: Path
) -> None:
    """The same SOP instance sent again under another Instance Number is named
    differently on disk: the old file goes, so the session never holds it twice."""
    site = make_site()
    [path] = write_study(routed("renumber", series=[SeriesSpec(1, instances=1)]), dcm_dir)
    first = path.read_bytes()
    ds = pydicom.dcmread(path)
    ds.InstanceNumber = 99
    ds.save_as(path, enforce_file_format=True)

    assert receive(site, first).result is Result.STORED
    assert receive(site, path.read_bytes()).result is Result.STORED

    [session] = site.prearchive()
    assert session.files == 1
    [record] = site.store.index.instances(session.id)
    assert record.instance_number == "99"
    [stored] = stored_files(site)
    assert stored.name == record.file_name
    assert stored.read_bytes() == path.read_bytes()


def test_a_large_file_is_stored_from_disk_exactly(make_site, dcm_dir: Path, monkeypatch) -> None:
    """Past IN_MEMORY_LIMIT a file is handed on as a SpooledFile (never read whole):
    what is stored must still be the sender's bytes."""
    monkeypatch.setattr(payload, "IN_MEMORY_LIMIT", 1000)
    site = make_site()
    spec = routed("large", series=[SeriesSpec(1, instances=1, rows=64, columns=64)])
    [path] = write_study(spec, dcm_dir)
    data = file_payload(path)
    assert isinstance(data, SpooledFile)

    outcome = site.intake.receive(Received(data, source="import"))

    assert outcome.result is Result.STORED
    [stored] = stored_files(site)
    assert stored.read_bytes() == path.read_bytes()


def test_a_large_file_goes_through_the_site_script(
    make_site, tmp_path: Path, dcm_dir: Path, monkeypatch
) -> None:
    monkeypatch.setattr(payload, "IN_MEMORY_LIMIT", 1000)
    script = tmp_path / "site.das"
    script.write_text('version "6.3"\n(0018,1030) := "SCRIPTED"\n')
    site = make_site(anonymization=str(script))
    spec = routed("large-anon", series=[SeriesSpec(1, instances=1, rows=64, columns=64)])
    [path] = write_study(spec, dcm_dir)
    data = file_payload(path)
    assert isinstance(data, SpooledFile)

    outcome = site.intake.receive(Received(data, source="import"))

    assert outcome.result is Result.STORED
    [stored] = stored_files(site)
    ds, original = pydicom.dcmread(stored), pydicom.dcmread(path)
    assert ds.ProtocolName == "SCRIPTED"
    assert ds.PixelData == original.PixelData
    assert ds.SOPInstanceUID == original.SOPInstanceUID


def test_a_user_may_not_upload_to_a_project_outside_their_own(make_site, dcm_dir: Path) -> None:
    site = make_site({"DEMO": {}, "OTHER": {}})
    [path] = write_study(routed("perm", series=[SeriesSpec(1, instances=1)]), dcm_dir)

    item = Received(path.read_bytes(), source="http", projects=frozenset({"OTHER"}))
    outcome = site.intake.receive(item)

    assert outcome.result is Result.NOT_PERMITTED
    assert "DEMO" in outcome.reason
    assert site.prearchive() == [] and stored_files(site) == []
