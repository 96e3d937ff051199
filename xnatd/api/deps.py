"""What every route takes: the daemon's services, the authenticated caller, and the
check of the caller's role on a project (FastAPI dependencies)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from prometheus_client import CollectorRegistry

from xnatd.api.auth import Principal, Right, authenticate
from xnatd.config import Config, User, current_users
from xnatd.intake.importer import Importer
from xnatd.intake.intake import Intake
from xnatd.operations import Operations
from xnatd.store import Store

NOT_FOUND = "not found"


@dataclass
class Services:
    """What the daemon hands the HTTP API: its stages, its configuration and health."""

    store: Store
    intake: Intake
    importer: Importer
    operations: Operations
    config: Callable[[], Config]
    registry: CollectorRegistry
    health: Callable[[], dict]


def services(request: Request) -> Services:
    """The daemon's services, for a route (``Svc``)."""
    return request.app.state.services


class UsersNow:
    """The users as the users file holds them at this moment: ``xnatd users`` adds,
    replaces and revokes tokens for the very next request, before the daemon reloads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: tuple[int, tuple[int, int] | None, Mapping[str, User]] | None = None

    def of(self, config: Config) -> Mapping[str, User]:
        """The users of ``config`` as its users file holds them now; read again only when
        the file's modification time or size changed.
        """
        path = config.users_file
        if path is None:
            return config.users
        try:
            info = path.stat()
            stamp: tuple[int, int] | None = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if self._seen is None or self._seen[:2] != (id(config), stamp):
                self._seen = (id(config), stamp, current_users(config))
            return self._seen[2]


def caller(request: Request) -> Principal:
    """The authenticated user; 401 (with a Basic challenge) otherwise."""
    config = request.app.state.services.config()
    header = request.headers.get("authorization")
    principal = authenticate(header, request.app.state.users.of(config))
    if principal is None:
        message = (
            "the user name and API token were not accepted"
            if header
            else "user name and API token required (HTTP Basic; `xnatd users add` makes one)"
        )
        raise HTTPException(401, message, {"WWW-Authenticate": 'Basic realm="xnatd"'})
    request.state.user = principal.name
    return principal


def require(
    principal: Principal, project: str, right: Right, *, to_see: Right = Right.READ
) -> None:
    """404 when the caller may not see the project at all (nothing revealed), 403 when
    they see it but may not do this."""
    if not principal.may(project, to_see):
        raise HTTPException(404, NOT_FOUND)
    if not principal.may(project, right):
        raise HTTPException(403, f"your role on {project} does not allow this")


Caller = Depends(caller)
Svc = Depends(services)
