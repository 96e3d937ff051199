"""HTTPS on the HTTP listener (``http.tls``, SPEC 10.4): tokens never cross in the clear,
and browsers are told to keep it that way (HSTS)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from apiclient import TOKENS, users
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, storescu_send
from tlscerts import make_pki


@pytest.fixture
def https(make_xnatd, tmp_path: Path) -> tuple[Xnatd, Path]:
    pki = make_pki(tmp_path / "pki")

    def hook(settings: dict) -> None:
        settings["http"]["tls"] = {"cert": str(pki.server.cert), "key": str(pki.server.key)}
        settings["users"] = users()

    return make_xnatd(hook=hook), pki.ca.cert


def test_the_api_answers_over_https_with_hsts(https, storescu: str, dcm_dir: Path) -> None:
    xnatd, ca = https
    paths = write_study(StudySpec("https", series=[SeriesSpec(1, instances=2)]), dcm_dir)
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    url = f"https://localhost:{xnatd.http_port}"
    listed = requests.get(
        f"{url}/data/prearchive/projects/Unassigned",
        auth=("root", TOKENS["root"]),
        verify=str(ca),
        timeout=10,
    )
    assert listed.status_code == 200
    assert listed.json()["ResultSet"]["Result"]
    assert listed.headers["Strict-Transport-Security"] == "max-age=31536000"
    refused = requests.get(f"{url}/data/projects/DEMO/experiments", verify=str(ca), timeout=10)
    assert refused.status_code == 401  # the header goes on every answer, refusals too
    assert "Strict-Transport-Security" in refused.headers


def test_plain_http_gets_no_answer_on_an_https_listener(https) -> None:
    xnatd, _ = https
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{xnatd.http_port}/healthz", timeout=10)


def test_a_certificate_from_another_ca_is_not_trusted(https, tmp_path: Path) -> None:
    """A client checking against its own CA refuses xnatd's certificate: the listener
    really presents the configured one."""
    xnatd, _ = https
    other = make_pki(tmp_path / "other").ca.cert
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{xnatd.http_port}/healthz", verify=str(other), timeout=10)
