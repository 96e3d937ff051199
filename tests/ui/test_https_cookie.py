"""Over HTTPS the review pages' session cookie is Secure as well (issue 21)."""

from __future__ import annotations

from pathlib import Path

import requests
from apiclient import TOKENS, users
from tlscerts import make_pki


def test_signin_over_https_gives_a_secure_cookie(make_xnatd, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")

    def hook(settings: dict) -> None:
        settings["http"]["tls"] = {"cert": str(pki.server.cert), "key": str(pki.server.key)}
        settings["users"] = users()

    xnatd = make_xnatd(hook=hook)
    answer = requests.post(
        f"https://localhost:{xnatd.http_port}/ui/signin",
        data={"user": "alice", "token": TOKENS["alice"]},
        verify=str(pki.ca.cert),
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
