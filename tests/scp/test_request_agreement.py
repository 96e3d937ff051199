"""A C-STORE request and its data set agree, and every failure says why (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from rawstore import RawStore, send_raw

from xnatd.dicom import Tag, read_header


def instances(folder: Path, count: int) -> list[tuple[dict, bytes]]:
    spec = StudySpec("agree", series=[SeriesSpec(1, instances=count)])
    made = []
    for path in write_study(spec, folder):
        data = path.read_bytes()
        made.append((read_header(data), data[144 + int.from_bytes(data[140:144], "little") :]))
    return made


def test_a_request_naming_another_instance_or_class_is_refused(xnatd: Xnatd, dcm_dir: Path) -> None:
    (first, first_bytes), (second, second_bytes), (third, third_bytes) = instances(dcm_dir, 3)
    syntax = ExplicitVRLittleEndian
    answers = send_raw(
        xnatd.port,
        [
            # The request says instance 2, the data set is instance 1.
            RawStore(first[Tag.SOPClassUID], second[Tag.SOPInstanceUID], syntax, first_bytes),
            # The request says CT Image Storage, the data set is an MR image.
            RawStore(CTImageStorage, second[Tag.SOPInstanceUID], syntax, second_bytes),
            RawStore(third[Tag.SOPClassUID], third[Tag.SOPInstanceUID], syntax, third_bytes),
        ],
    )
    assert [a.status for a in answers] == [0xC000, 0xA900, 0x0000]
    assert answers[0].error_comment == "Affected SOP Instance UID differs from the data set's"
    assert answers[1].error_comment == "Affected SOP Class UID differs from the data set's"
    [row] = xnatd.wait_status("READY")
    assert row["files"] == 1  # neither instance 1 nor 2 was filed under another's name


def test_every_failure_answer_carries_the_logged_and_audited_reason(
    xnatd: Xnatd, dcm_dir: Path
) -> None:
    [(header, data)] = instances(dcm_dir, 1)
    syntax = ExplicitVRLittleEndian
    answers = send_raw(
        xnatd.port,
        [
            RawStore(header[Tag.SOPClassUID], header[Tag.SOPInstanceUID], syntax, data[:-10]),
            RawStore(header[Tag.SOPClassUID], "1.2.3.not-a-uid", syntax, data),
        ],
    )
    assert [a.status for a in answers] == [0xC000, 0xC000]
    logged = [e["reason"] for e in xnatd.events("store_failed")]
    audited = [
        e["details"]["reason"]
        for e in json.loads(xnatd.cli("audit", "--json").stdout)
        if e["event"] == "reject"
    ]
    assert len(logged) == len(audited) == len(answers)
    for answer, log_reason, audit_reason in zip(answers, logged, audited, strict=True):
        comment = answer.error_comment
        assert comment and len(comment) <= 64
        assert comment == log_reason[:64].rstrip() == audit_reason[:64].rstrip()
    assert answers[1].error_comment == "Affected SOP Instance UID '1.2.3.not-a-uid' is not a UID"
