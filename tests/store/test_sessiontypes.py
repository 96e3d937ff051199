"""Session and scan types from SOP classes (reference 5.3)."""

from __future__ import annotations

import pytest
from pydicom.uid import (
    CTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RTBeamsTreatmentRecordStorage,
    RTDoseStorage,
    RTImageStorage,
    RTIonPlanStorage,
    RTPlanStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
)

from xnatd.store.sessiontypes import lead_modality, scan_type, session_type

PET = PositronEmissionTomographyImageStorage


@pytest.mark.parametrize(
    ("sops", "modalities", "expected"),
    [
        ({MRImageStorage}, {"MR"}, "mrSessionData"),
        ({PET, MRImageStorage}, {"PT", "MR"}, "petmrSessionData"),
        ({PET, EnhancedMRImageStorage}, {"PT", "MR"}, "petmrSessionData"),
        ({PET, CTImageStorage}, {"PT", "CT"}, "petSessionData"),
        ({MRImageStorage, SecondaryCaptureImageStorage}, {"MR", "OT"}, "mrSessionData"),
        ({CTImageStorage}, {"CT"}, "ctSessionData"),
        ({UltrasoundImageStorage}, {"US"}, "usSessionData"),
        ({SecondaryCaptureImageStorage}, {"MR"}, "mrSessionData"),  # by modality
        ({"1.3.46.670589.11.0.0.12.1"}, {"OT"}, "otherDicomSessionData"),  # Philips private
    ],
)
def test_session_type(sops: set[str], modalities: set[str], expected: str) -> None:
    assert session_type(sops, modalities) == expected


@pytest.mark.parametrize(
    ("sop", "modality", "expected"),
    [
        (MRImageStorage, "MR", "mrScanData"),
        (PET, "PT", "petScanData"),
        (CTImageStorage, "CT", "ctScanData"),
        (SecondaryCaptureImageStorage, "OT", "scScanData"),
        ("1.2.3.4", "ZZ", "otherDicomScanData"),
    ],
)
def test_scan_type(sop: str, modality: str, expected: str) -> None:
    assert scan_type(sop, modality) == expected


def test_lead_modality_for_duplicate_scan_ids() -> None:
    assert lead_modality("mr") == "MR"
    assert lead_modality("WEIRD") == "OT"


@pytest.mark.parametrize(
    ("sop", "modality"),
    [
        (RTImageStorage, "RTIMAGE"),
        (RTDoseStorage, "RTDOSE"),
        (RTStructureSetStorage, "RTSTRUCT"),
        (RTPlanStorage, "RTPLAN"),
        (RTIonPlanStorage, "RTPLAN"),
        (RTBeamsTreatmentRecordStorage, "RTRECORD"),
    ],
)
def test_every_rt_object_alone_makes_the_same_session_type_as_xnat(sop: str, modality: str) -> None:
    """XNAT's lead list has no rtSessionData and no RT object has modality RT: an RT-only
    study falls to the default factory, otherDicomSessionData, RT Dose as RT Plan."""
    assert session_type({sop}, {modality}) == "otherDicomSessionData"
    assert scan_type(sop, modality) == "rtImageScanData"
    assert session_type({sop, CTImageStorage}, {modality, "CT"}) == "ctSessionData"
