"""One bad C-STORE request gets an error status; the association carries on (issue 5)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import tolerate_bad_uids
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import MRImageStorage
from rawstore import exchange


def _raw_store(assoc, context_id: int, dataset: pydicom.Dataset, sop_class: str) -> int:
    """A C-STORE with the command's SOP Class UID as given, valid or not."""
    request = C_STORE()
    request.MessageID = 7
    request._affected_sop_class_uid = UID(sop_class)  # past pynetdicom's own checks
    request.AffectedSOPInstanceUID = dataset.SOPInstanceUID
    request.Priority = 2
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False  # as the context
    write_dataset(body, dataset)
    request.DataSet = BytesIO(body.getvalue())
    return int(exchange(assoc, request, context_id).Status)


@pytest.mark.filterwarnings("ignore::UserWarning")  # our client sends bad UIDs on purpose
def test_garbage_sop_class_fails_alone(xnatd, dcm_dir: Path) -> None:
    tolerate_bad_uids()  # our pynetdicom client must read its own bad UID echoed back
    paths = write_study(StudySpec("garbage", series=[SeriesSpec(1, instances=2)]), dcm_dir)
    first, second = (pydicom.dcmread(p) for p in paths)
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", xnatd.port, ae_title="XNAT")
    assert assoc.is_established
    try:
        context_id = assoc.accepted_contexts[0].context_id
        assert _raw_store(assoc, context_id, first, "1." + "2" * 70) == 0xC000  # too long
        assert _raw_store(assoc, context_id, first, "1.2.GARBAGE") == 0xC000
        bad_instance = pydicom.dcmread(paths[1])
        bad_instance.SOPInstanceUID = "1.2.3.not-a-uid"
        assert assoc.send_c_store(bad_instance).Status == 0xC000
        assert assoc.is_established
        assert assoc.send_c_store(second).Status == 0x0000
    finally:
        assoc.release()
    [row] = xnatd.wait_status("READY")
    assert row["files"] == 1
    assert len(xnatd.events("store_failed")) == 3
