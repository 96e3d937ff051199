"""The site script at receive (over C-STORE) and the project script at archive, file by file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from xml.etree import ElementTree

import pydicom
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, dicom_files, storescu_send, wait_for

from xnatd.anon.functions import hash_uid

SITE_SCRIPT = """version "6.3"
// site-wide: names out, dates shifted, UIDs hashed, private tags out, one series rejected
(0010,0010) := "ANONYMIZED"
(0010,1000) := concatenate[project, "/", subject, "/", session]
-(0010,0030)
(0008,0020) := shiftDateByIncrement[(0008,0020), "-7"]
(0020,000D) := hashUID[(0020,000D)]
(0008,0018) := hashUID[(0008,0018)]
removeAllPrivateTags
(0020,0011) = "99" ? reject[]
(0010,4000) := lookup["id", (0010,0020)]
(0020,000E) := mapUID[(0020,000E), "1.2.826.0.1.3680043.10"]
"""
LOOKUP_TABLE = "# the site's identities, kept out of the script\nid/SUBJ9 = STUDY-SUBJECT-0042\n"


def with_site_script(settings: dict, workdir: Path) -> None:
    (workdir / "site.das").write_text(SITE_SCRIPT)
    (workdir / "site.lookup").write_text(LOOKUP_TABLE)
    settings["site"]["anonymization"] = "site.das"
    settings["site"]["anonymization_lookup"] = "site.lookup"
    # The script keeps the Patient ID on purpose; the PHI check lists it, without holding.
    settings["site"]["phi_check"] = {"headers": "flag"}


def make(make_xnatd, tmp_path: Path, hook) -> Xnatd:
    daemon = make_xnatd(start=False, hook=hook)
    with_site_script(daemon.settings, daemon.workdir)
    daemon.write_config()
    return daemon.start()


def test_site_script_applied_to_every_received_file(
    make_xnatd, tmp_path: Path, storescu: str, dcm_dir: Path
) -> None:
    xnatd = make(make_xnatd, tmp_path, None)
    spec = StudySpec(
        "anon",
        patient_id="SUBJ9",
        study_description="DEMO",
        series=[SeriesSpec(1, instances=3), SeriesSpec(99, instances=2)],
        extra={"PatientBirthDate": "19700101"},
    )
    sent = write_study(spec, dcm_dir)
    for path in sent:  # a private element the script must remove
        ds = pydicom.dcmread(path)
        ds.add_new(0x00091001, "LO", "secret")
        ds.save_as(path)
    result = storescu_send(storescu, xnatd.port, sent)
    assert result.returncode == 0, result.stderr  # rejected files still get success
    [row] = xnatd.wait_status("READY")
    assert row["files"] == 3 and row["study_uid"] == hash_uid(str(spec.study_uid))
    stored = [pydicom.dcmread(p) for p in dicom_files(xnatd.data_dir / "prearchive")]
    originals = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in sent}
    assert len(stored) == 3
    for ds in stored:
        assert str(ds.PatientName) == "ANONYMIZED"
        assert ds[0x00101000].value == "DEMO/DOE_JOHN/SUBJ9"
        assert "PatientBirthDate" not in ds and 0x00091001 not in ds
        assert ds.StudyDate == "20240227"
        assert ds.SeriesNumber == 1
        original = next(o for uid, o in originals.items() if hash_uid(uid) == ds.SOPInstanceUID)
        assert ds.PixelData == original.PixelData
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.PatientComments == "STUDY-SUBJECT-0042"
        assert ds.SeriesInstanceUID == (
            "1.2.826.0.1.3680043.10" + hash_uid(original.SeriesInstanceUID)[4:]
        )
    metrics = xnatd.metrics()
    assert 'xnatd_anonymization_rejects_total{script="site"} 2.0' in metrics
    assert (
        'xnatd_instances_received_total{ae="XNAT",calling_ae="SCANNER",status="dropped"} 2.0'
        in metrics
    )
    rejects = [e for e in json.loads(xnatd.cli("audit", "--json").stdout) if e["event"] == "reject"]
    assert len(rejects) == 2 and "site script" in rejects[0]["details"]["reason"]


def large_object(name: str, folder: Path) -> Path:
    """One instance with 18 MB of pixels: past the 16 MiB that is held in memory."""
    spec = StudySpec(
        name,
        patient_id="SUBJ9",
        study_description="DEMO",
        series=[SeriesSpec(1, instances=1, rows=3000, columns=3000)],
    )
    [path] = write_study(spec, folder)
    return path


def test_site_script_on_a_large_object_leaves_its_pixels_as_sent(
    make_xnatd, tmp_path: Path, storescu: str, dcm_dir: Path
) -> None:
    """Past 16 MiB the script runs on the header alone; the pixel data goes from the
    receiver's spool file to the prearchive untouched, and the spool is emptied."""
    xnatd = make(make_xnatd, tmp_path, None)
    sent = large_object("large-anon", dcm_dir)
    result = storescu_send(storescu, xnatd.port, [sent])
    assert result.returncode == 0, result.stderr
    xnatd.wait_status("READY")
    [stored] = dicom_files(xnatd.data_dir / "prearchive")
    ds, original = pydicom.dcmread(stored), pydicom.dcmread(sent)
    assert str(ds.PatientName) == "ANONYMIZED" and "PatientBirthDate" not in ds
    assert ds.SOPInstanceUID == hash_uid(original.SOPInstanceUID)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PixelData == original.PixelData
    assert not [p for p in (xnatd.data_dir / ".spool").rglob("*") if p.is_file()]


def test_receiver_with_anonymize_false_keeps_files_as_sent(
    make_xnatd, tmp_path: Path, storescu: str, dcm_dir: Path
) -> None:
    def raw_receiver(settings: dict) -> None:
        settings["receivers"][0]["anonymize"] = False

    xnatd = make(make_xnatd, tmp_path, raw_receiver)
    sent = write_study(StudySpec("raw", study_description="DEMO"), dcm_dir)
    assert storescu_send(storescu, xnatd.port, sent).returncode == 0
    xnatd.wait_status("READY")
    for path in dicom_files(xnatd.data_dir / "prearchive"):
        assert str(pydicom.dcmread(path).PatientName) == "DOE^JOHN"


def with_project_script(make_xnatd, script: str) -> Xnatd:
    """A daemon whose DEMO project archives at once through the given script."""

    def project_script(settings: dict) -> None:
        settings["projects"]["DEMO"] = {"prearchive": "auto-archive", "anonymization": "demo.das"}
        settings["site"]["phi_check"] = {"headers": "flag"}  # these scripts keep the name

    daemon = make_xnatd(start=False, hook=project_script)
    (daemon.workdir / "demo.das").write_text(script)
    return daemon.start()


def test_project_script_applied_at_archive(
    make_xnatd, tmp_path: Path, storescu: str, dcm_dir: Path
) -> None:
    xnatd = with_project_script(
        make_xnatd,
        'version "6.3"\n(0010,0020) := concatenate[project, "_", subject]\n'
        '(0008,103E) = "DROP ME" ? reject[]\n(0020,000E) := hashUID[(0020,000E)]\n',
    )
    spec = StudySpec(
        "project",
        patient_id="P7",
        patient_name="SMITH^A",
        study_description="DEMO",
        series=[SeriesSpec(1, instances=3), SeriesSpec(2, instances=2, description="DROP ME")],
    )
    assert storescu_send(storescu, xnatd.port, write_study(spec, dcm_dir)).returncode == 0
    rows = wait_for(lambda: json.loads(xnatd.cli("sessions", "list", "--json").stdout), timeout=30)
    [row] = rows
    assert row["files"] == 3 and row["scans"] == 1
    for path in dicom_files(Path(row["path"])):
        ds = pydicom.dcmread(path)
        assert ds.PatientID == "DEMO_SMITH_A"
        assert ds.SeriesInstanceUID == hash_uid(str(spec.series_uid(spec.series[0])))
    # The prearchive kept the received files as they were until archive.
    assert not list((xnatd.data_dir / "prearchive").rglob("*.dcm"))


def test_project_script_on_a_large_file_keeps_pixels_and_catalog_digest(
    make_xnatd, tmp_path: Path, storescu: str, dcm_dir: Path
) -> None:
    """At archive a large file (past 16 MiB) is rewritten without reading its pixel data
    into memory; the catalog's digest is the MD5 of the file as archived."""

    xnatd = with_project_script(
        make_xnatd,
        'version "6.3"\n(0010,0020) := concatenate[project, "_", subject]\n'
        "(0008,0018) := hashUID[(0008,0018)]\n",
    )
    sent = large_object("project-large", dcm_dir)
    assert storescu_send(storescu, xnatd.port, [sent]).returncode == 0
    [row] = wait_for(lambda: json.loads(xnatd.cli("sessions", "list", "--json").stdout), 30)
    [archived] = dicom_files(Path(row["path"]))
    ds, original = pydicom.dcmread(archived), pydicom.dcmread(sent)
    assert ds.PatientID == "DEMO_DOE_JOHN"
    assert ds.SOPInstanceUID == hash_uid(original.SOPInstanceUID)
    assert ds.PixelData == original.PixelData
    digests = [
        entry.get("digest")
        for catalog in Path(row["path"]).rglob("*catalog*.xml")
        for entry in ElementTree.parse(catalog).getroot().iter()
        if entry.get("digest")
    ]
    assert digests == [hashlib.md5(archived.read_bytes()).hexdigest()]


def test_script_that_does_not_parse_is_a_config_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "site.das").write_text('version "6.3"\n(0010,0010) := concatenate["a",\n')
    config = tmp_path / "x.yaml"
    config.write_text("site: {anonymization: site.das}\n")
    done = subprocess.run(
        [sys.executable, "-m", "xnatd", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "site.anonymization:" in done.stderr and "site.das: line 2" in done.stderr
