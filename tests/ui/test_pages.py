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
