"""The XNAT-compatible endpoints over real HTTP: curl uploads, prearchive, archive,
experiments, documents and downloads (issue 8)."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile

import pydicom
from apiclient import TOKENS, Api
from helpers import assert_valid


def test_curl_import_of_a_zip_lands_in_the_prearchive(api: Api) -> None:
    archive = api.study_zip("curl", patient_id="CURL01")
    result = subprocess.run(
        [
            "curl", "-sS", "-u", f"bob:{TOKENS['bob']}", "-X", "POST",
            f"{api.base}/data/services/import?import-handler=DICOM-zip&PROJECT_ID=DEMO",
            "-F", f"file=@{archive}", "-w", "\n%{http_code}",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    body, _, code = result.stdout.rpartition("\n")
    assert code == "200", body
    [uri] = body.split()
    assert uri.startswith("/prearchive/projects/DEMO/") and uri.endswith("/CURL01")
    row = api.call("GET", "/data" + uri, "bob").json()
    assert (row["status"], row["files"], row["subject"]) == ("READY", 3, "DOE_JOHN")
    listed = api.call("GET", "/data/prearchive/projects/DEMO", "bob").json()["ResultSet"]
    assert uri in [r["url"] for r in listed["Result"]]
    assert listed["totalRecords"] == str(len(listed["Result"]))


def test_archive_service_then_experiments_document_and_zip(api: Api, schemas) -> None:
    uri = api.upload("arch1")
    answer = api.call("POST", "/data/services/archive", "alice", params={"src": uri})
    assert answer.status_code == 200, answer.text
    archived = answer.text.strip()
    assert archived.startswith("/archive/projects/DEMO/subjects/arch1/experiments/")
    assert api.call("GET", "/data" + uri, "alice").status_code == 404  # left the prearchive

    rows = api.call("GET", "/data/projects/DEMO/experiments", "carol", params={"format": "json"})
    result = rows.json()["ResultSet"]["Result"]
    [row] = [r for r in result if r["subject_label"] == "arch1"]
    assert row["xsiType"] == "xnat:mrSessionData" and row["URI"] == f"/data/experiments/{row['ID']}"

    document = api.call("GET", f"/data/experiments/{row['ID']}", "carol", params={"format": "xml"})
    assert document.status_code == 200 and document.headers["content-type"].startswith(
        "application/xml"
    )
    saved = api.workdir / "doc.xml"
    saved.write_bytes(document.content)
    assert_valid(schemas["xnat"], saved)

    download = api.call(
        "GET", f"/data/experiments/{row['ID']}/scans/ALL/files", "carol", params={"format": "zip"}
    )
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    originals = {
        pydicom.dcmread(p).SOPInstanceUID: p.read_bytes()
        for p in (api.workdir / "arch1").rglob("*.dcm")
    }
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = archive.namelist()
        assert len(names) == 3
        for name in names:
            assert name.startswith(f"{row['label']}/scans/1/resources/DICOM/files/")
            data = archive.read(name)
            uid = pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID
            assert data == originals[uid]  # file by file, bit for bit


def test_import_straight_to_the_archive(api: Api) -> None:
    uri = api.upload("direct", user="alice", dest="/archive", overwrite="append")
    assert uri.startswith("/archive/projects/DEMO/subjects/direct/experiments/")


def test_gradual_dicom_in_the_body(api: Api) -> None:
    archive = api.study_zip("gradual", instances=1, patient_id="GRAD01")
    [path] = list((api.workdir / "gradual").rglob("*.dcm"))
    response = api.call(
        "POST",
        "/data/services/import",
        "bob",
        params={"import-handler": "gradual-DICOM", "PROJECT_ID": "DEMO", "inbody": "true"},
        data=path.read_bytes(),
        headers={"Content-Type": "application/dicom"},
    )
    assert response.status_code == 200, response.text
    assert response.text.strip().startswith("/prearchive/projects/DEMO/")
    assert archive.exists()


def test_prearchive_actions_build_move_delete(api: Api) -> None:
    uri = api.upload("actions")
    path = "/data" + uri
    assert api.call("POST", path, "bob", params={"action": "build"}).status_code == 200
    moved = api.call("POST", path, "root", params={"action": "move", "newProject": "OTHER"})
    assert moved.status_code == 200, moved.text
    new_uri = moved.text.strip()
    assert new_uri.startswith("/prearchive/projects/OTHER/")
    assert api.call("GET", path, "root").status_code == 404
    assert api.call("DELETE", "/data" + new_uri, "dave").status_code == 200
    assert api.call("GET", "/data" + new_uri, "root").status_code == 404


def test_bad_uploads_are_named_and_nothing_is_kept(api: Api) -> None:
    garbage = api.workdir / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 this is no zip")
    before = api.call("GET", "/data/prearchive/projects").json()["ResultSet"]["totalRecords"]
    with garbage.open("rb") as body:
        response = api.call(
            "POST",
            "/data/services/import",
            params={"PROJECT_ID": "DEMO"},
            files={"file": ("garbage.zip", body)},
        )
    assert response.status_code == 400 and "garbage.zip" in response.json()["detail"]
    after = api.call("GET", "/data/prearchive/projects").json()["ResultSet"]["totalRecords"]
    assert before == after
    bad = api.call(
        "POST", "/data/services/import", params={"import-handler": "XAR", "PROJECT_ID": "DEMO"}
    )
    assert bad.status_code == 400 and "import-handler" in bad.json()["detail"]


def test_requests_are_logged_with_the_user(api: Api) -> None:
    api.call("GET", "/data/prearchive/projects", "carol")
    events = [e for e in api.daemon.events("http_request") if e.get("user") == "carol"]
    assert events and events[-1]["path"] == "/data/prearchive/projects"
    assert json.dumps(events[-1])  # one JSON object per line


def test_openapi_health_and_metrics_sit_next_to_the_api(api: Api) -> None:
    spec = api.call("GET", "/openapi.json", None).json()
    assert "/data/services/import" in spec["paths"] and "/dicomweb/studies" in spec["paths"]
    assert api.call("GET", "/healthz", None).json()["status"] == "ok"
    assert "xnatd_" in api.call("GET", "/metrics", None).text
