"""Who is calling, and what their role on a project lets them do.

HTTP Basic with the user name and the API token, as XNAT clients send; tokens are
kept only as SHA-256 digests and compared in constant time.

Rights by role (SPEC users, issue 8): owners archive, move, release and delete;
members upload and read (quarantined sessions and the prearchive included);
collaborators read active archived sessions only. Site admins may do everything,
Unassigned included. A project a user may not read is answered 404, like one that
does not exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from xnatd.config import User
from xnatd.routing import UNASSIGNED


class Right(StrEnum):
    """What a caller may do on a project; each role grants a set (``RIGHTS_BY_ROLE``)."""

    READ = "read"  # active archived sessions
    READ_ALL = "read_all"  # quarantined sessions and the prearchive too
    UPLOAD = "upload"  # import, STOW-RS, build
    MANAGE = "manage"  # archive, move, release, delete


RIGHTS_BY_ROLE: Mapping[str, frozenset[Right]] = {
    "owner": frozenset(Right),
    "member": frozenset({Right.READ, Right.READ_ALL, Right.UPLOAD}),
    "collaborator": frozenset({Right.READ}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: their name, whether site admin, their role per project."""

    name: str
    admin: bool = False
    roles: Mapping[str, str] = field(default_factory=dict)

    def may(self, project: str, right: Right) -> bool:
        """Whether the caller has ``right`` on project (Unassigned: admins only)."""
        if self.admin:
            return True
        if project == UNASSIGNED:
            return False
        role = self.roles.get(project)
        return role is not None and right in RIGHTS_BY_ROLE.get(role, frozenset())

    def projects_with(self, right: Right) -> frozenset[str] | None:
        """The projects this right covers; None means every project (admins)."""
        if self.admin:
            return None
        return frozenset(p for p in self.roles if self.may(p, right))


def authenticate(header: str | None, users: Mapping[str, User]) -> Principal | None:
    """The caller named by an ``Authorization: Basic`` header, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, token = decoded.partition(":")
    user = users.get(name)
    if not colon or user is None:
        hashlib.sha256(token.encode()).hexdigest()  # same work whether or not the user exists
        return None
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    if not hmac.compare_digest(digest, user.token_sha256):
        return None
    return Principal(user.name, user.admin, dict(user.projects))
