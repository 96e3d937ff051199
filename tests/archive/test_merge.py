"""Merge planning (SPEC 5.3): never twice the same instance, N-MR1 for clashing scans."""

from __future__ import annotations

from dataclasses import replace

from xnatd.archive.merge import merge_conflict, plan_merge, scan_ids_for
from xnatd.store.index.records import ArchivedSession, ArchiveStatus, InstanceRecord


def rec(
    sop: str, series: str, scan: str, received: float = 0.0, md5: str = "a" * 32
) -> InstanceRecord:
    return InstanceRecord(
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        series_uid=series,
        series_number=scan.split("-")[0],
        instance_number="1",
        modality="MR",
        scan=scan,
        file_name=f"{sop}.dcm",
        size=10,
        md5=md5,
        received=received,
    )


EXISTING = [rec("1.1", "S1", "1"), rec("1.2", "S1", "1"), rec("2.1", "S2", "2")]


def test_append_adds_new_and_keeps_existing() -> None:
    incoming = [rec("1.2", "S1", "1", md5="b" * 32), rec("1.3", "S1", "1")]
    plan = plan_merge(EXISTING, incoming, replace_files=False)
    assert [p.action for p in plan.placements] == ["skip", "add"]
    assert (plan.added, plan.skipped, len(plan.result)) == (1, 1, 4)
    kept = {r.sop_instance_uid: r for r in plan.result}["1.2"]
    assert kept.md5 == "a" * 32


def test_delete_replaces_same_instances() -> None:
    incoming = [rec("1.2", "S1", "1", md5="b" * 32)]
    plan = plan_merge(EXISTING, incoming, replace_files=True)
    assert [p.action for p in plan.placements] == ["replace"]
    assert {r.sop_instance_uid: r for r in plan.result}["1.2"].md5 == "b" * 32
    assert len(plan.result) == 3 and plan.obsolete == ()


def test_same_number_other_series_gets_suffixed_scan() -> None:
    incoming = [rec("9.1", "S9", "2"), rec("9.2", "S9", "2"), rec("8.1", "S8", "2", received=1)]
    assert scan_ids_for(EXISTING, incoming) == {"S9": "2-MR1", "S8": "2-MR2"}


def test_known_series_keeps_its_archived_scan() -> None:
    """A series archived as scan 2 stays in scan 2 even if it now arrives numbered 7."""
    assert scan_ids_for(EXISTING, [rec("2.9", "S2", "7")]) == {"S2": "2"}


def test_replaced_instance_under_another_path_makes_old_file_obsolete() -> None:
    moved = replace(rec("2.1", "S2", "2"), file_name="renamed.dcm")
    plan = plan_merge(EXISTING, [moved], replace_files=True)
    assert [o.file_name for o in plan.obsolete] == ["2.1.dcm"]


ARCHIVED = ArchivedSession(
    id="X_E00001",
    project="P",
    subject_id="X_S00001",
    subject="SUBJ",
    label="MR1",
    study_uid="1.2.3",
    xsi_type="mrSessionData",
    modality="MR",
    date=None,
    status=ArchiveStatus.ACTIVE,
    path="archive/P/arc001/MR1",
    archived=0,
    modified=0,
)


def test_conflict_reasons() -> None:
    def why(**kw: str) -> str | None:
        values = {
            "study_uid": "1.2.3",
            "subject": "SUBJ",
            "xsi_type": "mrSessionData",
            "overwrite": "append",
        }
        return merge_conflict(ARCHIVED, **{**values, **kw})

    assert why() is None
    assert "retry with overwrite enabled" in why(overwrite="none")
    assert "Study Instance UID 9.9 does not match" in why(study_uid="9.9")
    assert "another subject (SUBJ)" in why(subject="OTHER")
    assert "cross-modality" in why(xsi_type="ctSessionData")
