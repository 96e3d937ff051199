"""Archiving (SPEC 5, 7.3): policies, merges, conflicts, IDs, quarantine, delete, audit.

The stages run in-process exactly as the daemon wires them, on real files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, instance, write, write_study
from helpers import Site, assert_valid
from lxml import etree

from xnatd.operations import Refused
from xnatd.store.index.records import ArchiveStatus, Status
from xnatd.store.layout import PrearchiveName, session_file

NS = {"xnat": "http://nrg.wustl.edu/xnat", "cat": "http://nrg.wustl.edu/catalog"}


def study(
    seed: str, project: str = "DEMO", subject: str = "SUBJ01", label: str = "MR1", **kw
) -> StudySpec:
    comments = f"Project: {project} Subject: {subject} Session: {label}"
    return StudySpec(seed, patient_comments=comments, **kw)


def receive_and_build(site: Site, spec: StudySpec, folder: Path, **explicit: str) -> None:
    assert set(site.receive(write_study(spec, folder), **explicit)) == {"stored"}
    site.build_all()


def only_ready(site: Site) -> PrearchiveName:
    [session] = [s for s in site.prearchive() if s.status is Status.READY]
    return session.name


class TestPolicies:
    def test_manual_stays_ready(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "manual"}})
        receive_and_build(site, study("manual"), dcm_dir)
        assert [s.status for s in site.prearchive()] == [Status.READY]
        assert site.archived() == []

    def test_auto_archive(self, make_site, dcm_dir: Path, schemas: dict) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}})
        receive_and_build(site, study("auto", series=[SeriesSpec(1), SeriesSpec(2)]), dcm_dir)
        assert site.prearchive() == []
        [archived] = site.archived()
        assert (archived.id, archived.subject_id, archived.status) == (
            "XNATD_E00001",
            "XNATD_S00001",
            ArchiveStatus.ACTIVE,
        )
        folder = site.store.data.root / archived.path
        assert archived.path == "archive/DEMO/arc001/MR1"
        document = folder / "MR1.xml"
        assert_valid(schemas["xnat"], document)
        root = etree.parse(str(document)).getroot()
        assert root.get("ID") == "XNATD_E00001"
        assert root.findtext("xnat:subject_ID", namespaces=NS) == "XNATD_S00001"
        for scan in ("1", "2"):
            catalog = folder / "SCANS" / scan / "DICOM" / f"scan_{scan}_catalog.xml"
            assert_valid(schemas["catalog"], catalog)
            for entry in etree.parse(str(catalog)).getroot().iterfind(".//cat:entry", NS):
                data = (catalog.parent / entry.get("URI")).read_bytes()
                assert entry.get("digest") == hashlib.md5(data).hexdigest()
        # The prearchive folder is gone, empty parents included.
        assert not any((site.store.data.prearchive / "DEMO").glob("*"))

    def test_aa_true_archives_a_manual_project(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "manual"}})
        spec = study("aa-true")
        spec.patient_comments += " AA: true"
        receive_and_build(site, spec, dcm_dir)
        assert len(site.archived()) == 1 and site.prearchive() == []

    def test_aa_false_keeps_an_auto_project_in_prearchive(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}})
        spec = study("aa-false")
        spec.patient_comments += " AA: false"
        receive_and_build(site, spec, dcm_dir)
        assert site.archived() == [] and [s.status for s in site.prearchive()] == [Status.READY]

    def test_unassigned_never_auto_archives(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}})
        spec = StudySpec("lost", patient_comments="AA: true", study_description="nowhere")
        receive_and_build(site, spec, dcm_dir)
        [session] = site.prearchive()
        assert (session.project, session.status) == ("Unassigned", Status.READY)
        with pytest.raises(Refused):
            site.operations.archive(
                PrearchiveName("DEMO", session.timestamp, session.label), "none", "t"
            )
        outcome = site.operations.archive(session.name, "none", "t")
        assert outcome.result == "conflict" and "move it first" in outcome.reason

    def test_files_are_moved_not_copied(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        receive_and_build(site, study("inode"), dcm_dir)
        name = only_ready(site)
        before = {
            p.name: os.stat(p).st_ino
            for p in site.store.prearchive.session_dir(name).rglob("*.dcm")
        }
        assert site.operations.archive(name, "none", "t").result == "archived"
        after = {
            p.name: os.stat(p).st_ino for p in (site.store.data.root / "archive").rglob("*.dcm")
        }
        assert before == after


class TestMerging:
    def archive_first(self, site: Site, folder: Path, **kw) -> None:
        receive_and_build(site, study("base", series=[SeriesSpec(1), SeriesSpec(2)], **kw), folder)
        assert site.operations.archive(only_ready(site), "none", "t").result == "archived"

    def test_none_gives_conflict_with_reason(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        self.archive_first(site, dcm_dir / "a")
        receive_and_build(site, study("base", series=[SeriesSpec(3)]), dcm_dir / "b")
        outcome = site.operations.archive(only_ready(site), "none", "t")
        assert outcome.result == "conflict" and "retry with overwrite enabled" in outcome.reason
        [session] = site.prearchive()
        assert session.status is Status.CONFLICT and session.reason == outcome.reason

    def test_append_adds_and_never_stores_an_instance_twice(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        self.archive_first(site, dcm_dir / "a")
        [archived] = site.archived()
        folder = site.store.data.root / archived.path
        original = {p.name: p.read_bytes() for p in folder.rglob("*.dcm")}
        # A new series plus every instance of series 1 again, changed.
        spec = study("base", series=[SeriesSpec(1), SeriesSpec(3)])
        spec.extra = {"OperatorsName": "CHANGED"}
        receive_and_build(site, spec, dcm_dir / "b")
        outcome = site.operations.archive(only_ready(site), "append", "t")
        assert (outcome.result, outcome.session_id, outcome.files) == ("merged", archived.id, 9)
        files = {p.name: p.read_bytes() for p in folder.rglob("*.dcm")}
        assert len(files) == 9
        assert all(files[name] == data for name, data in original.items())

    def test_delete_replaces_existing_instances(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        self.archive_first(site, dcm_dir / "a")
        spec = study("base", series=[SeriesSpec(1)])
        spec.extra = {"OperatorsName": "CHANGED"}
        receive_and_build(site, spec, dcm_dir / "b")
        assert site.operations.archive(only_ready(site), "delete", "t").files == 6
        [archived] = site.archived()
        replaced = list((site.store.data.root / archived.path / "SCANS" / "1").rglob("*.dcm"))
        assert len(replaced) == 3 and all(b"CHANGED" in p.read_bytes() for p in replaced)

    def test_other_study_uid_under_same_label_conflicts(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        self.archive_first(site, dcm_dir / "a")
        receive_and_build(site, study("another-study"), dcm_dir / "b")
        outcome = site.operations.archive(only_ready(site), "append", "t")
        assert outcome.result == "conflict" and "Study Instance UID" in outcome.reason

    def test_other_subject_under_same_label_conflicts(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        self.archive_first(site, dcm_dir / "a")
        receive_and_build(
            site, study("base", subject="SUBJ02", series=[SeriesSpec(3)]), dcm_dir / "b"
        )
        outcome = site.operations.archive(only_ready(site), "append", "t")
        assert outcome.result == "conflict" and "another subject (SUBJ01)" in outcome.reason

    def test_cross_modality_merge_is_refused(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        self.archive_first(site, dcm_dir / "a")
        receive_and_build(site, study("base", series=[SeriesSpec(7, "CT")]), dcm_dir / "b")
        outcome = site.operations.archive(only_ready(site), "append", "t")
        assert outcome.result == "conflict" and "cross-modality" in outcome.reason

    def test_same_number_other_series_gets_n_mr1(
        self, make_site, dcm_dir: Path, schemas: dict
    ) -> None:
        site = make_site()
        self.archive_first(site, dcm_dir / "a")
        receive_and_build(
            site, study("base", series=[SeriesSpec(2, uid_seed="new-series")]), dcm_dir / "b"
        )
        site.operations.archive(only_ready(site), "append", "t")
        [archived] = site.archived()
        folder = site.store.data.root / archived.path
        assert sorted(p.name for p in (folder / "SCANS").iterdir()) == ["1", "2", "2-MR1"]
        assert_valid(schemas["xnat"], folder / "MR1.xml")
        assert_valid(schemas["catalog"], folder / "SCANS/2-MR1/DICOM/scan_2-MR1_catalog.xml")


class TestIdentifiers:
    def test_subjects_created_once_and_looked_up_by_label(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}})
        receive_and_build(site, study("one", label="MR1"), dcm_dir / "a")
        receive_and_build(site, study("two", label="MR2"), dcm_dir / "b")
        receive_and_build(site, study("three", subject="OTHER", label="MR3"), dcm_dir / "c")
        ids = {(s.label, s.id, s.subject_id) for s in site.archived()}
        assert ids == {
            ("MR1", "XNATD_E00001", "XNATD_S00001"),
            ("MR2", "XNATD_E00002", "XNATD_S00001"),
            ("MR3", "XNATD_E00003", "XNATD_S00002"),
        }

    def test_deleted_ids_are_never_reused(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}})
        receive_and_build(site, study("one", label="MR1"), dcm_dir / "a")
        site.operations.delete_archived("XNATD_E00001", purge=True, actor="t")
        receive_and_build(site, study("one", label="MR1"), dcm_dir / "a")
        assert [(s.id, s.status) for s in site.archived()] == [
            ("XNATD_E00001", ArchiveStatus.DELETED),
            ("XNATD_E00002", ArchiveStatus.ACTIVE),
        ]

    def test_relabelled_after_soft_delete_without_purge_conflicts(
        self, make_site, dcm_dir: Path
    ) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}})
        receive_and_build(site, study("one"), dcm_dir / "a")
        site.operations.delete_archived("XNATD_E00001", purge=False, actor="t")
        receive_and_build(site, study("one"), dcm_dir / "a")
        [session] = site.prearchive()
        assert session.status is Status.CONFLICT and "purge it first" in session.reason


class TestQuarantineAndDelete:
    def test_quarantine_then_release(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive", "quarantine": True}})
        receive_and_build(site, study("q"), dcm_dir)
        [archived] = site.archived()
        assert archived.status is ArchiveStatus.QUARANTINE
        assert site.operations.release(archived.id, "t").status is ArchiveStatus.ACTIVE
        with pytest.raises(Refused, match="not quarantine"):
            site.operations.release(archived.id, "t")

    def test_soft_delete_hides_and_purge_moves_files(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}})
        receive_and_build(site, study("d"), dcm_dir)
        deleted = site.operations.delete_archived("XNATD_E00001", purge=False, actor="t")
        assert deleted.status is ArchiveStatus.DELETED
        assert site.archived("active", "quarantine") == [] and len(site.archived("deleted")) == 1
        assert len(list((site.store.data.root / deleted.path).rglob("*.dcm"))) == 3
        purged = site.operations.delete_archived("XNATD_E00001", purge=True, actor="t")
        assert purged.path.startswith("deleted/archive/DEMO/arc001/")
        assert len(list((site.store.data.root / purged.path).rglob("*.dcm"))) == 3
        assert not (site.store.data.root / "archive/DEMO/arc001/MR1").exists()
        with pytest.raises(Refused, match="already deleted"):
            site.operations.delete_archived("XNATD_E00001", purge=True, actor="t")


class TestPrearchiveOperations:
    def test_refused_in_states_that_do_not_allow_them(self, make_site, dcm_dir: Path) -> None:
        site = make_site({"DEMO": {}, "OTHER": {}})
        site.receive(write_study(study("busy"), dcm_dir))
        [session] = site.prearchive()
        assert session.status is Status.RECEIVING
        for call in (
            lambda: site.operations.archive(session.name, "none", "t"),
            lambda: site.operations.delete(session.name, "t"),
            lambda: site.operations.move(session.name, "OTHER", "t"),
        ):
            with pytest.raises(Refused, match="RECEIVING"):
                call()
        with pytest.raises(Refused, match="no prearchive session"):
            site.operations.delete(PrearchiveName("DEMO", "20000101_000000000", "X"), "t")

    def test_move_to_another_project_rebuilds(
        self, make_site, dcm_dir: Path, schemas: dict
    ) -> None:
        site = make_site({"DEMO": {}, "OTHER": {}})
        receive_and_build(site, study("move"), dcm_dir)
        target = site.operations.move(only_ready(site), "OTHER", "t")
        assert target.project == "OTHER"
        [session] = site.prearchive()
        assert (session.name, session.status) == (target, Status.READY)
        document = site.store.data.session_document(target)
        assert etree.parse(str(document)).getroot().get("project") == "OTHER"
        assert_valid(schemas["xnat"], document)
        with pytest.raises(Refused, match="not a configured project"):
            site.operations.move(target, "NOPE", "t")

    def test_rebuild_and_delete_keep_files(self, make_site, dcm_dir: Path) -> None:
        site = make_site()
        receive_and_build(site, study("rebuild"), dcm_dir)
        name = only_ready(site)
        assert site.operations.rebuild(name, "t") is Status.READY
        kept = site.operations.delete(name, "t")
        assert site.prearchive() == [] and len(list(kept.rglob("*.dcm"))) == 3
        assert kept.is_relative_to(site.store.data.root / "deleted")


CHECK_DOCUMENT = 'test -f "$XNATD_SESSION_DIR/$XNATD_SESSION_LABEL.xml" && echo $XNATD_SESSION_ID'


def test_autorun_results_are_kept_and_audited(make_site, dcm_dir: Path) -> None:
    site = make_site(
        {
            "DEMO": {
                "prearchive": "auto-archive",
                "autorun": [
                    {"protocol": [{"type": "mprage", "min": 1}, {"type": "DWI", "min": 1}]},
                    {
                        "run": [
                            "sh",
                            "-c",
                            CHECK_DOCUMENT,
                        ]
                    },
                    {"run": ["sleep", "5"], "timeout": "200ms"},
                ],
            }
        }
    )
    receive_and_build(site, study("autorun"), dcm_dir)
    [archived] = site.archived()
    protocol, command, slow = archived.autorun
    assert protocol["result"] == "failed"
    assert [c["ok"] for c in protocol["checks"]] == [True, False]
    assert command["result"] == "passed" and "XNATD_E00001" in command["output"]
    assert slow["result"] == "timeout"
    assert [e.event for e in site.store.audit.events(archived.id)][-1] == "autorun"


def test_audit_trail_links_prearchive_events_to_the_archived_session(
    make_site, dcm_dir: Path
) -> None:
    site = make_site()
    receive_and_build(site, study("trail"), dcm_dir)
    name = only_ready(site)
    session_id = site.operations.archive(name, "none", "alice").session_id
    site.operations.delete_archived(session_id, purge=True, actor="bob")
    trail = site.store.audit.events(session_id)
    assert [(e.event, e.actor, e.session) for e in trail] == [
        ("build", "xnatd", str(name)),
        ("archive", "alice", session_id),
        ("delete", "bob", session_id),
    ]
    assert trail[1].details["from"] == [str(name)] and trail[2].details["purged"] is True


def test_crash_mid_archive_is_finished_by_resume(make_site, dcm_dir: Path) -> None:
    """Files half moved and no index commit (a crash): the next run completes it."""
    site = make_site()
    receive_and_build(site, study("crash", series=[SeriesSpec(1, instances=4)]), dcm_dir)
    name = only_ready(site)
    session = site.store.index.claim_session(
        name,
        allowed=frozenset({Status.READY}),
        to=Status.ARCHIVING,
        node="dead-node",
        lease=-1,
        now=0,
        archive_mode="none",
    )
    records = site.store.prearchive.instances(session)
    target = site.store.data.root / "archive/DEMO/arc001/MR1"
    for record in records[:2]:  # the dead process got this far
        site.store.archive.place(
            site.store.prearchive.session_dir(name) / session_file(record.scan, record.file_name),
            target / session_file(record.scan, record.file_name),
        )
    assert site.archiver.resume_stale() == 1
    [archived] = site.archived()
    assert archived.files == 4 and site.prearchive() == []
    assert len(list(target.rglob("*.dcm"))) == 4


def test_sop_instance_resent_with_new_number_is_not_kept_twice(make_site, dcm_dir: Path) -> None:
    site = make_site({"DEMO": {"prearchive": "auto-archive"}})
    spec = study("renumbered", series=[SeriesSpec(1, instances=2)])
    first = instance(spec, spec.series[0], 1)
    again = instance(spec, spec.series[0], 1)
    again.InstanceNumber = 99
    site.receive(write([first], dcm_dir / "a") + write([again], dcm_dir / "b"))
    site.build_all()
    [archived] = site.archived()
    assert archived.files == 1
    assert len(list((site.store.data.root / archived.path).rglob("*.dcm"))) == 1


class TestCommit:
    """``action=commit`` (HTTP) and the end of an import: build now, then the policy."""

    def test_commit_archives_under_auto_archive_and_stays_under_manual(
        self, make_site, dcm_dir: Path
    ) -> None:
        site = make_site({"DEMO": {"prearchive": "auto-archive"}, "OTHER": {}})
        assert set(site.receive(write_study(study("c1"), dcm_dir / "a"))) == {"stored"}
        [waiting] = site.prearchive()  # not built yet: the idle timer has not run
        assert waiting.status is Status.RECEIVING
        accession = site.operations.commit(waiting.name, "t")
        assert accession == "XNATD_E00001" and site.prearchive() == []
        assert [a.id for a in site.archived()] == [accession]

        spec = study("c2", project="OTHER")
        assert set(site.receive(write_study(spec, dcm_dir / "b"))) == {"stored"}
        [manual] = site.prearchive()
        assert site.operations.commit(manual.name, "t") is None
        assert [s.status for s in site.prearchive()] == [Status.READY]
