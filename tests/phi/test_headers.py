"""The header check: identifying values left anywhere after anonymization (SPEC 10.2)."""

from __future__ import annotations

import io

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from xnatd.anon.apply import apply_to_bytes
from xnatd.anon.script import parse
from xnatd.phi.headers import find_left, needles


def sample(name: str = "CT_small.dcm") -> Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def reread(dataset: Dataset) -> Dataset:
    """The data set as it would be written and read back: elements raw again."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()), force=True)


def report(text: str) -> Dataset:
    """A structured-report content item holding ``text``."""
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = text
    return item


class TestFindLeft:
    def test_a_clean_result_has_no_findings(self) -> None:
        original = sample()
        wanted = needles(original)
        cleaned = sample()
        for keyword in ("PatientName", "PatientID", "InstitutionName", "StudyID"):
            setattr(cleaned, keyword, "ANONYMIZED")
        del cleaned.OtherPatientIDsSequence
        assert find_left(reread(cleaned), wanted) == []

    def test_nested_ids_a_script_forgot_are_found_with_their_path(self) -> None:
        """CT_small's Other Patient IDs Sequence holds two IDs; a script that replaces
        only Patient ID leaves them."""
        wanted = needles(sample())
        left = sample()
        left.PatientName = "ANON"
        left.PatientID = "S01"
        left.StudyID = "1"
        del left.InstitutionName
        leaks = find_left(reread(left), wanted)
        assert {(leak.where, leak.what) for leak in leaks} == {
            ("(0010,1002)[0]/(0010,0020)", "patient id"),
            ("(0010,1002)[1]/(0010,0020)", "patient id"),
        }

    def test_name_in_report_text_and_private_elements_is_found(self) -> None:
        """The patient's surname in an SR text value, the birth date in a private LO and
        the ID inside a private binary blob."""
        original = sample()
        original.PatientName = "Doe^Jonathan"
        original.PatientBirthDate = "19610412"
        wanted = needles(original)
        left = Dataset()
        left.PatientName = "ANON"
        left.ContentSequence = Sequence([report("Dr. Smith reviewed; patient JONATHAN DOE ok")])
        block = left.private_block(0x0029, "ACME 1.0", create=True)
        block.add_new(0x10, "LO", "born 19610412")
        block.add_new(0x11, "OB", b"\x00\x01id=1CT1;\x00")
        leaks = find_left(reread(left), wanted)
        found = {(leak.where, leak.what) for leak in leaks}
        assert ("(0040,A730)[0]/(0040,A160)", "patient name") in found
        assert ("(0029,1010)", "birth date") in found
        assert ("(0029,1011)", "patient id") in found

    def test_findings_never_carry_the_value(self) -> None:
        original = sample()
        wanted = needles(original)
        for leak in find_left(original, wanted):
            assert "1CT1" not in repr(leak) and "COMPRESSED" not in repr(leak).upper()

    def test_placeholders_and_short_name_parts_are_not_findings(self) -> None:
        original = Dataset()
        original.PatientName = "ANONYMOUS"
        original.PatientID = "UNKNOWN"
        original.ReferringPhysicianName = "Li^Al"
        original.OperatorsName = "----"
        left = Dataset()
        left.PatientName = "ANONYMOUS"
        left.PatientID = "UNKNOWN"
        left.StudyDescription = "AL LI brain"  # parts shorter than 3 are not searched
        left.OperatorsName = "----"
        assert find_left(left, needles(original)) == []

    def test_institution_can_be_left_out(self) -> None:
        """With retain-institution-identity, the institution is not a finding."""
        original = sample()
        assert any(leak.what == "institution" for leak in find_left(original, needles(original)))
        kept = needles(original, institution=False)
        assert all(leak.what != "institution" for leak in find_left(original, kept))

    def test_deep_nesting_is_walked_without_recursion(self) -> None:
        original = Dataset()
        original.PatientID = "PID-778899"
        root = Dataset()
        item = root
        for _ in range(3000):
            child = Dataset()
            item.ContentSequence = Sequence([child])
            item = child
        item.TextValue = "id PID-778899"
        [leak] = find_left(root, needles(original))
        assert leak.what == "patient id" and leak.where.count("[0]") == 3000


def test_a_real_script_that_forgets_a_nested_element() -> None:
    """apply_to_bytes with a typical script on a real sample, then the check."""
    path = get_testdata_file("CT_small.dcm")
    original = pydicom.dcmread(path)
    script = parse(
        'version "6.3"\n(0010,0010) := "ANON"\n(0010,0020) := "S01"\n-(0010,0030)\n'
        "-(0008,0080)\n-(0020,0010)\n"
    )
    with open(path, "rb") as source:
        result = pydicom.dcmread(io.BytesIO(apply_to_bytes(script, source.read(), {})))
    leaks = find_left(result, needles(original))
    assert [leak.where for leak in leaks] and all(
        leak.where.startswith("(0010,1002)") for leak in leaks
    )
