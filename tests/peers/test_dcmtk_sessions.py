"""Sessions sent by DCMTK storescu arrive in the prearchive built, routed and valid."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydicom
from dicomgen import SeriesSpec, StudySpec, dataset_bytes, write_study
from helpers import Xnatd, assert_valid, dicom_files, storescu_send
from lxml import etree

from xnatd.dicom import read_header
from xnatd.store.layout import instance_file_name

NS = {"xnat": "http://nrg.wustl.edu/xnat", "cat": "http://nrg.wustl.edu/catalog"}


def session_dir(xnatd: Xnatd, name: str) -> Path:
    return xnatd.data_dir / "prearchive" / name


def test_mr_session_with_several_series(
    xnatd: Xnatd, storescu: str, dcm_dir: Path, schemas: dict
) -> None:
    """A 3-series MR study becomes one READY session: layout, names, bits, XML, catalogs."""
    study = StudySpec(
        "mr-several",
        patient_comments="Project: DemoStudy Subject: SUBJ01 Session: SUBJ01_MR1",
        series=[
            SeriesSpec(1, instances=4),
            SeriesSpec(2, instances=3, description="T2 FLAIR"),
            SeriesSpec(5, instances=2, description="DWI"),
        ],
    )
    sent = write_study(study, dcm_dir)
    result = storescu_send(storescu, xnatd.port, sent)
    assert result.returncode == 0, result.stderr

    [row] = xnatd.wait_status("READY")
    assert row["name"].startswith("DEMO/") and row["name"].endswith("/SUBJ01_MR1")
    assert (row["project"], row["subject"], row["label"]) == ("DEMO", "SUBJ01", "SUBJ01_MR1")
    assert (row["scans"], row["files"], row["study_uid"]) == (3, 9, str(study.study_uid))
    assert len(row["timestamp"]) == 18

    folder = session_dir(xnatd, row["name"])
    stored = dicom_files(folder)
    assert sorted(p.parent.parent.name for p in stored) == ["1"] * 4 + ["2"] * 3 + ["5"] * 2
    for original in sent:
        header = read_header(original.read_bytes())
        scan = header[0x00200011]
        target = folder / "SCANS" / scan / "DICOM" / instance_file_name(header)
        assert target.is_file(), target
        assert dataset_bytes(target) == dataset_bytes(original), "stored bytes differ from sent"
        meta = pydicom.dcmread(target, stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "SCANNER"

    document = folder.parent / "SUBJ01_MR1.xml"
    assert_valid(schemas["xnat"], document)
    root = etree.parse(str(document)).getroot()
    assert root.tag == "{http://nrg.wustl.edu/xnat}MRSession"
    assert root.get("UID") == str(study.study_uid) and root.get("project") == "DEMO"
    assert [s.get("ID") for s in root.iterfind(".//xnat:scan", NS)] == ["1", "2", "5"]
    for scan_id, count in (("1", 4), ("2", 3), ("5", 2)):
        catalog = folder / "SCANS" / scan_id / "DICOM" / f"scan_{scan_id}_catalog.xml"
        assert_valid(schemas["catalog"], catalog)
        entries = etree.parse(str(catalog)).getroot().findall(".//cat:entry", NS)
        assert len(entries) == count
        for entry in entries:
            data = (catalog.parent / entry.get("URI")).read_bytes()
            assert entry.get("digest") == hashlib.md5(data).hexdigest()
        resource = root.find(f".//xnat:scan[@ID='{scan_id}']/xnat:file", NS)
        assert resource.get("file_count") == str(count)
        assert int(resource.get("file_size")) == sum(
            (catalog.parent / e.get("URI")).stat().st_size for e in entries
        )


def test_ct_pet_and_petmr_get_their_session_types(
    xnatd: Xnatd, storescu: str, dcm_dir: Path, schemas: dict
) -> None:
    studies = {
        "CTSession": StudySpec(
            "ct",
            patient_id="CT_SUBJ",
            study_description="DEMO",
            series=[SeriesSpec(2, "CT", 3, "Head")],
        ),
        "PETSession": StudySpec(
            "pet",
            patient_id="PET_SUBJ",
            study_description="DEMO",
            series=[SeriesSpec(1, "PT", 2, "FDG"), SeriesSpec(2, "CT", 2, "CTAC")],
        ),
        "PETMRSession": StudySpec(
            "petmr",
            patient_id="PETMR_SUBJ",
            study_description="PETMR",
            series=[SeriesSpec(1, "PT", 2, "PET"), SeriesSpec(2, "MR", 2, "MRAC")],
        ),
    }
    paths = [p for name, study in studies.items() for p in write_study(study, dcm_dir / name)]
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    rows = {row["label"]: row for row in xnatd.wait_status("READY", count=3)}
    for element, study in studies.items():
        row = rows[study.patient_id]
        document = session_dir(xnatd, row["name"]).parent / f"{row['label']}.xml"
        assert_valid(schemas["xnat"], document)
        assert etree.parse(str(document)).getroot().tag == f"{{{NS['xnat']}}}{element}"
    assert rows["PETMR_SUBJ"]["project"] == "PETMR"


def test_duplicate_series_numbers_get_suffixed_scan_ids(
    xnatd: Xnatd, storescu: str, dcm_dir: Path, schemas: dict
) -> None:
    study = StudySpec(
        "dup",
        study_description="DEMO",
        series=[
            SeriesSpec(3, instances=2, description="first"),
            SeriesSpec(3, instances=2, description="second", uid_seed="other"),
        ],
    )
    assert storescu_send(storescu, xnatd.port, write_study(study, dcm_dir)).returncode == 0
    [row] = xnatd.wait_status("READY")
    folder = session_dir(xnatd, row["name"])
    assert sorted(p.name for p in (folder / "SCANS").iterdir()) == ["3", "3-MR1"]
    for scan_id in ("3", "3-MR1"):
        catalog = folder / "SCANS" / scan_id / "DICOM" / f"scan_{scan_id}_catalog.xml"
        assert_valid(schemas["catalog"], catalog)
        assert len(list(catalog.parent.glob("*.dcm"))) == 2
    assert_valid(schemas["xnat"], folder.parent / f"{row['label']}.xml")


def test_same_instance_sent_twice_is_stored_once(
    xnatd: Xnatd, storescu: str, dcm_dir: Path
) -> None:
    paths = write_study(
        StudySpec("twice", study_description="DEMO", series=[SeriesSpec(1, instances=2)]), dcm_dir
    )
    assert storescu_send(storescu, xnatd.port, paths + paths).returncode == 0
    assert storescu_send(storescu, xnatd.port, paths[:1]).returncode == 0
    [row] = xnatd.wait_status("READY")
    assert row["files"] == 2
    assert len(dicom_files(session_dir(xnatd, row["name"]))) == 2


def test_routing_fallbacks_and_unsafe_labels(xnatd: Xnatd, storescu: str, dcm_dir: Path) -> None:
    """No project anywhere: Unassigned; a hostile Patient ID cannot leave the data directory."""
    hostile = StudySpec(
        "hostile", patient_id="../../etc", patient_name="../../x^y", study_description="nothing"
    )
    by_accession = StudySpec(
        "accession", patient_id="P2", study_description="", accession_number="OTHER"
    )
    paths = write_study(hostile, dcm_dir / "a") + write_study(by_accession, dcm_dir / "b")
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    rows = {row["study_uid"]: row for row in xnatd.wait_status("READY", count=2)}
    assert (rows[hostile.study_uid]["project"], rows[hostile.study_uid]["label"]) == (
        "Unassigned",
        "______etc",
    )
    assert rows[hostile.study_uid]["subject"] == "______x_y"
    assert rows[by_accession.study_uid]["project"] == "OTHER"
    for stored in dicom_files(xnatd.workdir):
        assert stored.resolve().is_relative_to(xnatd.data_dir / "prearchive")


def test_prearchive_show_and_filters(xnatd: Xnatd, storescu: str, dcm_dir: Path) -> None:
    paths = write_study(
        StudySpec("show", study_description="DEMO", series=[SeriesSpec(1), SeriesSpec(2)]), dcm_dir
    )
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    [row] = xnatd.wait_status("READY")
    assert set(row) >= {
        "name",
        "project",
        "timestamp",
        "label",
        "subject",
        "study_uid",
        "status",
        "reason",
        "scans",
        "files",
        "last_modified",
    }
    shown = json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)
    assert shown["name"] == row["name"] and shown["xsi_type"] == "mrSessionData"
    assert [scan["id"] for scan in shown["scan_list"]] == ["1", "2"]
    assert xnatd.prearchive(project="OTHER") == []
    assert xnatd.prearchive(status="RECEIVING") == []
    missing = xnatd.cli("prearchive", "show", "DEMO/20000101_000000000/nope", check=False)
    assert missing.returncode == 1 and "no prearchive session" in missing.stderr


def test_rt_dose_and_rt_plan_make_the_same_session_type(
    xnatd: Xnatd, storescu: str, dcm_dir: Path, schemas: dict
) -> None:
    """Issue 16 item 11: RT objects alone build as XNAT builds them, every one alike."""
    studies = {
        sop.name: StudySpec(
            f"rt-{modality}",
            patient_id=f"RT_{modality}",
            study_description="DEMO",
            series=[SeriesSpec(1, modality, 1, modality, sop_class=sop)],
        )
        for sop, modality in (
            (pydicom.uid.RTDoseStorage, "RTDOSE"),
            (pydicom.uid.RTPlanStorage, "RTPLAN"),
            (pydicom.uid.RTStructureSetStorage, "RTSTRUCT"),
        )
    }
    paths = [p for name, study in studies.items() for p in write_study(study, dcm_dir / name)]
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    rows = xnatd.wait_status("READY", count=len(studies))
    for row in rows:
        document = session_dir(xnatd, row["name"]).parent / f"{row['label']}.xml"
        assert_valid(schemas["xnat"], document)
        root = etree.parse(str(document)).getroot()
        assert root.tag == f"{{{NS['xnat']}}}OtherDicomSession", row["label"]
        [scan] = root.iterfind(".//xnat:scan", NS)
        assert scan.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "xnat:rtImageScanData"
