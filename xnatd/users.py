"""The users file (``users: users.yaml``): HTTP users, their roles and hashed API tokens.

``xnatd users add|list|remove|token`` edit it (SPEC section 10.3); the configuration
reads it (``xnatd.config``), and the daemon reloads when it changes, so a new token
works without a restart. Only each token's SHA-256 is written; the token itself is
printed once and kept nowhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROLES = ("owner", "member", "collaborator")
# Basic auth splits "name:token" at the first colon, so a name never holds one.
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class UsersError(Exception):
    """The users file cannot be read or written, or a request about it cannot work."""


def new_token() -> str:
    """A fresh API token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the users file keeps of a token: its hex SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class UserEntry:
    """One user as the users file holds it."""

    name: str
    admin: bool
    projects: dict[str, str]


class UsersFile:
    """Reads and rewrites one users file; every write replaces the file atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        """The file's users as a mapping (empty when the file does not exist yet).

        Raises:
            UsersError: the file cannot be read or is not a mapping of users.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsersError(f"users file {self.path}: {exc.strerror or exc}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise UsersError(f"users file {self.path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise UsersError(f"users file {self.path} is not a mapping of user names")
        return raw

    def entries(self) -> list[UserEntry]:
        """Every user, sorted by name, without token digests."""
        return [
            UserEntry(
                name=str(name),
                admin=bool((body or {}).get("admin", False)),
                projects={str(k): str(v) for k, v in ((body or {}).get("projects") or {}).items()},
            )
            for name, body in sorted(self.read().items(), key=lambda item: str(item[0]))
        ]

    def add(self, name: str, admin: bool, projects: dict[str, str]) -> str:
        """Add a user; returns its new token (shown once).

        Raises:
            UsersError: the name is taken or not valid, or the file cannot be written.
        """
        if not USER_NAME.match(name):
            raise UsersError(
                f"{name!r} is not a user name (letters, digits, '.', '_', '@', '-'; no ':')"
            )
        users = self.read()
        if name in users:
            raise UsersError(
                f"user {name} exists already (`xnatd users token {name}` gives it a new token)"
            )
        token = new_token()
        body: dict[str, Any] = {"token_sha256": token_digest(token), "admin": admin}
        if projects:
            body["projects"] = dict(sorted(projects.items()))
        users[name] = body
        self.write(users)
        return token

    def remove(self, name: str) -> None:
        """Remove a user; its token stops working at once.

        Raises:
            UsersError: no such user, or the file cannot be written.
        """
        users = self.read()
        if name not in users:
            raise UsersError(f"no user {name} in {self.path}")
        del users[name]
        self.write(users)

    def new_token(self, name: str) -> str:
        """Give a user a new token (the old one stops working); returns it.

        Raises:
            UsersError: no such user, or the file cannot be written.
        """
        users = self.read()
        if name not in users:
            raise UsersError(f"no user {name} in {self.path}")
        token = new_token()
        users[name] = {**(users[name] or {}), "token_sha256": token_digest(token)}
        self.write(users)
        return token

    def write(self, users: dict[str, dict[str, Any]]) -> None:
        """Replace the file: a temporary file beside it, readable by its owner only,
        then a rename, so a reader (the daemon) never sees half a file."""
        header = "# Written by `xnatd users`: API users, their roles and token digests.\n"
        text = header + yaml.safe_dump(users, sort_keys=True, default_flow_style=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".users.", dir=self.path.parent)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            reason = exc.strerror or exc
            raise UsersError(f"cannot write users file {self.path}: {reason}") from None
