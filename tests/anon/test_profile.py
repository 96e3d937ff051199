"""The PS3.15 basic profile and its options on pydicom's sample files, and chains of a
profile and DicomEdit scripts in the order listed."""

from __future__ import annotations

import datetime
import io
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from xnatd import config
from xnatd.anon.apply import apply_to_bytes
from xnatd.anon.chain import Chain
from xnatd.anon.profile import (
    DUMMIES,
    DUMMY_TEXT,
    OPTIONS,
    Profile,
    _resolve,
    day_offset,
    uid_for,
)
from xnatd.anon.ps315_table import ACTIONS
from xnatd.anon.script import parse
from xnatd.config import ConfigError

SECRET = b"0123456789abcdef0123456789abcdef"
SAMPLES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "JPEG2000.dcm")


def sample(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def run(steps: tuple, data: bytes) -> Dataset:
    out = apply_to_bytes(Chain(steps), data, {"project": "P", "subject": "S", "session": "E"})
    assert out is not None
    return pydicom.dcmread(io.BytesIO(out))


def profile(*options: str, secret: bytes = SECRET) -> Profile:
    return Profile(frozenset(options), secret)


def expected(action: str, vr: str, original: object, offset: int) -> object:
    """What the table's action leaves of a top-level, non-sequence value."""
    if action == "K":
        return original
    if action == "Z":
        return b"" if vr in ("OB", "OW", "UN") else ""
    if action == "D":
        return DUMMIES.get(vr, DUMMY_TEXT)
    if action == "U":
        return uid_for(SECRET, str(original))
    if action == "C-dates" and vr == "DA" and original:
        day = datetime.datetime.strptime(str(original), "%Y%m%d").date()
        return (day - datetime.timedelta(days=offset)).strftime("%Y%m%d")
    return None  # cleaned text and other C: checked on their own


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("option", (None, *OPTIONS))
def test_each_attribute_gets_the_tables_action(name: str, option: str | None) -> None:
    """Every top-level attribute of the table, per option: removed, emptied, dummy,
    replaced UID, shifted date or kept, as Table E.1-1's column says."""
    options = () if option is None else (option,)
    original = pydicom.dcmread(io.BytesIO(sample(name)))
    result = run((profile(*options),), sample(name))
    offset = day_offset(SECRET, str(original.get("PatientID", "")))
    checked = 0
    for element in original:
        tag = int(element.tag)
        if tag not in ACTIONS or element.VR == "SQ" or tag >> 16 == 0x0012:
            continue
        basic, cells = ACTIONS[tag]
        action = _resolve(basic, cells, frozenset(options))
        if action == "X":
            assert tag not in result, element.keyword
            continue
        want = expected(action, element.VR, element.value, offset)
        if want is None:
            continue
        got = result[tag].value
        assert (got if got is not None else "") == want, (element.keyword, action)
        checked += 1
    assert checked >= 3
    assert 0x00100010 not in result or not str(result.PatientName)
    assert result.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in result.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100"
    assert all(
        item.CodingSchemeDesignator == "DCM" for item in result.DeidentificationMethodCodeSequence
    )
    if option in ("clean-graphics", "clean-pixel-data", None):
        assert codes == ["113100"]  # not performed by the profile: not claimed
    else:
        assert len(codes) == 2


def test_basic_profile_on_ct_small() -> None:
    """The values a user looks at: names and IDs emptied, UIDs replaced and consistent
    with the meta header, institution and descriptors gone, private elements gone."""
    ds = run((profile(),), sample("CT_small.dcm"))
    assert str(ds.PatientName) == "" and ds.PatientID == ""
    assert ds.InstitutionName in ("", None) and ds.StationName in ("", None)
    assert "StudyDescription" not in ds and "AdditionalPatientHistory" not in ds
    assert ds.StudyDate in ("", None) and "TimezoneOffsetFromUTC" not in ds
    assert ds.StudyInstanceUID.startswith("2.25.")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert not [e for e in ds if e.tag.is_private]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_options_keep_what_they_name() -> None:
    original = pydicom.dcmread(io.BytesIO(sample("CT_small.dcm")))
    ds = run(
        (
            profile(
                "retain-uids",
                "retain-device-identity",
                "retain-institution-identity",
                "retain-patient-characteristics",
                "retain-longitudinal-full-dates",
            ),
        ),
        sample("CT_small.dcm"),
    )
    assert ds.StudyInstanceUID == original.StudyInstanceUID
    assert ds.StationName == original.StationName
    assert ds.InstitutionName == original.InstitutionName
    assert ds.PatientSex == "O" and ds.PatientAge == "000Y" and ds.PatientWeight == 0
    assert ds.StudyDate == "20040119" and ds.SeriesDate == "19970430"
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert str(ds.PatientName) == ""
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113110", "113109", "113112", "113108", "113106"}


def test_modified_dates_move_by_one_offset_per_subject() -> None:
    ct = run((profile("retain-longitudinal-modified-dates"),), sample("CT_small.dcm"))
    shift = datetime.date(2004, 1, 19) - datetime.datetime.strptime(ct.StudyDate, "%Y%m%d").date()
    series = datetime.date(1997, 4, 30) - datetime.datetime.strptime(ct.SeriesDate, "%Y%m%d").date()
    assert shift == series and 1 <= shift.days <= 3650  # one offset within the file
    assert ct.StudyTime == "072730"  # whole days: times stay
    assert ct.LongitudinalTemporalInformationModified == "MODIFIED"
    again = run((profile("retain-longitudinal-modified-dates"),), sample("CT_small.dcm"))
    assert again.StudyDate == ct.StudyDate
    other = day_offset(SECRET, "someone else")
    assert shift.days == day_offset(SECRET, "1CT1") and other != shift.days


def test_clean_descriptors_cuts_identifying_values_out_of_text() -> None:
    data = pydicom.dcmread(io.BytesIO(sample("CT_small.dcm")))
    data.StudyDescription = "CT head for CompressedSamples, id 1CT1"
    data.SeriesDescription = "AXIAL 5mm"
    out = io.BytesIO()
    data.save_as(out)
    ds = run((profile("clean-descriptors"),), out.getvalue())
    assert ds.StudyDescription == "CT head for , id"
    assert ds.SeriesDescription == "AXIAL 5mm"
    plain = run((profile(),), out.getvalue())
    assert "StudyDescription" not in plain and "SeriesDescription" not in plain


def test_retain_safe_private_keeps_only_the_safe_list() -> None:
    data = pydicom.dcmread(io.BytesIO(sample("MR_small.dcm")))
    block = data.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")  # B value: safe
    block.add_new(0x10, "LO", "DOE^JANE")  # not on the list
    data.add_new(0x00291010, "LO", "other vendor")
    out = io.BytesIO()
    data.save_as(out)
    kept = run((profile("retain-safe-private"),), out.getvalue())
    assert kept[0x0019100C].value == "1000" and kept[0x00190010].value == "SIEMENS MR HEADER"
    assert 0x00191010 not in kept and 0x00291010 not in kept
    gone = run((profile(),), out.getvalue())
    assert not [e for e in gone if e.tag.is_private]


def test_uids_map_the_same_across_files_and_runs_and_differ_by_secret() -> None:
    data = sample("CT_small.dcm")
    first = run((profile(),), data)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"  # a second file of the same study
    out = io.BytesIO()
    ds.save_as(out)
    second = run((profile(),), out.getvalue())
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    rerun = run((Profile(frozenset(), bytes(SECRET)),), data)  # another run, same secret
    assert rerun.StudyInstanceUID == first.StudyInstanceUID
    other = run((profile(secret=b"another-secret-of-the-other-site"),), data)
    assert other.StudyInstanceUID != first.StudyInstanceUID
    assert first.StudyInstanceUID == uid_for(SECRET, ds.StudyInstanceUID)
    assert len(first.StudyInstanceUID) <= 64


def test_chain_runs_in_the_order_listed() -> None:
    """A script after the profile sees its output; a profile after a script sees the
    script's."""
    script = parse('version "6.3"\n(0010,4000) := (0020,000D)\n(0010,0010) := "SUBJECT 7"\n')
    original = pydicom.dcmread(io.BytesIO(sample("CT_small.dcm")))
    after = run((profile(), script), sample("CT_small.dcm"))
    assert after.PatientComments == uid_for(SECRET, original.StudyInstanceUID)
    assert str(after.PatientName) == "SUBJECT 7"
    before = run((script, profile()), sample("CT_small.dcm"))
    assert "PatientComments" not in before  # X in the basic profile
    assert str(before.PatientName) == ""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xnatd.yaml"
    path.write_text(text)
    return path


def test_config_profiles_and_lists(tmp_path: Path) -> None:
    (tmp_path / "site.das").write_text('(0010,0010) := "S"\n')
    loaded = config.load(
        write(
            tmp_path,
            "site:\n  data_dir: var\n  anonymization:\n"
            "    - {profile: basic, options: [retain-longitudinal-modified-dates]}\n"
            "    - site.das\n",
        )
    )
    chain = loaded.site.script
    assert isinstance(chain, Chain) and len(chain.steps) == 2
    assert isinstance(chain.steps[0], Profile)
    assert chain.steps[0].options == {"retain-longitudinal-modified-dates"}
    key = tmp_path / "uid.key"
    assert loaded.site.uid_secret == key and key.stat().st_mode & 0o777 == 0o600
    assert chain.steps[0].secret == key.read_bytes().strip()
    again = config.load(tmp_path / "xnatd.yaml")
    assert again.site.script.steps[0].secret == chain.steps[0].secret  # type: ignore[union-attr]


def test_config_refuses_unknown_names_and_a_secret_in_the_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(
            write(
                tmp_path,
                "site:\n  data_dir: var\n  anonymization: [{profile: strict}]\n"
                "projects:\n  P1: {anonymization: {profile: basic, options: [retain-names]}}\n",
            )
        )
    found = caught.value.problems
    assert any(p.startswith("site.anonymization[0].profile:") and "strict" in p for p in found)
    assert any(
        p.startswith("projects.P1.anonymization.options:") and "retain-names" in p for p in found
    ), found
    os.makedirs(tmp_path / "var", exist_ok=True)
    with pytest.raises(ConfigError) as inside:
        config.load(
            write(
                tmp_path,
                "site:\n  data_dir: var\n  uid_secret: var/uid.key\n"
                "  anonymization: {profile: basic}\n",
            )
        )
    assert any(p.startswith("site.uid_secret:") for p in inside.value.problems)
    assert not (tmp_path / "var" / "uid.key").exists()
