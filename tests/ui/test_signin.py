"""Session cookies and CSRF tokens: signed, bound to the user's current token, expiring."""

from __future__ import annotations

import time

from xnatd.api.ui.signin import Signer
from xnatd.config import User


def _users(token_sha256: str = "a" * 64) -> dict[str, User]:
    return {"alice": User("alice", token_sha256, False, {"DEMO": "owner"})}


def test_cookie_names_the_user_until_the_token_changes() -> None:
    signer = Signer()
    cookie = signer.cookie_for(_users()["alice"], time.time() + 60)
    principal = signer.principal(cookie, _users())
    assert principal is not None and principal.name == "alice" and principal.roles
    assert signer.principal(cookie, _users("b" * 64)) is None  # token replaced
    assert signer.principal(cookie, {}) is None  # user revoked
    assert Signer().principal(cookie, _users()) is None  # another daemon's key


def test_expired_or_tampered_cookies_are_refused() -> None:
    signer = Signer()
    user = _users()["alice"]
    assert signer.principal(signer.cookie_for(user, time.time() - 1), _users()) is None
    name, stamp, mac = signer.cookie_for(user, time.time() + 60).split(".")
    assert signer.principal(f"{name}.{int(stamp) + 1000}.{mac}", _users()) is None
    for junk in ("", "x", "a.b.c", "!!.1.2"):
        assert signer.principal(junk, _users()) is None


def test_csrf_token_belongs_to_its_session() -> None:
    signer = Signer()
    cookie = signer.cookie_for(_users()["alice"], time.time() + 60)
    other = signer.cookie_for(_users()["alice"], time.time() + 120)
    token = signer.csrf(cookie)
    assert signer.csrf_ok(cookie, token)
    assert not signer.csrf_ok(other, token)
    assert not signer.csrf_ok(cookie, None) and not signer.csrf_ok(None, token)
