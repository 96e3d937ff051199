"""The built-in PS3.15 basic profile at receive (SPEC 10.1): pydicom's sample files sent
by DCMTK storescu are stored de-identified as Table E.1-1 says, and the header PHI check
finds nothing left, so the session is READY."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from helpers import Xnatd, dicom_files, storescu_send, wait_for
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from xnatd.anon.profile import uid_for

NAME, PATIENT_ID, BIRTH = "Nakamura^Hiroshi", "HN-4471-90", "19530704"


def samples(folder: Path) -> list[Path]:
    """CT_small and MR_small, the MR given a patient with a birth date, another ID in a
    nested sequence and a private element repeating the patient ID."""
    folder.mkdir(parents=True, exist_ok=True)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.save_as(folder / "ct.dcm")
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    mr.PatientName, mr.PatientID, mr.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    mr.StudyDescription = f"MR brain {NAME}"
    # MR_small's institution is "TOSHIBA", which its Manufacturer (kept by the profile,
    # as the standard says) repeats: the PHI check would rightly flag it.
    mr.InstitutionName = "St Elsewhere General"
    other = Dataset()
    other.PatientID = "MRN-0099812"
    mr.OtherPatientIDsSequence = Sequence([other])
    block = mr.private_block(0x0019, "SCANNER X", create=True)
    block.add_new(0x20, "LO", f"ref {PATIENT_ID}")
    mr.save_as(folder / "mr.dcm")
    return [folder / "ct.dcm", folder / "mr.dcm"]


def start(make_xnatd, options: list[str]) -> Xnatd:
    def hook(settings: dict) -> None:
        settings["site"]["anonymization"] = [{"profile": "basic", "options": options}]
        settings["site"]["phi_check"] = {"headers": "hold"}
        settings["receivers"][0]["default_project"] = "DEMO"

    return make_xnatd(hook=hook)


def test_basic_profile_stores_de_identified_files_and_the_session_is_ready(
    make_xnatd, tmp_path: Path, storescu: str
) -> None:
    xnatd = start(make_xnatd, [])
    sent = samples(tmp_path / "send")
    assert storescu_send(storescu, xnatd.port, sent).returncode == 0
    ready = xnatd.wait_status("READY", count=2)
    for row in ready:
        shown = json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)
        assert shown["findings"] == []
    secret = (xnatd.workdir / "uid.key").read_bytes().strip()
    originals = {uid_for(secret, pydicom.dcmread(p).SOPInstanceUID): p for p in sent}
    stored = [pydicom.dcmread(p) for p in dicom_files(xnatd.data_dir / "prearchive")]
    assert len(stored) == 2
    for ds in stored:
        original = pydicom.dcmread(originals[ds.SOPInstanceUID])
        assert ds.StudyInstanceUID == uid_for(secret, original.StudyInstanceUID)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert str(ds.PatientName) == "" and ds.PatientID == ""  # Z
        assert ds.PatientBirthDate in ("", None)
        assert "OtherPatientIDsSequence" not in ds  # X
        assert not [e for e in ds if e.tag.is_private]
        # clean-descriptors off: descriptors go as the Basic Profile says (X)
        assert "StudyDescription" not in ds
        assert ds.InstitutionName in ("", None)  # X/Z/D
        assert ds.PatientIdentityRemoved == "YES"
        assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]
        assert ds.PixelData == original.PixelData
    raw = b"".join(p.read_bytes() for p in dicom_files(xnatd.data_dir / "prearchive"))
    assert PATIENT_ID.encode() not in raw and b"Nakamura" not in raw


def test_clean_descriptors_keeps_descriptions_without_the_patient(
    make_xnatd, tmp_path: Path, storescu: str
) -> None:
    xnatd = start(make_xnatd, ["clean-descriptors", "retain-institution-identity"])
    sent = samples(tmp_path / "send")
    assert storescu_send(storescu, xnatd.port, sent[1:]).returncode == 0
    [row] = xnatd.wait_status("READY")
    [path] = dicom_files(xnatd.data_dir / "prearchive")
    ds = pydicom.dcmread(path)
    assert ds.StudyDescription == "MR brain"
    assert ds.InstitutionName == "St Elsewhere General"
    codes = {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113105", "113112"}
    shown = json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)
    assert shown["findings"] == []


def test_phi_check_runs_around_the_whole_chain(make_xnatd, tmp_path: Path, storescu: str) -> None:
    """A script before the profile copies the patient's name where the profile keeps
    values (Manufacturer is not in Table E.1-1): the check, given the values as sent,
    finds it after the last step and holds the session."""

    def hook(settings: dict) -> None:
        script = tmp_path / "copy.das"
        script.write_text('version "6.3"\n(0008,0070) := (0010,0010)\n')
        settings["site"]["anonymization"] = [str(script), {"profile": "basic"}]
        settings["site"]["phi_check"] = {"headers": "hold"}
        settings["receivers"][0]["default_project"] = "DEMO"

    xnatd = make_xnatd(hook=hook)
    sent = samples(tmp_path / "send")
    assert storescu_send(storescu, xnatd.port, sent[1:]).returncode == 0
    [row] = xnatd.wait_status("HELD")
    shown = json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)
    assert [(f["where"], f["what"]) for f in shown["findings"]] == [("(0008,0070)", "patient name")]
    [path] = dicom_files(xnatd.data_dir / "prearchive")
    assert str(pydicom.dcmread(path).PatientName) == ""  # the profile ran after the script


def test_project_profile_applied_at_archive(make_xnatd, tmp_path: Path, storescu: str) -> None:
    """``projects.P.anonymization`` as a profile: files arrive as sent (no site step) and
    are archived de-identified, with UIDs from the site secret."""

    def hook(settings: dict) -> None:
        settings["projects"]["DEMO"] = {
            "prearchive": "auto-archive",
            "anonymization": {"profile": "basic", "options": ["retain-uids"]},
        }
        settings["receivers"][0]["default_project"] = "DEMO"

    xnatd = make_xnatd(hook=hook)
    sent = samples(tmp_path / "send")
    assert storescu_send(storescu, xnatd.port, sent[:1]).returncode == 0
    [row] = wait_for(lambda: json.loads(xnatd.cli("sessions", "list", "--json").stdout), 30)
    [archived] = dicom_files(Path(row["path"]))
    ds, original = pydicom.dcmread(archived), pydicom.dcmread(sent[0])
    assert str(ds.PatientName) == "" and ds.PatientIdentityRemoved == "YES"
    assert ds.SOPInstanceUID == original.SOPInstanceUID  # retain-uids
    codes = {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113110"}
