"""The Part 10 prefix written in front of every received data set."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, JPEG2000Lossless

from xnatd.dicom import IMPLEMENTATION_VERSION, received_prefix

MR = "1.2.840.10008.5.1.4.1.1.4"


def pydicom_prefix(sop_class: str, sop_instance: str, syntax: str, ae: str | None) -> bytes:
    """What pydicom itself writes for the same file meta group."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if ae:
        meta.SourceApplicationEntityTitle = ae
    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("instance", "syntax", "ae"),
    [
        ("1.2.3.4", ExplicitVRLittleEndian, "SCANNER"),  # even UID, odd AE
        ("1.2.3.45", JPEG2000Lossless, "MR7"),  # odd UID
        ("2.25." + "9" * 59, ExplicitVRLittleEndian, "SIXTEEN_CHARS_AE"),  # 64 characters
        ("1.2.3", ExplicitVRLittleEndian, None),  # no calling AE: no (0002,0016)
    ],
)
def test_the_prefix_is_the_one_pydicom_writes(instance: str, syntax: str, ae: str | None) -> None:
    assert received_prefix(MR, instance, syntax, ae) == pydicom_prefix(MR, instance, syntax, ae)


def test_the_prefix_reads_back_and_keeps_a_long_calling_ae_to_16_characters() -> None:
    prefix = received_prefix(MR, "1.2.3.4", ExplicitVRLittleEndian, "  A_VERY_LONG_CALLING_AE ")
    read = pydicom.dcmread(io.BytesIO(prefix)).file_meta  # a file with an empty data set
    assert read.MediaStorageSOPInstanceUID == "1.2.3.4"
    assert read.TransferSyntaxUID == ExplicitVRLittleEndian
    assert read.SourceApplicationEntityTitle == "A_VERY_LONG_CALL"
