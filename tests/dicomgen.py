"""Deterministic synthetic DICOM sessions, written as real Part 10 files with pydicom.

Compressed transfer syntaxes carry encapsulated fragments that are never decoded
(xnatd must store them bit for bit), so no codec is needed to make them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
)

ENCAPSULATED = {JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless}
UNCOMPRESSED = {
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
}
SOP_BY_MODALITY = {
    "MR": MRImageStorage,
    "CT": CTImageStorage,
    "PT": PositronEmissionTomographyImageStorage,
    "OT": SecondaryCaptureImageStorage,
}


def uid(*parts: object) -> UID:
    """A stable UID under 2.25 from any seed values."""
    digest = hashlib.sha1("/".join(map(str, parts)).encode()).digest()
    return UID("2.25." + str(int.from_bytes(digest[:16], "big")))


@dataclass
class SeriesSpec:
    number: int | str
    modality: str = "MR"
    instances: int = 3
    description: str = "T1 MPRAGE"
    uid_seed: str | None = None
    sop_class: str | None = None
    transfer_syntax: str = ExplicitVRLittleEndian
    rows: int = 8
    columns: int = 8


@dataclass
class StudySpec:
    """A study: patient, comment fields for routing, and its series."""

    seed: str
    patient_id: str = "SUBJ01"
    patient_name: str = "DOE^JOHN"
    patient_comments: str | None = None
    study_comments: str | None = None
    study_description: str | None = "Research^Brain"
    accession_number: str | None = None
    series: list[SeriesSpec] = field(default_factory=lambda: [SeriesSpec(1)])
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def study_uid(self) -> UID:
        return uid(self.seed, "study")

    def series_uid(self, series: SeriesSpec) -> UID:
        return uid(self.seed, "series", series.uid_seed or series.number)


def _pixels(spec: SeriesSpec, index: int) -> bytes:
    size = spec.rows * spec.columns * 2
    block = hashlib.sha256(f"{spec.number}/{index}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def instance(study: StudySpec, series: SeriesSpec, index: int) -> Dataset:
    """One instance (index from 1) of a series, with file meta for its transfer syntax."""
    sop_class = UID(
        series.sop_class or SOP_BY_MODALITY.get(series.modality, SecondaryCaptureImageStorage)
    )
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(study.seed, "instance", series.uid_seed or series.number, index)
    ds.StudyDate = "20240305"
    ds.SeriesDate = "20240305"
    ds.StudyTime = "094112"
    ds.SeriesTime = f"09{42 + int(index > 0):02d}05"
    ds.AccessionNumber = study.accession_number or ""
    ds.Modality = series.modality
    ds.Manufacturer = "ACME Medical"
    ds.InstitutionName = "Example Imaging Centre"
    ds.StationName = "MRC00001"
    ds.StudyDescription = study.study_description or ""
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = "Example 3T"
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = "19700101"
    if study.patient_comments is not None:
        ds.PatientComments = study.patient_comments
    if study.study_comments is not None:
        ds.StudyComments = study.study_comments
    if series.modality == "MR":
        ds.RepetitionTime = "2300"
        ds.EchoTime = "2.98"
        ds.InversionTime = "900"
        ds.FlipAngle = "9"
        ds.MagneticFieldStrength = "3"
        ds.SliceThickness = "1"
        ds.PixelSpacing = ["1", "1"]
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = study.series_uid(series)
    ds.StudyID = "1"
    ds.SeriesNumber = series.number
    ds.InstanceNumber = index
    for keyword, value in study.extra.items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = series.rows
    ds.Columns = series.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    syntax = UID(series.transfer_syntax)
    if syntax in ENCAPSULATED:
        # Opaque fragments: a JPEG-like marker frame that nobody decodes.
        frame = b"\xff\xd8" + _pixels(series, index) + b"\xff\xd9"
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = _pixels(series, index)
        ds["PixelData"].VR = "OW"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    return ds


def instances(study: StudySpec) -> Iterator[Dataset]:
    for series in study.series:
        for index in range(1, series.instances + 1):
            yield instance(study, series, index)


def write(datasets: Iterable[Dataset], folder: Path) -> list[Path]:
    """Write datasets as Part 10 files named by SOP Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.get('SOPInstanceUID') or ds.file_meta.MediaStorageSOPInstanceUID}.dcm"
        syntax = UID(ds.file_meta.TransferSyntaxUID)
        ds.save_as(
            path,
            enforce_file_format=True,
            implicit_vr=syntax == ImplicitVRLittleEndian,
            little_endian=syntax != ExplicitVRBigEndian,
        )
        paths.append(path)
    return paths


def write_study(study: StudySpec, folder: Path) -> list[Path]:
    return write(instances(study), folder)


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the file meta group: what was sent on the wire."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", path
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]
