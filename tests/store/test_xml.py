"""Session documents and catalogs validate against XNAT's schemas, whatever the headers say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import assert_valid

from xnatd.store.xml import (
    CatalogEntry,
    MrParameters,
    ScanDocument,
    Scanner,
    SessionDocument,
    catalog_xml,
    session_xml,
    xs_date,
    xs_time,
)


def scan(xsi_type: str = "mrScanData", **overrides: Any) -> ScanDocument:
    values = dict(
        id="4",
        xsi_type=xsi_type,
        uid="1.2.3.4",
        series_description="T1 MPRAGE",
        modality="MR",
        scanner=Scanner("MRC1", "ACME", "3T"),
        frames=2,
        start_time="094205.5",
        entries=(
            CatalogEntry("a-4-1-x.dcm", "1.2.3.4.1", "1", "0" * 32, 10),
            CatalogEntry("a-4-2-y.dcm", "1.2.3.4.2", "not a number", "1" * 32, 20),
        ),
        field_strength="3",
        mr=MrParameters(voxel_res=("1", "1", "1.2"), tr="2300", te="2.98", ti="900", flip="9.5"),
    )
    values.update(overrides)
    return ScanDocument(**values)


@pytest.mark.parametrize(
    ("xsi_type", "scan_type"),
    [
        ("mrSessionData", "mrScanData"),
        ("petSessionData", "petScanData"),
        ("ctSessionData", "ctScanData"),
        ("petmrSessionData", "mrScanData"),
        ("otherDicomSessionData", "otherDicomScanData"),
        ("usSessionData", "usScanData"),
    ],
)
def test_session_document_validates(
    tmp_path: Path, schemas: dict, xsi_type: str, scan_type: str
) -> None:
    doc = SessionDocument(
        xsi_type=xsi_type,
        id="",
        project="DEMO",
        label="S1",
        subject_id="SUBJ",
        uid="1.2.3",
        modality="MR",
        session_type="Research^Brain",
        date="20240305",
        time="0941",
        acquisition_site="Site",
        study_comments="Project: DEMO",
        scanner=Scanner("S", "M", "X"),
        operator="Op",
        prearchive_path="DEMO/x/S1",
        accession_number="A1",
        patient_id="P1",
        patient_name="DOE^JOHN",
        patient_birth_date="19700101",
        field_strength="3",
        scans=(scan(scan_type),),
    )
    path = tmp_path / "s.xml"
    path.write_bytes(session_xml(doc))
    assert_valid(schemas["xnat"], path)


def test_bad_header_values_are_left_out_not_written_invalid(tmp_path: Path, schemas: dict) -> None:
    doc = SessionDocument(
        xsi_type="mrSessionData",
        id="",
        project="DEMO",
        label="S1",
        subject_id="",
        uid="1.2",
        date="2024-13",
        time="25:99",
        patient_birth_date="unknown",
        field_strength="strong",
        study_comments="bell\x07 character",
        session_type="\x00\x01",
        scans=(scan(start_time="noon", field_strength="x", mr=MrParameters(tr="n/a", flip="")),),
    )
    path = tmp_path / "s.xml"
    path.write_bytes(session_xml(doc))
    assert_valid(schemas["xnat"], path)
    text = path.read_text()
    assert "bell character" in text and "<xnat:date>" not in text


def test_catalog_has_one_entry_per_instance_with_digest(tmp_path: Path, schemas: dict) -> None:
    path = tmp_path / "scan_4_catalog.xml"
    path.write_bytes(catalog_xml(scan()))
    assert_valid(schemas["catalog"], path)
    text = path.read_text()
    assert text.count("cat:dcmEntry") == 2 and 'digest="' + "1" * 32 in text
    assert 'instanceNumber="1"' in text


def test_resource_carries_count_and_size(tmp_path: Path) -> None:
    doc = SessionDocument(
        xsi_type="mrSessionData",
        id="",
        project="P",
        label="L",
        subject_id="S",
        uid="1",
        scans=(scan(),),
    )
    text = session_xml(doc).decode()
    assert 'file_count="2"' in text and 'file_size="30"' in text
    assert 'URI="SCANS/4/DICOM/scan_4_catalog.xml"' in text


@pytest.mark.parametrize(
    ("dicom", "xsd"),
    [
        ("094112", "09:41:12"),
        ("0941", "09:41:00"),
        ("094112.123456", "09:41:12.123456"),
        ("09:41:12", "09:41:12"),
        ("2500", None),
    ],
)
def test_times(dicom: str, xsd: str | None) -> None:
    assert xs_time(dicom) == xsd


def test_dates() -> None:
    assert xs_date("20240305") == "2024-03-05"
    assert xs_date("2024") is None
