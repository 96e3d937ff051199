"""The review pages over TestClient: sign-in, CSRF, the API's roles and 404, the
prearchive list, a session page with pictures and headers, escaping, confirmations."""

from __future__ import annotations

from pathlib import Path

import pytest
from apiclient import TOKENS
from dicomgen import SeriesSpec, StudySpec, write_study
from uisite import Browser, csrf_of, signed_in, ui_site

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def site(tmp_path: Path):
    ui = ui_site(tmp_path)
    made = ui.site
    study = StudySpec("ui", patient_name=SCRIPT, series=[SeriesSpec(1, instances=3)])
    assert set(made.receive(write_study(study, tmp_path / "send"), project="DEMO")) == {"stored"}
    made.build_all()
    yield made, ui
    ui.close()


def _session_url(made) -> str:
    (session,) = made.prearchive()
    return f"/ui/prearchive/{session.name}"


def test_pages_need_a_signed_in_user(site) -> None:
    made, ui = site
    client = Browser(ui.url)
    for url in ("/ui/prearchive", _session_url(made)):
        answer = client.get(url, allow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/signin")
    wrong = client.post("/ui/signin", data={"user": "alice", "token": "nope"})
    assert wrong.status_code == 401 and "not accepted" in wrong.text


def test_cookie_is_httponly_and_strict(site) -> None:
    _, ui = site
    answer = Browser(ui.url).post(
        "/ui/signin", data={"user": "bob", "token": TOKENS["bob"]}, allow_redirects=False
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie


def test_member_sees_the_session_escaped_with_pictures(site) -> None:
    made, ui = site
    client = signed_in(ui, "bob")
    listing = client.get("/ui/prearchive")
    assert listing.status_code == 200 and "READY" in listing.text
    assert "<td>SENDER</td>" in listing.text  # the calling AE that sent the files
    page = client.get(_session_url(made))
    assert page.status_code == 200
    assert SCRIPT not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    pictures = [p for p in page.text.split('src="')[1:] if "/picture/" in p]
    url = pictures[0].split('"')[0].replace("&amp;", "&")
    png = client.get(url)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert list((made.store.data.root / ".thumbs").rglob("*.png"))


def test_collaborator_and_stranger_get_the_apis_404(site) -> None:
    made, ui = site
    url = _session_url(made)
    for user in ("carol", "dave"):
        client = signed_in(ui, user)
        assert client.get(url).status_code == 404
        assert client.get(url + "/picture/1/x.dcm").status_code == 404
        assert made.prearchive()[0].label not in client.get("/ui/prearchive").text


def test_actions_need_csrf_and_a_confirmation(site) -> None:
    made, ui = site
    client = signed_in(ui, "alice")
    url = _session_url(made)
    csrf = csrf_of(client.get(url).text)
    refused = client.post(url + "/action", data={"action": "delete"})
    assert refused.status_code == 403
    asked = client.post(url + "/action", data={"action": "delete", "csrf": csrf})
    assert asked.status_code == 200 and 'name="confirmed"' in asked.text
    assert len(made.prearchive()) == 1
    member = signed_in(ui, "bob")
    forbidden = member.post(
        url + "/action",
        data={"action": "delete", "csrf": csrf_of(member.get(url).text), "confirmed": "yes"},
    )
    assert forbidden.status_code == 403 and len(made.prearchive()) == 1
    done = client.post(url + "/action", data={"action": "delete", "csrf": csrf, "confirmed": "yes"})
    assert done.status_code == 200 and "Deleted" in done.text
    assert made.prearchive() == []


def test_archive_pages_show_release_and_download(site, tmp_path: Path) -> None:
    made, ui = site
    (session,) = made.prearchive()
    made.operations.move(session.name, "QUAR", "test")
    (moved,) = made.prearchive()
    assert made.operations.archive(moved.name, "none", "test").result == "archived"
    (archived,) = made.archived()
    assert archived.status.value == "quarantine"
    carol = signed_in(ui, "carol")  # collaborator on QUAR: no quarantined session
    assert archived.label not in carol.get("/ui/archive?project=QUAR").text
    assert carol.get(f"/ui/archive/{archived.id}").status_code == 404
    alice = signed_in(ui, "alice")
    listing = alice.get("/ui/archive?project=QUAR").text
    assert archived.id in listing and "quarantine" in listing
    page = alice.get(f"/ui/archive/{archived.id}")
    assert page.status_code == 200 and "/picture/1/" in page.text
    zipped = alice.get(f"/ui/archive/{archived.id}/download")
    assert zipped.status_code == 200 and zipped.content[:2] == b"PK"
    csrf = csrf_of(page.text)
    done = alice.post(
        f"/ui/archive/{archived.id}/action",
        data={"action": "release", "csrf": csrf, "confirmed": "yes"},
    )
    assert "active" in done.text
    assert archived.label in carol.get("/ui/archive?project=QUAR").text


def test_upload_imports_a_zip_through_the_importer(site, tmp_path: Path) -> None:
    import zipfile

    made, ui = site
    files = write_study(StudySpec("zipped", patient_id="ZIP01"), tmp_path / "zip")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in files:
            out.write(path, path.name)
    bob = signed_in(ui, "bob")
    csrf = csrf_of(bob.get("/ui/upload").text)
    batch = "ab" * 16
    assert bob.post(f"/ui/upload/{batch}/file?path=study.zip", data=b"x").status_code == 403
    escaped = bob.post(
        f"/ui/upload/{batch}/file?path=../../x", data=b"x", headers={"X-CSRF-Token": csrf}
    )
    assert escaped.status_code == 400 and "refusing path component" in escaped.text
    sent = bob.post(
        f"/ui/upload/{batch}/file?path=study.zip",
        data=archive.read_bytes(),
        headers={"X-CSRF-Token": csrf},
    )
    assert sent.status_code == 200
    imported = bob.post(f"/ui/upload/{batch}/import", data={"csrf": csrf, "project": "DEMO"})
    assert imported.status_code == 200, imported.text
    summary = imported.json()
    assert summary["files"] == len(files) and len(summary["created"]) == 1
    assert len(made.prearchive()) == 2
    bad = bob.post(
        f"/ui/upload/{batch}/file?path=bad.zip",
        data=b"PK\x03\x04junk",
        headers={"X-CSRF-Token": csrf},
    )
    assert bad.status_code == 200
    failed = bob.post(f"/ui/upload/{batch}/import", data={"csrf": csrf, "project": "DEMO"})
    assert failed.status_code == 400 and failed.json()["error"]


def test_pixel_findings_are_boxed_on_the_picture(tmp_path: Path) -> None:
    import io

    import numpy as np
    from PIL import Image

    from xnatd.store.index.records import Finding

    ui = ui_site(tmp_path)
    try:
        made = ui.site
        study = StudySpec("px", series=[SeriesSpec(1, instances=1, rows=64, columns=64)])
        made.receive(write_study(study, tmp_path / "send"), project="DEMO")
        made.build_all()
        (session,) = made.prearchive()
        (record,) = made.store.index.instances(session.id)
        finding = Finding("pixels", record.scan, record.file_name, "frame 1: 4,4,20,10", "text")
        made.store.prearchive.record_findings(session, "build", [finding])
        client = signed_in(ui, "bob")
        url = f"/ui/prearchive/{session.name}"
        page = client.get(url).text
        assert "frame 1: 4,4,20,10" in page and "Red boxes" in page
        png = client.get(f"{url}/picture/{record.scan}/{record.file_name}")
        pixels = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))
        scale = pixels.shape[1] / 64
        assert tuple(pixels[int(4 * scale), int(10 * scale)]) == (255, 0, 0)
        alice = signed_in(ui, "alice")
        csrf = csrf_of(alice.get(url).text)
        cleaned = alice.post(
            url + "/action", data={"action": "clean", "csrf": csrf, "confirmed": "yes"}
        )
        assert "Cleaned 1 file(s); the session is READY" in cleaned.text, cleaned.text
        events = [e.event for e in made.store.audit.events(str(session.name))]
        assert "clean_pixels" in events
    finally:
        ui.close()


def test_list_filters_and_refreshes_while_receiving(tmp_path: Path) -> None:
    ui = ui_site(tmp_path)
    try:
        made = ui.site
        for seed, project in (("a", "DEMO"), ("b", "OTHER")):
            study = StudySpec(seed, patient_id=f"P{seed}")
            made.receive(write_study(study, tmp_path / seed), project=project)
        client = signed_in(ui, "root")
        receiving = client.get("/ui/prearchive").text
        assert 'http-equiv="refresh"' in receiving and "RECEIVING" in receiving
        assert "OTHER" in client.get("/ui/prearchive?project=OTHER").text
        only_demo = client.get("/ui/prearchive?project=DEMO").text
        assert only_demo.count("<tr>") == 2  # the header and one session
        made.build_all()
        ready = client.get("/ui/prearchive?status=READY").text
        assert 'http-equiv="refresh"' not in ready and ready.count("<tr>") == 3
        assert client.get("/ui/prearchive?status=HELD").text.count("<tr>") == 2  # "none"
        bob = signed_in(ui, "bob")  # member of DEMO only
        assert bob.get("/ui/prearchive?project=OTHER").status_code == 404
    finally:
        ui.close()


def test_move_and_rebuild_call_the_same_operations(site) -> None:
    made, ui = site
    alice = signed_in(ui, "alice")
    url = _session_url(made)
    csrf = csrf_of(alice.get(url).text)
    rebuilt = alice.post(
        url + "/action", data={"action": "rebuild", "csrf": csrf, "confirmed": "yes"}
    )
    assert "Rebuilt: READY" in rebuilt.text
    moved = alice.post(
        url + "/action",
        data={"action": "move", "project_to": "QUAR", "csrf": csrf, "confirmed": "yes"},
    )
    assert "Moved to QUAR/" in moved.text
    (session,) = made.prearchive()
    assert session.project == "QUAR"
    before = [e.event for e in made.store.audit.events(url.removeprefix("/ui/prearchive/"))]
    after = [e.event for e in made.store.audit.events(str(session.name))]
    assert "rebuild" in before and "move" in after


def test_sign_out_needs_csrf_and_ends_the_session(site) -> None:
    _, ui = site
    bob = signed_in(ui, "bob")
    page = bob.get("/ui/prearchive")
    assert bob.post("/ui/signout", allow_redirects=False).status_code == 403
    out = bob.post("/ui/signout", data={"csrf": csrf_of(page.text)}, allow_redirects=False)
    assert out.status_code == 303
    after = bob.get("/ui/prearchive", allow_redirects=False)
    assert after.status_code == 303 and "/ui/signin" in after.headers["location"]


def test_abandoned_upload_batches_are_removed(site) -> None:
    import os

    made, ui = site
    staging = made.store.data.root / ".staging"
    old, fresh = staging / ("ui-" + "0" * 32), staging / ("ui-" + "1" * 32)
    for folder in (old, fresh):
        (folder / "files").mkdir(parents=True)
    os.utime(old, (0, 0))
    assert signed_in(ui, "bob").get("/ui/upload").status_code == 200
    assert not old.exists() and fresh.exists()
