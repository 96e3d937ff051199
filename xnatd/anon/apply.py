"""A script applied to one Part 10 file: bytes in, bytes out (or rejected).

The transfer syntax is kept and pixel data is written back byte for byte (pydicom
never decodes it here); the meta header's SOP UIDs follow the data set's.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from xnatd.anon.engine import ScriptFailed, run
from xnatd.anon.script import Script


def apply_to_bytes(script: Script, data: bytes, variables: Mapping[str, Any]) -> bytes | None:
    """The anonymized file, or None when the script rejects it.

    Raises:
        ScriptFailed: the file does not parse, or the script fails on it.
    """
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=False)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ScriptFailed(f"not a readable DICOM file: {exc}") from exc
    result = run(script, dataset, variables)
    if result.rejected:
        return None
    meta = dataset.file_meta
    if "SOPInstanceUID" in dataset:
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    if "SOPClassUID" in dataset:
        meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    out = io.BytesIO()
    try:
        dataset.save_as(out, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ScriptFailed(f"the changed data set cannot be written: {exc}") from exc
    return out.getvalue()
