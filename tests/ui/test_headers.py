"""A file's header as table rows, nested items named as the PHI check names them."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from xnatd.api.ui.header_table import header_rows

FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def test_nested_elements_are_marked_by_their_tag_path(tmp_path: Path) -> None:
    ds = pydicom.dcmread(FILES / "CT_small.dcm")
    other = Dataset()
    other.PatientID = "HN-1"
    ds.OtherPatientIDsSequence = [Dataset(), other]
    ds.PatientName = "<script>alert(1)</script>"
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    rows = header_rows(path, {"(0010,1002)[1]/(0010,0020)", "(0010,0010)"})
    flagged = {row.path: row for row in rows if row.flagged}
    assert set(flagged) == {"(0010,1002)[1]/(0010,0020)", "(0010,0010)"}
    assert flagged["(0010,1002)[1]/(0010,0020)"].depth == 1
    assert flagged["(0010,0010)"].value == "<script>alert(1)</script>"  # escaped by the page
    assert not any(row.tag == "(7FE0,0010)" for row in rows)  # no pixel data
