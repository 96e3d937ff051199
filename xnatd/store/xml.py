"""Session documents (``xnat:*Session``) and scan catalogs (``cat:DCMCatalog``).

The models are plain values ``documents.py`` fills in; rendering follows the XNAT
schemas' element order (see shared/reference/schemas/README.md). DICOM values are
converted to XSD types here, and a value that does not convert is left out rather
than written invalid.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

XNAT = "http://nrg.wustl.edu/xnat"
CAT = "http://nrg.wustl.edu/catalog"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ET.register_namespace("xnat", XNAT)
ET.register_namespace("cat", CAT)
ET.register_namespace("xsi", XSI)

# Session data type -> root element name in xnat.xsd.
SESSION_ELEMENTS = {
    "mrSessionData": "MRSession",
    "petSessionData": "PETSession",
    "ctSessionData": "CTSession",
    "petmrSessionData": "PETMRSession",
    "xaSessionData": "XASession",
    "usSessionData": "USSession",
    "rtSessionData": "RTSession",
    "crSessionData": "CRSession",
    "optSessionData": "OPTSession",
    "mgSessionData": "MGSession",
    "dxSessionData": "DXSession",
    "nmSessionData": "NMSession",
    "srSessionData": "SRSession",
    "smSessionData": "SMSession",
    "gmSessionData": "GMSession",
    "rfSessionData": "RFSession",
    "esSessionData": "ESSession",
    "ecgSessionData": "ECGSession",
    "eegSessionData": "EEGSession",
    "xcSessionData": "XCSession",
    "opSessionData": "OPSession",
    "hdSessionData": "HDSession",
    "epsSessionData": "EPSSession",
    "ioSessionData": "IOSession",
    "gmvSessionData": "GMVSession",
    "esvSessionData": "ESVSession",
    "xcvSessionData": "XCVSession",
    "megSessionData": "MEGSession",
    "otherDicomSessionData": "OtherDicomSession",
}
_MR_SESSION_TYPES = ("mrSessionData", "petmrSessionData")
_MAX_URI = 255  # xnat:resourceCatalog/@URI in this schema version
# Characters XML 1.0 cannot carry; scanners do put control characters in free text.
_NOT_XML_CHAR = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: str | None) -> str | None:
    return _NOT_XML_CHAR.sub("", value).strip() or None if value else None


def xs_date(value: str | None) -> str | None:
    """DICOM DA ``YYYYMMDD`` -> ``YYYY-MM-DD``."""
    if value and re.fullmatch(r"\d{8}", value.strip()):
        value = value.strip()
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return None


def xs_time(value: str | None) -> str | None:
    """DICOM TM ``HHMMSS.ffffff`` (or ``HH:MM:SS``) -> ``HH:MM:SS[.ffffff]``."""
    if not value:
        return None
    match = re.fullmatch(r"(\d\d):?(\d\d)?:?(\d\d)?(\.\d{1,6})?", value.strip())
    if not match:
        return None
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        return None
    return f"{hours}:{minutes or '00'}:{seconds or '00'}{fraction or ''}"


def xs_float(value: str | None) -> str | None:
    """The first value of a DICOM decimal string as ``xs:double``; None when not a number."""
    try:
        number = float(str(value).split("\\")[0])
    except (TypeError, ValueError):
        return None
    return repr(number) if number == number and abs(number) != float("inf") else None


def xs_integer(value: str | None) -> str | None:
    """The first value of a DICOM number rounded to ``xs:integer``; None when not a number."""
    number = xs_float(value)
    return str(round(float(number))) if number is not None else None


@dataclass(frozen=True)
class CatalogEntry:
    """One file in a scan catalog (``cat:entry``)."""

    file_name: str
    sop_instance_uid: str
    instance_number: str | None
    md5: str
    size: int


@dataclass(frozen=True)
class Scanner:
    """The scanner (``xnat:scanner``): its name, manufacturer and model."""

    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class MrParameters:
    """MR acquisition parameters (``xnat:parameters`` of an ``xnat:mrScanData``)."""

    voxel_res: tuple[str, str, str] | None = None
    tr: str | None = None
    te: str | None = None
    ti: str | None = None
    flip: str | None = None
    sequence: str | None = None
    image_type: str | None = None
    scan_sequence: str | None = None
    seq_variant: str | None = None
    scan_options: str | None = None
    acq_type: str | None = None


@dataclass(frozen=True)
class ScanDocument:
    """One scan of a session document (``xnat:scan``), with its catalog's entries."""

    id: str
    xsi_type: str  # e.g. "mrScanData"
    uid: str
    series_description: str | None
    modality: str | None
    scanner: Scanner
    frames: int
    start_time: str | None
    entries: tuple[CatalogEntry, ...]
    field_strength: str | None = None
    mr: MrParameters | None = None

    @property
    def catalog_uri(self) -> str:
        """The scan catalog's path relative to the session folder."""
        return f"SCANS/{self.id}/DICOM/scan_{self.id}_catalog.xml"


@dataclass(frozen=True)
class SessionDocument:
    """A session document (``xnat:*Session``): its IDs, study values and scans."""

    xsi_type: str  # e.g. "mrSessionData"
    id: str
    project: str
    label: str
    subject_id: str
    uid: str
    modality: str | None = None
    session_type: str | None = None
    date: str | None = None
    time: str | None = None
    acquisition_site: str | None = None
    study_comments: str | None = None
    scanner: Scanner = Scanner()
    operator: str | None = None
    prearchive_path: str | None = None
    accession_number: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    patient_birth_date: str | None = None
    field_strength: str | None = None
    scans: tuple[ScanDocument, ...] = field(default_factory=tuple)

    @property
    def element(self) -> str:
        """The root element name for the session's data type (``OtherDicomSession`` if unknown)."""
        return SESSION_ELEMENTS.get(self.xsi_type, "OtherDicomSession")


def _child(parent: ET.Element, ns: str, tag: str, text: str | None, **attrs: str | None) -> None:
    """Append an element only when it has a value or an attribute."""
    kept = {k: v for k, v in ((k, _xml_text(v)) for k, v in attrs.items()) if v}
    text = _xml_text(text)
    if not text and not kept:
        return
    element = ET.SubElement(parent, f"{{{ns}}}{tag}", kept)
    if text:
        element.text = text


def _scanner(parent: ET.Element, scanner: Scanner) -> None:
    _child(
        parent,
        XNAT,
        "scanner",
        scanner.name,
        manufacturer=scanner.manufacturer,
        model=scanner.model,
    )


def _scan(parent: ET.Element, scan: ScanDocument) -> None:
    element = ET.SubElement(
        parent,
        f"{{{XNAT}}}scan",
        {
            "ID": scan.id,
            f"{{{XSI}}}type": f"xnat:{scan.xsi_type}",
            **({"type": t} if (t := _xml_text(scan.series_description)) else {}),
            "UID": _xml_text(scan.uid) or "",
        },
    )
    _child(element, XNAT, "series_description", scan.series_description)
    _scanner(element, scan.scanner)
    _child(element, XNAT, "modality", scan.modality)
    _child(element, XNAT, "frames", str(scan.frames))
    resource = {
        f"{{{XSI}}}type": "xnat:resourceCatalog",
        "URI": scan.catalog_uri[:_MAX_URI],
        "label": "DICOM",
        "file_count": str(len(scan.entries)),
        "file_size": str(sum(entry.size for entry in scan.entries)),
        "format": "DICOM",
        "content": "RAW",
    }
    ET.SubElement(element, f"{{{XNAT}}}file", resource)
    _child(element, XNAT, "startTime", xs_time(scan.start_time))
    if scan.xsi_type == "mrScanData":
        _child(element, XNAT, "fieldStrength", xs_float(scan.field_strength))
        if scan.mr is not None:
            _mr_parameters(element, scan.mr)


def _mr_parameters(parent: ET.Element, mr: MrParameters) -> None:
    parameters = ET.Element(f"{{{XNAT}}}parameters")
    if mr.voxel_res:
        x, y, z = mr.voxel_res
        _child(parameters, XNAT, "voxelRes", None, units="mm", x=x, y=y, z=z)
    _child(parameters, XNAT, "tr", xs_float(mr.tr))
    _child(parameters, XNAT, "te", xs_float(mr.te))
    _child(parameters, XNAT, "ti", xs_float(mr.ti))
    _child(parameters, XNAT, "flip", xs_integer(mr.flip))
    _child(parameters, XNAT, "sequence", mr.sequence)
    _child(parameters, XNAT, "imageType", mr.image_type)
    _child(parameters, XNAT, "scanSequence", mr.scan_sequence)
    _child(parameters, XNAT, "seqVariant", mr.seq_variant)
    _child(parameters, XNAT, "scanOptions", mr.scan_options)
    _child(parameters, XNAT, "acqType", mr.acq_type)
    if len(parameters):
        parent.append(parameters)


def session_xml(doc: SessionDocument) -> bytes:
    """Render the session document."""
    attributes = {
        "ID": doc.id,
        "project": doc.project,
        "label": doc.label,
        **({"session_type": t[:255]} if (t := _xml_text(doc.session_type)) else {}),
        **({"modality": doc.modality} if doc.modality else {}),
        "UID": _xml_text(doc.uid) or "",
    }
    root = ET.Element(f"{{{XNAT}}}{doc.element}", attributes)
    # experimentData
    _child(root, XNAT, "date", xs_date(doc.date))
    _child(root, XNAT, "time", xs_time(doc.time))
    if doc.study_comments:
        fields = ET.SubElement(root, f"{{{XNAT}}}fields")
        _child(fields, XNAT, "field", doc.study_comments, name="studyComments")
    _child(root, XNAT, "acquisition_site", doc.acquisition_site)
    # subjectAssessorData
    ET.SubElement(root, f"{{{XNAT}}}subject_ID").text = doc.subject_id
    # imageSessionData
    _scanner(root, doc.scanner)
    _child(root, XNAT, "operator", (doc.operator or "")[:255] or None)
    _child(root, XNAT, "prearchivePath", (doc.prearchive_path or "")[:255] or None)
    scans = ET.SubElement(root, f"{{{XNAT}}}scans")
    for scan in doc.scans:
        _scan(scans, scan)
    _child(root, XNAT, "dcmAccessionNumber", doc.accession_number)
    _child(root, XNAT, "dcmPatientId", doc.patient_id)
    _child(root, XNAT, "dcmPatientName", doc.patient_name)
    _child(root, XNAT, "dcmPatientBirthDate", xs_date(doc.patient_birth_date))
    if doc.xsi_type in _MR_SESSION_TYPES:
        _child(root, XNAT, "fieldStrength", xs_float(doc.field_strength))
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def catalog_xml(scan: ScanDocument) -> bytes:
    """Render a scan's ``cat:DCMCatalog``: one entry per instance, with its MD5 digest."""
    root = ET.Element(f"{{{CAT}}}DCMCatalog", {"ID": f"SCAN{scan.id}", "UID": scan.uid})
    entries = ET.SubElement(root, f"{{{CAT}}}entries")
    for entry in scan.entries:
        attributes = {
            f"{{{XSI}}}type": "cat:dcmEntry",
            "ID": entry.file_name.removesuffix(".dcm"),
            "URI": entry.file_name,
            "format": "DICOM",
            "digest": entry.md5,
            "UID": _xml_text(entry.sop_instance_uid) or "",
        }
        number = xs_integer(entry.instance_number)
        if number is not None:
            attributes["instanceNumber"] = number
        ET.SubElement(entries, f"{{{CAT}}}entry", attributes)
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)
