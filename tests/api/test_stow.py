"""DICOMweb STOW-RS with dicomweb-client as the real client (issue 8)."""

from __future__ import annotations

import pydicom
import pytest
import requests
from apiclient import TOKENS, Api
from dicomgen import SeriesSpec, StudySpec, instances
from dicomweb_client.api import DICOMwebClient
from helpers import wait_for

REFERENCED, FAILED, REASON = "ReferencedSOPSequence", "FailedSOPSequence", 0x00081197


def client(api: Api, user: str, prefix: str = "/dicomweb") -> DICOMwebClient:
    session = requests.Session()
    session.auth = (user, TOKENS[user])
    return DICOMwebClient(url=api.base + prefix, session=session)


def study(seed: str, project: str, count: int = 3) -> list[pydicom.Dataset]:
    spec = StudySpec(seed, patient_id=seed, study_description=project)
    spec.series = [SeriesSpec(1, instances=count)]
    return list(instances(spec))


def prearchive_files(api: Api, label: str) -> int:
    rows = api.call("GET", "/data/prearchive/projects").json()["ResultSet"]["Result"]
    return sum(r["files"] for r in rows if r["name"] == label)


def test_stow_stores_every_instance_routed_by_its_headers(api: Api) -> None:
    datasets = study("STOW01", "DEMO")
    response = client(api, "bob").store_instances(datasets)
    referenced = response[REFERENCED].value
    assert [r.ReferencedSOPInstanceUID for r in referenced] == [d.SOPInstanceUID for d in datasets]
    assert FAILED not in response
    wait_for(lambda: prearchive_files(api, "STOW01") == 3)


def test_stow_to_a_study_url_and_a_project_url(api: Api) -> None:
    datasets = study("STOW02", "Research")  # no project in the headers
    uid = datasets[0].StudyInstanceUID
    response = client(api, "bob", "/dicomweb/projects/DEMO").store_instances(datasets)
    assert len(response[REFERENCED].value) == 3
    wrong = study("STOW03", "DEMO", count=1)
    partial = client(api, "root").store_instances(datasets[:1] + wrong, study_instance_uid=uid)
    assert len(partial[REFERENCED].value) == 1
    [failure] = partial[FAILED].value
    assert failure[REASON].value == 0xA900  # not the study in the URL
    assert partial.RetrieveURL.endswith(f"/studies/{uid}")


def test_instances_for_a_project_the_user_may_not_write_are_refused(api: Api) -> None:
    mine, theirs = study("STOW04", "DEMO", count=1), study("STOW05", "OTHER", count=1)
    response = client(api, "bob").store_instances(mine + theirs)  # 202: some stored
    assert len(response[REFERENCED].value) == 1
    [failure] = response[FAILED].value
    assert failure.ReferencedSOPInstanceUID == theirs[0].SOPInstanceUID
    assert failure[REASON].value == 0x0124  # refused: not authorized
    with pytest.raises(requests.HTTPError) as refused:
        client(api, "bob").store_instances(theirs)
    assert refused.value.response.status_code == 409
    assert prearchive_files(api, "STOW05") == 0


def test_not_dicom_parts_fail_by_name_and_others_are_kept(api: Api) -> None:
    good = study("STOW06", "DEMO", count=1)[0]
    import io

    from pydicom.filewriter import dcmwrite

    buffer = io.BytesIO()
    dcmwrite(buffer, good, enforce_file_format=True)
    body = (
        b"--B\r\nContent-Type: application/dicom\r\n\r\nnot dicom at all\r\n"
        b"--B\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue() + b"\r\n--B--\r\n"
    )
    response = api.call(
        "POST",
        "/dicomweb/studies",
        data=body,
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=B'},
    )
    assert response.status_code == 202
    document = response.json()
    assert document["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert len(document["00081199"]["Value"]) == 1
    wrong_type = api.call(
        "POST", "/dicomweb/studies", data=b"x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
