"""Which XNAT session and scan types a set of SOP classes makes (reference 5.3).

SOP class -> type follows XNAT's ``study-sessions.properties`` and
``series-scans.properties``, limited to the types the shipped schema defines; the
lead order picks one session type when a study mixes several.

RT objects: XNAT maps RT Image and RT Dose to ``rtSessionData`` in
``study-sessions.properties``, but its lead list (``lead-session-types.txt``) names
``rtImageSessionData`` instead, so the SOP step never picks an RT session; the
modality step (``modality-sessions.properties``) knows only ``RT``, which no RT object
carries (RTIMAGE, RTDOSE, RTSTRUCT, RTPLAN, RTRECORD), so an RT-only study falls to
the default factory and becomes ``otherDicomSessionData`` (every RT class has a scan
type), with ``rtImageScanData`` scans. xnatd does the same for every RT object, so RT
Dose and RT Plan no longer differ; with images beside them the images lead.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import UID

# SOP class keyword -> session data type.
_SESSION_BY_SOP = {
    "MRImageStorage": "mr",
    "EnhancedMRImageStorage": "mr",
    "EnhancedMRColorImageStorage": "mr",
    "MRSpectroscopyStorage": "mr",
    "PositronEmissionTomographyImageStorage": "pet",
    "EnhancedPETImageStorage": "pet",
    "LegacyConvertedEnhancedPETImageStorage": "pet",
    "CTImageStorage": "ct",
    "EnhancedCTImageStorage": "ct",
    "LegacyConvertedEnhancedCTImageStorage": "ct",
    "XRayAngiographicImageStorage": "xa",
    "XRay3DAngiographicImageStorage": "xa",
    "UltrasoundImageStorage": "us",
    "UltrasoundMultiFrameImageStorage": "us",
    "ComputedRadiographyImageStorage": "cr",
    "OphthalmicTomographyImageStorage": "opt",
    "DigitalMammographyXRayImageStorageForPresentation": "mg",
    "DigitalMammographyXRayImageStorageForProcessing": "mg",
    "DigitalXRayImageStorageForPresentation": "dx",
    "DigitalXRayImageStorageForProcessing": "dx",
    "NuclearMedicineImageStorage": "nm",
    "BasicTextSRStorage": "sr",
    "EnhancedSRStorage": "sr",
    "VLWholeSlideMicroscopyImageStorage": "sm",
    "VLMicroscopicImageStorage": "gm",
    "TwelveLeadECGWaveformStorage": "ecg",
    "AmbulatoryECGWaveformStorage": "ecg",
    "ElectroencephalogramWaveformStorage": "eeg",
}

# SOP class keyword -> scan data type.
_SCAN_BY_SOP = {
    **{k: v for k, v in _SESSION_BY_SOP.items() if v not in ("sr", "sm", "gm")},
    "RTImageStorage": "rtImage",
    "RTDoseStorage": "rtImage",
    "RTStructureSetStorage": "rtImage",
    "RTPlanStorage": "rtImage",
    "RTIonPlanStorage": "rtImage",
    "RTBeamsTreatmentRecordStorage": "rtImage",
    "RTBrachyTreatmentRecordStorage": "rtImage",
    "RTTreatmentSummaryRecordStorage": "rtImage",
    "RTIonBeamsTreatmentRecordStorage": "rtImage",
    "CardiacElectrophysiologyWaveformStorage": "eps",
    "VideoEndoscopicImageStorage": "esv",
    "VideoMicroscopicImageStorage": "gmv",
    "HemodynamicWaveformStorage": "hd",
    "DigitalIntraOralXRayImageStorageForPresentation": "io",
    "DigitalIntraOralXRayImageStorageForProcessing": "io",
    "OphthalmicPhotography8BitImageStorage": "op",
    "OphthalmicPhotography16BitImageStorage": "op",
    "XRayRadiofluoroscopicImageStorage": "rf",
    "VideoPhotographicImageStorage": "xcv",
    "SecondaryCaptureImageStorage": "sc",
    "MultiFrameSingleBitSecondaryCaptureImageStorage": "sc",
    "MultiFrameGrayscaleByteSecondaryCaptureImageStorage": "sc",
    "MultiFrameGrayscaleWordSecondaryCaptureImageStorage": "sc",
    "MultiFrameTrueColorSecondaryCaptureImageStorage": "sc",
    "SegmentationStorage": "seg",
    "BasicTextSRStorage": "sr",
    "EnhancedSRStorage": "sr",
    "ComprehensiveSRStorage": "sr",
    "MammographyCADSRStorage": "sr",
    "ChestCADSRStorage": "sr",
    "XRayRadiationDoseSRStorage": "sr",
    "ColonCADSRStorage": "sr",
    "ImplantationPlanSRStorage": "sr",
    "VLWholeSlideMicroscopyImageStorage": "sm",
    "VLMicroscopicImageStorage": "gm",
}

# Modality -> session type, for SOP classes the tables do not know.
_SESSION_BY_MODALITY = {
    "PT": "pet",
    "MR": "mr",
    "CT": "ct",
    "XA": "xa",
    "US": "us",
    "RT": "rt",  # XNAT's key; no RT object has this modality (module docstring)
    "CR": "cr",
    "OPT": "opt",
    "MG": "mg",
    "DX": "dx",
    "NM": "nm",
    "EEG": "eeg",
    "ECG": "ecg",
    "SM": "sm",
    "GM": "gm",
    "RF": "rf",
    "ES": "es",
    "XC": "xc",
    "SR": "sr",
}
_SCAN_BY_MODALITY = {
    "PT": "pet",
    "MR": "mr",
    "CT": "ct",
    "XA": "xa",
    "US": "us",
    "CR": "cr",
    "OPT": "opt",
    "MG": "mg",
    "DX": "dx",
    "NM": "nm",
    "EEG": "eeg",
    "ECG": "ecg",
    "SM": "sm",
    "GM": "gm",
    "RF": "rf",
    "ES": "es",
    "XC": "xc",
    "SR": "sr",
    "SEG": "seg",
    "IO": "io",
    "OP": "op",
}

# XNAT's lead order when a study has several session types.
_SESSION_PRECEDENCE = (
    "pet",
    "mr",
    "ct",
    "xa",
    "us",
    "rt",
    "cr",
    "opt",
    "mg",
    "dx",
    "nm",
    "sr",
    "sm",
    "gm",
    "rf",
    "es",
    "ecg",
    "eeg",
    "xc",
    "otherDicom",
)
_LEAD_MODALITIES = (
    "PT",
    "MR",
    "CT",
    "XA",
    "US",
    "RT",
    "CR",
    "OPT",
    "MG",
    "DX",
    "NM",
    "EEG",
    "ECG",
    "EMG",
    "EOG",
    "IVUS",
    "SM",
    "GM",
    "RF",
    "ES",
    "XC",
    "RG",
    "DMS",
    "CFM",
    "PA",
    "RESP",
    "POS",
    "OBJ",
    "OT",
    "SR",
    "SC",
    "ANN",
)


def _keyword(sop_class_uid: str) -> str:
    return UID(sop_class_uid).keyword if sop_class_uid else ""


def session_type(sop_classes: Iterable[str], modalities: Iterable[str]) -> str:
    """The session data type, e.g. ``mrSessionData``; PET with MR gives ``petmrSessionData``."""
    kinds = {_SESSION_BY_SOP.get(_keyword(uid)) for uid in sop_classes} - {None}
    if {"pet", "mr"} <= kinds:
        return "petmrSessionData"
    for kind in _SESSION_PRECEDENCE:
        if kind in kinds:
            return f"{kind}SessionData"
    present = {modality.upper() for modality in modalities}
    if {"PT", "MR"} <= present:
        return "petmrSessionData"
    for modality in _LEAD_MODALITIES:
        if modality in present and modality in _SESSION_BY_MODALITY:
            return f"{_SESSION_BY_MODALITY[modality]}SessionData"
    return "otherDicomSessionData"


def scan_type(sop_class_uid: str, modality: str) -> str:
    """The scan data type, e.g. ``mrScanData``; unknown kinds are ``otherDicomScanData``."""
    kind = _SCAN_BY_SOP.get(_keyword(sop_class_uid)) or _SCAN_BY_MODALITY.get(modality.upper())
    return f"{kind}ScanData" if kind else "otherDicomScanData"


def lead_modality(modality: str) -> str:
    """The modality used in ``N-MR1`` style scan IDs; unknown is ``OT``."""
    value = modality.upper().strip()
    return value if value in _LEAD_MODALITIES else "OT"


def session_modality(session_xsi_type: str, modalities: Iterable[str]) -> str | None:
    """The session's modality attribute: the lead modality among its scans."""
    present = {modality.upper() for modality in modalities if modality}
    if session_xsi_type == "petmrSessionData":
        return "PT"
    for modality in _LEAD_MODALITIES:
        if modality in present:
            return modality
    return sorted(present)[0] if present else None
