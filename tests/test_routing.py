"""Routing (SPEC section 3): every rule in its order, as pure functions."""

from __future__ import annotations

import pytest

from xnatd.dicom import Tag
from xnatd.routing import (
    DEFAULT_SESSION_LABEL,
    UNASSIGNED,
    Explicit,
    Rule,
    RuleSet,
    clean_label,
    comment_value,
    project_resolver,
    route,
)

RESOLVE = project_resolver({"P1": ["Study1"], "P2": [], "DEMO": ["DemoStudy"]})


def route_of(header: dict[int, str], **kwargs: object):
    return route(header, resolve_project=RESOLVE, **kwargs)


class TestBuiltInProjectRules:
    def test_patient_comments_first(self) -> None:
        """Project: in Patient Comments wins over every later field."""
        header = {
            Tag.PatientComments: "Project: P1",
            Tag.StudyComments: "Project: P2",
            Tag.StudyDescription: "P2",
        }
        assert route_of(header).project == "P1"

    def test_study_comments_then_additional_history(self) -> None:
        assert (
            route_of(
                {Tag.StudyComments: "Project:P2", Tag.AdditionalPatientHistory: "Project: P1"}
            ).project
            == "P2"
        )
        assert route_of({Tag.AdditionalPatientHistory: "Project: P1"}).project == "P1"

    def test_whole_study_description_then_accession_number(self) -> None:
        assert route_of({Tag.StudyDescription: "P2", Tag.AccessionNumber: "P1"}).project == "P2"
        assert (
            route_of({Tag.StudyDescription: "Brain^Routine", Tag.AccessionNumber: "P1"}).project
            == "P1"
        )

    def test_study_description_must_match_whole(self) -> None:
        """A description that merely contains a project ID is not that project."""
        assert route_of({Tag.StudyDescription: "P1 research"}).project == UNASSIGNED

    def test_candidate_that_names_no_project_lets_next_rule_try(self) -> None:
        header = {Tag.PatientComments: "Project: NOPE", Tag.StudyComments: "Project: P2"}
        assert route_of(header).project == "P2"

    def test_alias_resolves_to_project_id(self) -> None:
        assert route_of({Tag.PatientComments: "Project: DemoStudy"}).project == "DEMO"

    def test_default_project_then_unassigned(self) -> None:
        assert route_of({}, default_project="P2").project == "P2"
        assert route_of({}).project == UNASSIGNED


class TestCommentFormat:
    def test_all_keys_in_one_value(self) -> None:
        header = {Tag.PatientComments: "Project: P1 Subject: S01 Session: S01_MR1 AA: true"}
        routed = route_of(header)
        assert (routed.project, routed.subject, routed.session, routed.auto_archive) == (
            "P1",
            "S01",
            "S01_MR1",
            True,
        )

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("project:p1", "p1"),
            ("PROJECT : P1", "P1"),
            ("x,Project:P1;y", "P1"),
            ("xProject: P1", None),  # the key must start a word
            ("Project:", None),
        ],
    )
    def test_keys_case_insensitive_and_delimited(self, text: str, expected: str | None) -> None:
        assert comment_value({Tag.PatientComments: text}, "Project") == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("t", True), ("TRUE", True), ("f", False), ("False", False), ("maybe", None)],
    )
    def test_aa_values(self, value: str, expected: bool | None) -> None:
        assert route_of({Tag.StudyComments: f"AA: {value}"}).auto_archive is expected


class TestSubjectAndSession:
    def test_subject_from_comment_then_patient_name(self) -> None:
        assert (
            route_of({Tag.StudyComments: "Subject: S9", Tag.PatientName: "DOE^JOHN"}).subject
            == "S9"
        )
        assert route_of({Tag.PatientName: "DOE^JOHN"}).subject == "DOE_JOHN"

    def test_session_from_comment_then_patient_id_then_dicom_upload(self) -> None:
        assert (
            route_of({Tag.AdditionalPatientHistory: "Session: MR1", Tag.PatientID: "PID"}).session
            == "MR1"
        )
        assert route_of({Tag.PatientID: "PID 7"}).session == "PID_7"
        assert route_of({}).session == DEFAULT_SESSION_LABEL

    @pytest.mark.parametrize(
        ("raw", "clean"),
        [
            ("DOE^JOHN", "DOE_JOHN"),
            ("../../etc", "______etc"),
            ("a/b\\c", "a_b_c"),
            ("Zoë 1", "Zo__1"),
        ],
    )
    def test_labels_keep_only_safe_characters(self, raw: str, clean: str) -> None:
        assert clean_label(raw) == clean

    def test_path_traversal_in_patient_id_is_neutralised(self) -> None:
        routed = route_of({Tag.PatientID: "../../etc", Tag.PatientName: "../x"})
        assert "/" not in routed.session and "/" not in routed.subject
        assert routed.session == "______etc"


class TestCustomRules:
    def test_rule_group_and_replacement(self) -> None:
        """XNAT's own example: (0008,0050):^[0-9]{4}(.*):1 t:9 r:X."""
        rule = Rule.parse("(0008,0050):^[0-9]{4}(.*):1 t:9 r:X")
        assert rule.extract({Tag.AccessionNumber: "1234P919"}) == "PX1X"

    def test_group_two_picks_subject(self) -> None:
        rule = Rule.parse(r"(0014,0046):Project:(\w+)\s*Subject:(\w+)\s*Session:(\w+):2")
        assert rule.extract({0x00140046: "Project:P1 Subject:S22 Session:E1"}) == "S22"

    def test_regex_must_match_whole_value(self) -> None:
        rule = Rule.parse(r"(0008,1030):(\d{3})")
        assert rule.extract({Tag.StudyDescription: "1024"}) is None
        assert rule.extract({Tag.StudyDescription: "102"}) == "102"

    def test_value_cut_to_64_characters(self) -> None:
        rule = Rule.parse("(0008,1030):(A*)")
        assert rule.extract({Tag.StudyDescription: "A" * 70}) == "A" * 64

    def test_java_group_references_in_replacement(self) -> None:
        rule = Rule.parse(r"(0010,0020):(.*) t:(\d+)-(\d+) r:$2_$1")
        assert rule.extract({Tag.PatientID: "12-34"}) == "34_12"

    def test_receiver_rules_before_site_rules_before_built_in(self) -> None:
        receiver = RuleSet(project=(Rule.parse("(0008,0050):(.*)"),))
        site = RuleSet(project=(Rule.parse("(0008,1030):(.*)"),))
        header = {
            Tag.AccessionNumber: "P1",
            Tag.StudyDescription: "P2",
            Tag.PatientComments: "Project: DEMO",
        }
        assert route_of(header, rule_sets=[receiver, site]).project == "P1"
        assert route_of(header, rule_sets=[site]).project == "P2"
        assert route_of(header).project == "DEMO"

    def test_rule_naming_unknown_project_falls_through(self) -> None:
        site = RuleSet(project=(Rule.parse("(0008,0050):(.*)"),))
        assert (
            route_of(
                {Tag.AccessionNumber: "NOPE", Tag.StudyDescription: "P2"}, rule_sets=[site]
            ).project
            == "P2"
        )

    @pytest.mark.parametrize(
        "text",
        [
            "(0008,0050)",
            "(0008,0050):([a-z",
            "(008,0050):(.*)",
            "(0008,0050):abc:2",
            "(0008,0050):(.*) t:( r:x",
        ],
    )
    def test_bad_rules_are_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            Rule.parse(text)


def test_explicit_values_override_everything() -> None:
    header = {Tag.PatientComments: "Project: P1 Subject: S1 Session: E1"}
    routed = route_of(header, explicit=Explicit(project="P2", subject="sub 2", session="ses2"))
    assert (routed.project, routed.subject, routed.session) == ("P2", "sub_2", "ses2")


def test_explicit_project_that_does_not_exist_falls_through_to_headers() -> None:
    header = {Tag.PatientComments: "Project: P1"}
    assert route_of(header, explicit=Explicit(project="NOPE")).project == "P1"
