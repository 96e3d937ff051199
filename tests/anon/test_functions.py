"""Every built-in function, with the values XNAT's own tests expect (reference 6.2, 6.3)."""

from __future__ import annotations

import re

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from xnatd.anon.engine import ScriptFailed, run
from xnatd.anon.functions import hash_uid
from xnatd.anon.lookup import parse_lookup_table
from xnatd.anon.script import parse


def base() -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesDescription = "PDW_TSE"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PID1"
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.SeriesInstanceUID = "1.2.3.4.5.6"
    return ds


def value_of(expression: str, ds: Dataset | None = None) -> object:
    """Assign an expression to (0010,1000) and read it back as text."""
    ds = ds if ds is not None else base()
    run(parse(f"(0010,1000) := {expression}"), ds, {})
    return ds[0x00101000].value


class TestXnatExamples:
    def test_format_lowercase_uppercase_replace_substring_concatenate(self) -> None:
        expression = (
            'format["{0}_{1}_{2}_{3}", lowercase[(0008,0060)], uppercase[(0008,103E)], '
            'replace[substring["0123456789",0,8],"3","0"], concatenate["10","20","30"]]'
        )
        assert value_of(expression) == "mr_PDW_TSE_01204567_102030"

    def test_match_group(self) -> None:
        assert value_of('match["aba", "(a(b)?)+", 2]') == "b"

    @pytest.mark.parametrize(
        ("date", "days", "shifted"),
        [
            ("20200228", "2", "20200301"),
            ("20181231", "365", "20191231"),
            ("20200228", "-5", "20200223"),
        ],
    )
    def test_shift_date(self, date: str, days: str, shifted: str) -> None:
        assert value_of(f'shiftDateByIncrement["{date}", "{days}"]') == shifted

    @pytest.mark.parametrize(
        ("when", "seconds", "shifted"),
        [
            ("20200228235800", "180", "20200229000100"),
            ("19960808140000", "-600", "19960808135000"),
            ("20200101120000.800000", "10", "20200101120010.800000"),
            ("20200101120000-0730", "10", "20200101120010-0730"),
        ],
    )
    def test_shift_datetime_keeps_precision_and_zone(
        self, when: str, seconds: str, shifted: str
    ) -> None:
        assert value_of(f'shiftDateTimeByIncrement["{when}", "{seconds}"]') == shifted

    @pytest.mark.parametrize(
        ("uid", "hashed"),
        [
            ("1.2.3.4.5", "2.25.281097975800109040096884226991818420711"),
            ("1.2.3.4.5.6", "2.25.262228503153619312954819897114011402300"),
            (
                "99.99999.99999999999.999999999999999.999999999",
                "2.25.25035822876724830630813723844719420300",
            ),
        ],
    )
    def test_hash_uid_vectors(self, uid: str, hashed: str) -> None:
        assert hash_uid(uid) == hashed
        assert value_of(f'hashUID["{uid}"]') == hashed

    def test_reject_series_5(self) -> None:
        ds = base()
        ds.SeriesNumber = 5
        assert run(parse('(0020,0011) = "5" ? reject[]'), ds, {}).rejected
        ds.SeriesNumber = 4
        assert not run(parse('(0020,0011) = "5" ? reject[]'), ds, {}).rejected


class TestOtherFunctions:
    def test_ismatch_true_false(self) -> None:
        ds = base()
        run(
            parse(
                'ismatch[(0008,0060), "M."] ? (0010,0020) := "yes"\n'
                'false[] ? (0010,0010) := "never" : (0010,0010) := "else"\n'
                'true[] ? (0010,1001) := "t"'
            ),
            ds,
            {},
        )
        assert (ds.PatientID, str(ds.PatientName), ds[0x00101001].value) == ("yes", "else", "t")

    def test_substring_to_end_and_replace_literal(self) -> None:
        assert value_of('substring["abcdef", 2]') == "cdef"
        assert value_of('replace["a.b.c", ".", "-"]') == "a-b-c"  # literal, not a regex

    def test_hash_uid_list_in_place_multi_valued(self) -> None:
        ds = base()
        ds.add_new(0x00081155, "UI", ["1.2.3.4.5", "1.2.3.4.5.6"])
        run(parse('hashUIDList["(0020,000D)", (0008,1155)]'), ds, {})
        assert ds.StudyInstanceUID == hash_uid("1.2.3.4.5")
        assert list(ds[0x00081155].value) == [hash_uid("1.2.3.4.5"), hash_uid("1.2.3.4.5.6")]

    def test_new_uid(self) -> None:
        first, second = value_of("newUID[]"), value_of("newUID[]")
        assert re.fullmatch(r"2\.25\.\d+", first) and first != second and len(first) <= 64

    def test_map_referenced_uids_is_consistent_within_a_run(self) -> None:
        ds = base()
        ds.ReferencedSeriesSequence = Sequence([Dataset(), Dataset()])
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4.5.6"
        ds.ReferencedSeriesSequence[1].SeriesInstanceUID = "1.2.3.4.5.6"
        run(parse('mapReferencedUIDs["1.2.840.99", "*/(0020,000E)"]'), ds, {})
        new = ds.SeriesInstanceUID
        assert new.startswith("1.2.840.99.") and new != "1.2.3.4.5.6"
        assert [i.SeriesInstanceUID for i in ds.ReferencedSeriesSequence] == [new, new]

    def test_map_uid_puts_the_hashed_uid_under_the_root(self) -> None:
        """The same UID maps to the same new one in any file: root + hashUID's digits."""
        hashed = hash_uid("1.2.3.4.5")  # 2.25.281097975800109040096884226991818420711
        assert value_of('mapUID[(0020,000D), "1.2.826.0.1"]') == "1.2.826.0.1" + hashed[4:]
        assert value_of('mapUID[(0020,000D), "1.2.826.0.1."]') == "1.2.826.0.1" + hashed[4:]
        assert value_of('mapUID[(0020,000D), ""]') == hashed

    @pytest.mark.parametrize(
        ("root", "says"), [("1.2.x", "not a UID prefix"), ("1." * 13 + "1", "64 at most")]
    )
    def test_map_uid_refuses_a_root_that_cannot_make_a_uid(self, root: str, says: str) -> None:
        with pytest.raises(ScriptFailed, match=rf"line 1: mapUID\[\]: .*{says}"):
            value_of(f'mapUID[(0020,000D), "{root}"]')

    def test_lookup_reads_key_type_and_key_from_the_table(self) -> None:
        table = parse_lookup_table("pn/DOE^JOHN = SUBJ001\nid/PID1=S-1\n")
        script = parse(
            '(0010,0010) := lookup["pn", (0010,0010)]\n'
            '(0010,0020) := lookup["id", (0010,0020)]\n'
            '(0010,1000) := lookup["pn", "NOBODY^HERE"]\n'
        ).with_lookup(table)
        ds = base()
        run(script, ds, {})
        assert (str(ds.PatientName), ds.PatientID) == ("SUBJ001", "S-1")
        assert ds[0x00101000].value in ("", None)  # absent key: no value, never the old one

    def test_retain_private_tags_keeps_only_those_named(self) -> None:
        ds = base()
        ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
        ds.add_new(0x0019100C, "LO", "b-value")
        ds.add_new(0x0019100D, "LO", "gone")
        ds.add_new(0x00290010, "LO", "OTHER")
        ds.add_new(0x00291001, "LO", "gone")
        run(parse('retainPrivateTags["(0019,{SIEMENS MR HEADER}0C)"]'), ds, {})
        assert sorted(int(e.tag) for e in ds if e.tag.group % 2) == [0x00190010, 0x0019100C]

    def test_remove_all_private_tags_at_every_depth(self) -> None:
        ds = base()
        ds.add_new(0x00091001, "LO", "x")
        item = Dataset()
        item.add_new(0x00111001, "LO", "y")
        ds.ReferencedSeriesSequence = Sequence([item])
        run(parse("removeAllPrivateTags"), ds, {})
        assert 0x00091001 not in ds and 0x00111001 not in ds.ReferencedSeriesSequence[0]

    def test_remove_tags_delete_set(self) -> None:
        ds = base()
        run(
            parse(
                'removeTags["(0010,0010)", (0008,0060)]\ndelete["(0010,0020)"]\n'
                'set["(0008,103E)", "NEW"]'
            ),
            ds,
            {},
        )
        assert "PatientName" not in ds and "Modality" not in ds and "PatientID" not in ds
        assert ds.SeriesDescription == "NEW"

    def test_is_present(self) -> None:
        ds = base()
        run(
            parse(
                'isPresent[(0010,0010)] ? (0010,1000) := "name"\n'
                'isPresent["(0010,1010)"] ? (0010,1001) := "age"'
            ),
            ds,
            {},
        )
        assert ds[0x00101000].value == "name" and 0x00101001 not in ds

    def test_shift_datetime_units_list_and_sequence(self) -> None:
        assert value_of('shiftDateTimeByIncrement["20200101", "2", "days"]') == "20200103"
        assert value_of('shiftDateTimeListByIncrement["20200101120000\\\\20200102", "60"]') == [
            "20200101120100",
            "20200102",
        ]
        ds = base()
        ds.AcquisitionDateTime = "20200101120000"
        item = Dataset()
        item.AcquisitionDateTime = "20200101235959"
        ds.ReferencedSeriesSequence = Sequence([item])
        run(parse('shiftDateTimeSequenceByIncrement["1", "*/(0008,002A)"]'), ds, {})
        assert ds.AcquisitionDateTime == "20200101120001"
        assert ds.ReferencedSeriesSequence[0].AcquisitionDateTime == "20200102000000"

    def test_normalize_string(self) -> None:
        assert value_of('normalizeString["Zoë Ångström"]') == "Zo_ _ngstr_m"
        assert value_of('normalizeString["Zoë", "?"]') == "Zo?"

    def test_scale_patient_age_and_dob_over_89(self) -> None:
        ds = base()
        ds.StudyDate = "20240305"
        ds.PatientBirthDate = "19200101"
        ds.PatientAge = "104Y"
        run(parse("scalePatientAgeAndDobFromStudyDate[]"), ds, {})
        assert ds.PatientAge == "089Y"
        assert "19350" <= ds.PatientBirthDate <= "19350310"  # 89 years before the study
        young = base()
        young.StudyDate, young.PatientBirthDate, young.PatientAge = "20240305", "19800101", "044Y"
        run(parse("scalePatientAgeAndDobFromStudyDate[]"), young, {})
        assert (young.PatientBirthDate, young.PatientAge) == ("19800101", "044Y")

    def test_collect_and_blank_values(self) -> None:
        ds = base()
        ds.OtherPatientIDs = "PID1"
        ds.ReferringPhysicianName = "DOE^JOHN"
        run(parse("names := collectValues[(0010,0010), (0010,0020)]\nblankValues[names]"), ds, {})
        assert (str(ds.PatientName), ds.PatientID, ds.OtherPatientIDs) == ("", "", "")
        assert str(ds.ReferringPhysicianName) == ""

    def test_url_encode(self) -> None:
        assert value_of('urlEncode["a b&c"]') == "a+b%26c"


def test_blank_known_phi_takes_nested_lists() -> None:
    """The older spelling of blankValues[collectValues[...]], with lists of lists."""
    ds = base()
    ds.OtherPatientIDs = "PID1"
    ds.ReferringPhysicianName = "DOE^JOHN"
    run(parse("blankKnownPHI[{ {(0010,0010)}, {(0010,0020), (0010,1000)} }]"), ds, {})
    assert (str(ds.PatientName), ds.PatientID, ds.OtherPatientIDs) == ("", "", "")
    assert str(ds.ReferringPhysicianName) == "" and ds.Modality == "MR"


def test_a_list_variable_keeps_its_tag_paths() -> None:
    ds = base()
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20200101"
    item = Dataset()
    item.SOPInstanceUID = "1.2.3.9"
    ds.ReferencedImageSequence = Sequence([item])
    script = (
        "removeTags[{(0008,0020), (0008,0021)}]\n"
        "later := {\n  (0008,0022)\n}\nremoveTags[later]\n"
        "uids := {*/(0008,1155), (0008,0018)}\n"
        "hashUIDList[uids]\n"
        "(0010,1000) := later"  # used as a value, the list gives its values
    )
    item.ReferencedSOPInstanceUID = "1.2.3.10"
    ds.SOPInstanceUID = "1.2.3.11"
    run(parse(script), ds, {})
    assert "StudyDate" not in ds and "SeriesDate" not in ds and "AcquisitionDate" not in ds
    assert ds.ContentDate == "20200101"
    assert item.ReferencedSOPInstanceUID == hash_uid("1.2.3.10")
    assert ds.SOPInstanceUID == hash_uid("1.2.3.11")
