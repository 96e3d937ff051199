"""A script applied to one Part 10 file: bytes in, bytes out (or rejected).

The transfer syntax is kept and pixel data is written back byte for byte (pydicom
never decodes it here); the meta header's SOP UIDs follow the data set's.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from xnatd.anon.engine import ScriptFailed, run
from xnatd.anon.script import Script
from xnatd.dicom import part10_prefix


def parse_file(data: bytes) -> Dataset:
    """The whole data set of a Part 10 file (pixel data kept as raw bytes).

    Raises:
        ScriptFailed: the bytes are not a readable DICOM file.
    """
    try:
        return pydicom.dcmread(io.BytesIO(data), force=False)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ScriptFailed(f"not a readable DICOM file: {exc}") from exc


def anonymize(script: Script, dataset: Dataset, variables: Mapping[str, Any]) -> bytes | None:
    """Run the script on a parsed data set; the new file's bytes, or None when rejected.

    Raises:
        ScriptFailed: the script fails on this data set.
    """
    if run(script, dataset, variables).rejected:
        return None
    meta = dataset.file_meta
    if "SOPInstanceUID" in dataset:
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    if "SOPClassUID" in dataset:
        meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    try:
        return _encode(dataset)
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise ScriptFailed(f"the changed data set cannot be written: {exc}") from exc


def _encode(dataset: Dataset) -> bytes:
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    if syntax.is_deflated:
        out = io.BytesIO()  # pydicom compresses the whole data set
        dataset.save_as(out, enforce_file_format=True)
        return out.getvalue()
    # Our own meta prefix, then the data set in its own syntax: save_as would copy and
    # re-validate the meta group on every file.
    body = DicomBytesIO()
    body.is_little_endian = syntax.is_little_endian
    body.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(body, dataset)
    return part10_prefix(dataset.file_meta) + body.getvalue()


def apply_to_bytes(script: Script, data: bytes, variables: Mapping[str, Any]) -> bytes | None:
    """The anonymized file's bytes, or None when the script rejects it."""
    return anonymize(script, parse_file(data), variables)
