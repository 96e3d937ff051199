"""Who is looking at a page: a signed session cookie from the user name and API token.

The cookie holds the user name and an expiry, signed (HMAC-SHA256) with a key made
when the daemon starts and kept only in memory, over the user's current token digest
too: replacing or revoking the token with ``xnatd users`` ends the browser session
at the next request, as it does for the API. Forms that change something carry a
CSRF token derived from the cookie; the server checks it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from xnatd.api.auth import Principal, authenticate
from xnatd.config import User

COOKIE = "xnatd_ui"
LIFETIME = 12 * 3600.0  # a working day; then sign in again


class Signer:
    """Makes and checks session cookies and CSRF tokens with one in-memory key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, *parts: str) -> str:
        message = "\0".join(parts).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign_in(self, name: str, token: str, users: Mapping[str, User]) -> str | None:
        """The cookie value for a user whose token is right, or None."""
        header = "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()
        if authenticate(header, users) is None:
            return None
        return self.cookie_for(users[name], time.time() + LIFETIME)

    def cookie_for(self, user: User, expires: float) -> str:
        """The signed cookie value naming user until ``expires``; changing their token
        invalidates it.
        """
        encoded = base64.urlsafe_b64encode(user.name.encode("utf-8")).decode()
        stamp = str(int(expires))
        return f"{encoded}.{stamp}.{self._mac(user.name, stamp, user.token_sha256)}"

    def principal(self, cookie: str | None, users: Mapping[str, User]) -> Principal | None:
        """The user a cookie names, if its signature, expiry and token still hold."""
        if not cookie or cookie.count(".") != 2:
            return None
        encoded, stamp, mac = cookie.split(".")
        try:
            name = base64.urlsafe_b64decode(encoded.encode()).decode("utf-8")
            expires = int(stamp)
        except ValueError:
            return None
        user = users.get(name)
        if user is None or expires < time.time():
            return None
        if not hmac.compare_digest(mac, self._mac(name, stamp, user.token_sha256)):
            return None
        return Principal(user.name, user.admin, dict(user.projects))

    def csrf(self, cookie: str) -> str:
        """The CSRF token of a browser session: forms send it back."""
        return self._mac("csrf", cookie)

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        """Whether token is the CSRF token of the browser session ``cookie``."""
        return bool(cookie and token) and hmac.compare_digest(self.csrf(cookie or ""), token or "")
