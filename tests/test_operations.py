"""``Operations`` (SPEC 4.4): what a person asks of a prearchive session, and what
they are told when the session's state does not allow it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Site

from xnatd.operations import Refused
from xnatd.routing import UNASSIGNED
from xnatd.store.index.records import ArchiveStatus, PrearchiveSession, Status
from xnatd.store.layout import PrearchiveName, session_file

PROJECTS = {"DEMO": {}, "OTHER": {}, "AUTO": {"prearchive": "auto-archive"}}


def study(seed: str, project: str = "DEMO", label: str = "MR1", instances: int = 3) -> StudySpec:
    return StudySpec(
        seed,
        patient_comments=f"Project: {project} Subject: SUBJ01 Session: {label}",
        series=[SeriesSpec(1, instances=instances)],
    )


def received(site: Site, spec: StudySpec, folder: Path) -> PrearchiveSession:
    assert set(site.receive(write_study(spec, folder))) == {"stored"}
    [session] = [s for s in site.prearchive() if s.study_uid == spec.study_uid]
    return session


def ready(site: Site, spec: StudySpec, folder: Path) -> PrearchiveSession:
    received(site, spec, folder)
    site.build_all()
    [session] = [s for s in site.prearchive() if s.study_uid == spec.study_uid]
    assert session.status is Status.READY
    return session


def events(site: Site, session: str) -> list[tuple[str, str | None]]:
    return [(e.event, e.actor) for e in site.store.audit.events(session)]


class TestArchive:
    def test_a_ready_session_is_archived_and_leaves_the_prearchive(
        self, make_site, dcm_dir: Path
    ) -> None:
        site = make_site(PROJECTS)
        session = ready(site, study("arc"), dcm_dir)
        files = {p.name: p.read_bytes() for p in site.store.data.prearchive.rglob("*.dcm")}

        outcome = site.operations.archive(session.name, "none", "alice")

        assert (outcome.result, outcome.session_id) == ("archived", "XNATD_E00001")
        assert outcome.files == 3
        assert site.prearchive() == []
        assert site.store.index.get_session(session.name) is None
        assert not site.store.prearchive.session_dir(session.name).exists()
        [archived] = site.archived()
        assert (archived.id, archived.project, archived.label) == ("XNATD_E00001", "DEMO", "MR1")
        assert archived.status is ArchiveStatus.ACTIVE
        folder = site.store.data.root / archived.path
        assert {p.name: p.read_bytes() for p in folder.rglob("*.dcm")} == files
        assert ("archive", "alice") in events(site, archived.id)

    @pytest.mark.parametrize("state", [Status.RECEIVING, Status.BUILDING])
    def test_a_session_not_yet_built_is_refused_naming_its_state(
        self, make_site, dcm_dir: Path, state: Status
    ) -> None:
        site = make_site(PROJECTS)
        session = received(site, study("early"), dcm_dir)
        if state is Status.BUILDING:
            [claimed] = site.store.assembly.claim_idle_sessions(
                idle_timeout=-1, node="builder", lease=60
            )
            assert claimed.status is Status.BUILDING

        with pytest.raises(Refused) as refused:
            site.operations.archive(session.name, "none", "alice")

        message = str(refused.value)
        assert f"cannot archive {session.name}: it is {state.value}" in message
        # Nothing changed: the session is where it was, in the state it was.
        [after] = site.prearchive()
        assert after.status is state
        assert site.archived() == []
        assert "archive" not in [event for event, _ in events(site, str(session.name))]

    def test_a_session_being_archived_cannot_be_deleted_meanwhile(
        self, make_site, dcm_dir: Path
    ) -> None:
        """Two commands racing on one session: the one that finds it ARCHIVING is told so."""
        site = make_site(PROJECTS)
        session = ready(site, study("race"), dcm_dir)
        site.store.index.claim_session(
            session.name,
            allowed=frozenset({Status.READY}),
            to=Status.ARCHIVING,
            node="other-node",
            lease=60,
            now=time.time(),
        )

        with pytest.raises(Refused, match=r"it is ARCHIVING \(it is being archived\)"):
            site.operations.delete(session.name, "bob")

        assert len(list(site.store.prearchive.session_dir(session.name).rglob("*.dcm"))) == 3

    def test_an_unknown_session_is_refused_by_name(self, make_site) -> None:
        site = make_site(PROJECTS)
        name = PrearchiveName("DEMO", "20000101_000000000", "NOPE")
        with pytest.raises(Refused, match=f"no prearchive session {name}"):
            site.operations.archive(name, "none", "alice")


class TestMoveDeleteRebuild:
    def test_an_unassigned_session_is_moved_into_a_project(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        session = ready(site, study("stray", project="NOSUCH"), dcm_dir)
        assert session.project == UNASSIGNED

        target = site.operations.move(session.name, "OTHER", "alice")

        assert (target.project, target.label) == ("OTHER", "MR1")
        [moved] = site.prearchive()
        assert (moved.name, moved.status, moved.files) == (target, Status.READY, 3)
        assert len(list(site.store.prearchive.session_dir(target).rglob("*.dcm"))) == 3
        assert not site.store.prearchive.session_dir(session.name).exists()
        assert site.store.data.session_document(target).is_file()
        [move] = [e for e in site.store.audit.events(str(target)) if e.event == "move"]
        assert move.actor == "alice" and move.details["from"] == str(session.name)

    def test_moving_into_the_same_project_is_refused(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        session = ready(site, study("same"), dcm_dir)
        with pytest.raises(Refused, match="already in DEMO"):
            site.operations.move(session.name, "DEMO", "alice")
        assert [s.status for s in site.prearchive()] == [Status.READY]

    def test_delete_keeps_the_files_under_deleted(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        session = ready(site, study("del"), dcm_dir)
        before = sorted(p.read_bytes() for p in site.store.data.prearchive.rglob("*.dcm"))

        kept = site.operations.delete(session.name, "bob")

        assert site.prearchive() == []
        assert sorted(p.read_bytes() for p in kept.rglob("*.dcm")) == before
        assert kept == site.store.data.root / "deleted/prearchive/DEMO" / session.timestamp / "MR1"
        assert list(site.store.data.prearchive.rglob("*.dcm")) == []
        assert ("delete", "bob") in events(site, str(session.name))

    def test_rebuild_recovers_an_error_session_once_its_file_is_back(
        self, make_site, dcm_dir: Path
    ) -> None:
        site = make_site(PROJECTS)
        session = received(site, study("fix"), dcm_dir)
        [record, *_] = site.store.index.instances(session.id)
        path = site.store.prearchive.session_dir(session.name) / session_file(
            record.scan, record.file_name
        )
        hidden = path.with_name("elsewhere")
        path.rename(hidden)
        site.build_all()
        assert [s.status for s in site.prearchive()] == [Status.ERROR]

        hidden.rename(path)
        assert site.operations.rebuild(session.name, "alice") is Status.READY

        [rebuilt] = site.prearchive()
        assert (rebuilt.status, rebuilt.reason, rebuilt.files) == (Status.READY, None, 3)
        assert ("rebuild", "alice") in events(site, str(session.name))

    def test_rebuild_builds_a_receiving_session_now(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        session = received(site, study("now"), dcm_dir)
        assert site.operations.rebuild(session.name, "alice") is Status.READY
        assert site.store.data.session_document(session.name).is_file()


class TestSettleImport:
    def test_archive_true_builds_and_archives_at_once(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        first = received(site, study("imp1", label="MR1"), dcm_dir / "a")
        second = received(site, study("imp2", label="MR2"), dcm_dir / "b")

        accessions = site.operations.settle_import(
            [first.name, second.name], archive=True, overwrite="none", actor="uploader"
        )

        assert accessions == ["XNATD_E00001", "XNATD_E00002"]
        assert site.prearchive() == []
        assert sorted(a.label for a in site.archived()) == ["MR1", "MR2"]

    def test_archive_false_leaves_a_manual_project_ready(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        session = received(site, study("keep"), dcm_dir)

        accessions = site.operations.settle_import(
            [session.name], archive=False, overwrite="none", actor="uploader"
        )

        assert accessions == []
        assert [s.status for s in site.prearchive()] == [Status.READY]
        assert site.archived() == []

    def test_archive_false_follows_an_auto_archive_policy(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        session = received(site, study("auto", project="AUTO"), dcm_dir)

        accessions = site.operations.settle_import(
            [session.name], archive=False, overwrite="none", actor="uploader"
        )

        [archived] = site.archived()
        assert accessions == [archived.id] and archived.project == "AUTO"
        assert site.prearchive() == []

    def test_a_session_that_fails_to_build_is_not_archived(self, make_site, dcm_dir: Path) -> None:
        site = make_site(PROJECTS)
        session = received(site, study("bad"), dcm_dir)
        [record, *_] = site.store.index.instances(session.id)
        folder = site.store.prearchive.session_dir(session.name)
        (folder / session_file(record.scan, record.file_name)).unlink()

        accessions = site.operations.settle_import(
            [session.name], archive=True, overwrite="none", actor="uploader"
        )

        assert accessions == []
        assert site.archived() == []
        [failed] = site.prearchive()
        assert failed.status is Status.ERROR and record.file_name in failed.reason
