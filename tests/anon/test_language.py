"""DicomEdit 6 statements, tag paths and parse errors, with the values XNAT gives."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from xnatd.anon.engine import ScriptFailed, run
from xnatd.anon.script import ScriptError, parse


def dataset(**values: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesDescription = "PDW_TSE"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PID1"
    ds.SeriesNumber = 5
    ds.SpecificCharacterSet = "ISO_IR 100"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def apply(text: str, ds: Dataset | None = None, **variables: str) -> Dataset:
    ds = ds if ds is not None else dataset()
    run(parse(text), ds, variables)
    return ds


class TestStatements:
    def test_assign_creates_and_overwrites(self) -> None:
        ds = apply('(0010,0010) := "ANON"\n(0010,1000) := "NEW"')
        assert (str(ds.PatientName), ds[0x00101000].value) == ("ANON", "NEW")

    def test_assign_if_exists_only_touches_present_elements(self) -> None:
        ds = apply('(0008,1070) ?= "TECH"\n(0010,0020) ?= "X"')
        assert 0x00081070 not in ds and ds.PatientID == "X"

    def test_delete(self) -> None:
        assert "PatientID" not in apply("-(0010,0020)")

    def test_variables_and_xnat_variables(self) -> None:
        ds = apply(
            'x := "p-"\n(0010,0020) := concatenate[x, project, "/", subject, "/", session]',
            project="P1",
            subject="S1",
            session="E1",
        )
        assert ds.PatientID == "p-P1/S1/E1"

    def test_ternary_and_else(self) -> None:
        ds = apply('(0008,0060) = "MR" ? (0020,1204) := "100" : (0020,1204) := "50"')
        assert ds[0x00201204].value == 100
        ds = apply('(0008,0060) = "CT" ? (0020,1204) := "100" : (0020,1204) := "50"')
        assert ds[0x00201204].value == 50

    def test_ternary_delete_on_charset(self) -> None:
        ds = dataset()
        ds.add_new(0x00283003, "LO", "LUT")
        assert 0x00283003 not in apply('(0008,0005) = "ISO_IR 100" ? -(0028,3003)', ds)

    @pytest.mark.parametrize(
        ("operator", "right", "taken"),
        [
            ("=", '"MR"', True),
            ("!=", '"MR"', False),
            ("~", '"M."', True),
            ("!~", '"M."', False),
            ("~", '"\\\\d{3}"', False),
        ],
    )
    def test_condition_operators(self, operator: str, right: str, taken: bool) -> None:
        ds = apply(f'(0008,0060) {operator} {right} ? (0010,0020) := "HIT"')
        assert (ds.PatientID == "HIT") is taken

    def test_regex_must_match_whole_value(self) -> None:
        ds = dataset(AccessionNumber="1024")
        assert apply('(0008,0050) ~ "\\\\d{3}" ? (0010,0020) := "HIT"', ds).PatientID == "PID1"

    def test_if_elseif_else(self) -> None:
        script = """
if ((0008,0060) = "CT") {
  (0010,0020) := "ct"
} elseif ((0008,0060) = "MR") {
  (0010,0020) := "mr"
  (0010,0010) := "MRNAME"
}
else {
  (0010,0020) := "other"
}
"""
        ds = apply(script)
        assert (ds.PatientID, str(ds.PatientName)) == ("mr", "MRNAME")
        assert apply(script, dataset(Modality="US")).PatientID == "other"

    def test_echo_describe_export_version(self) -> None:
        result = run(
            parse('version "6.3"\ndescribe x "Label"\nexport x "a/b"\necho "hi"\necho'),
            dataset(),
            {},
        )
        assert result.echoes == ["hi", ""]

    def test_strings_with_escapes(self) -> None:
        ds = apply('(0010,1000) := "a\\\\b\\tc\\(d\\)\\101"')
        assert ds[0x00101000].value == ["a", "b\tc(d)A"]  # \\ is DICOM's value separator

    def test_lists_may_span_lines(self) -> None:
        ds = apply('x := {\n  "a",\n  "b"\n}\n(0010,1000) := concatenate[x]')
        assert ds[0x00101000].value == ["a", "b"]


class TestTagPaths:
    def test_digit_wildcards(self) -> None:
        ds = Dataset()
        for tag in (0x00189300, 0x001893FF, 0x00189011, 0x00189012, 0x00189050, 0x00189051):
            ds.add_new(tag, "LO", "x")
        run(parse("-(0018,93XX)\n-(0018,901#)\n-(0018,905@)"), ds, {})
        assert sorted(int(e.tag) for e in ds) == [0x00189012, 0x00189051]

    def test_private_tags_by_creator(self) -> None:
        ds = Dataset()
        ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
        ds.add_new(0x20011080, "LO", "a")
        ds.add_new(0x20011082, "LO", "b")
        ds.add_new(0x20011081, "LO", "c")
        ds.add_new(0x20011180, "LO", "other block")
        run(parse("-(2001,{Philips Imaging DD 001}8@)"), ds, {})
        assert sorted(int(e.tag) for e in ds) == [0x20010010, 0x20011081, 0x20011180]

    def test_sequence_items_and_item_wildcard(self) -> None:
        ds = dataset()
        ds.ReferencedSeriesSequence = Sequence([Dataset(), Dataset()])
        for index, item in enumerate(ds.ReferencedSeriesSequence):
            item.SeriesInstanceUID = f"1.2.{index}"
            item.StudyDescription = "x"
        run(parse('(0008,1115)[1]/(0020,000E) := "9.9"\n-(0008,1115)[%]/(0008,1030)'), ds, {})
        items = ds.ReferencedSeriesSequence
        assert [i.SeriesInstanceUID for i in items] == ["1.2.0", "9.9"]
        assert all("StudyDescription" not in i for i in items)

    @pytest.mark.parametrize(
        ("prefix", "top", "level1", "level2"),
        [("*/", False, False, False), ("+/", True, False, False), ("./", True, False, True)],
    )
    def test_level_wildcards(self, prefix: str, top: bool, level1: bool, level2: bool) -> None:
        ds = dataset(PatientComments="top")
        inner = Dataset()
        inner.PatientComments = "level1"
        deeper = Dataset()
        deeper.PatientComments = "level2"
        inner.ReferencedImageSequence = Sequence([deeper])
        ds.ReferencedSeriesSequence = Sequence([inner])
        run(parse(f"-{prefix}(0010,4000)"), ds, {})
        assert ("PatientComments" in ds) is top
        assert ("PatientComments" in inner) is level1
        assert ("PatientComments" in deeper) is level2


class TestParseErrors:
    @pytest.mark.parametrize(
        ("text", "line", "column", "says"),
        [
            ('version "6.1"\n(0010,0010) := \n', 2, 16, "expected"),
            ('(0010,0010) := "unterminated\n', 1, 16, "unexpected"),
            ('if ((0008,0060) = "MR") {\n  -(0010,0010)\n', 2, 15, "}"),
            ("(0010,0010) = = \n", 1, 15, "expected"),
        ],
    )
    def test_line_column_and_expected(self, text: str, line: int, column: int, says: str) -> None:
        with pytest.raises(ScriptError) as caught:
            parse(text)
        assert (caught.value.line, caught.value.column) == (line, column)
        assert says in str(caught.value)

    @pytest.mark.parametrize(
        ("text", "line", "says"),
        [
            ('(0010,0010) := "a"\n+/(0010,0010) := "x"', 2, "may name several elements; :="),
            ('(0010,0010) := "a"\n(0010,0020) := (0008,002X)', 2, "a value comes from one"),
            ('(0010,0010) := "a"\n\n-(001#,0010)', 3, "(001#,0010) is not a tag"),
            ("x := 1\nretainPrivateTags[(0028,0010)]", 2, "(0028,0010) is not one"),
        ],
    )
    def test_refused_at_load_naming_the_line(self, text: str, line: int, says: str) -> None:
        """What DicomEdit refuses when it loads a script is refused here at load too, with
        the line, never on the first file."""
        with pytest.raises(ScriptError) as caught:
            parse(text)
        assert caught.value.line == line
        assert says in str(caught.value)

    def test_unknown_function_is_a_load_time_error(self) -> None:
        with pytest.raises(ScriptError, match=r"line 2.*unknown function frobnicate"):
            parse('(0010,0010) := "x"\n(0010,0020) := frobnicate["a"]')

    def test_wrong_number_of_arguments(self) -> None:
        with pytest.raises(ScriptError, match=r"substring\[\] takes 2 to 3 arguments, not 1"):
            parse('(0010,0010) := substring["abc"]')

    def test_lookup_without_a_table_fails_the_file_not_silently(self) -> None:
        with pytest.raises(ScriptFailed, match=r"lookup\[\]: no lookup table"):
            run(parse('(0010,0010) := lookup["pn", (0010,0010)]'), dataset(), {})

    def test_dicomedit_4_scripts_are_not_6(self) -> None:
        with pytest.raises(ScriptError, match="not DicomEdit 6"):
            parse('version "4.2"\n')

    def test_a_runtime_failure_names_the_function(self) -> None:
        with pytest.raises(ScriptFailed, match="substring"):
            run(parse('(0010,0010) := substring["abc", 2, 9]'), dataset(), {})


def test_a_backslash_before_a_line_break_continues_the_line() -> None:
    """DicomEdit 6.6: statements and strings may be split across lines with ``\\``."""
    ds = dataset()
    script = (
        'version "6.6"\n'
        '(0008,0100) = "nope" ? \\\n    (0008,0100) := "nope" : \\\n    (0008,0100) := "A B"\n'
        '(0008,0104) := "INSERTED \\\nSTR\\\nING"\n'
    )
    run(parse(script), ds, {})
    assert (ds.CodeValue, ds.CodeMeaning) == ("A B", "INSERTED STRING")
