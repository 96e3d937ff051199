"""The FastAPI application: services, the caller, request logs, health and metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from xnatd import __version__
from xnatd.api.auth import Principal, Right, authenticate
from xnatd.config import Config, User, current_users
from xnatd.intake.importer import Importer
from xnatd.intake.intake import Intake
from xnatd.operations import Operations
from xnatd.store import Store

log = structlog.get_logger(__name__)

NOT_FOUND = "not found"
# Over HTTPS, browsers are told to use nothing else for this host for a year (RFC 6797).
HSTS = "max-age=31536000"


@dataclass
class Services:
    store: Store
    intake: Intake
    importer: Importer
    operations: Operations
    config: Callable[[], Config]
    registry: CollectorRegistry
    health: Callable[[], dict]


def services(request: Request) -> Services:
    return request.app.state.services


class UsersNow:
    """The users as the users file holds them at this moment: ``xnatd users`` adds,
    replaces and revokes tokens for the very next request, before the daemon reloads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: tuple[int, tuple[int, int] | None, Mapping[str, User]] | None = None

    def of(self, config: Config) -> Mapping[str, User]:
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


def create_app(svc: Services) -> FastAPI:
    from xnatd.api import dicomweb, experiments, prearchive_api, receipts_api, ui, uploads

    app = FastAPI(
        title="xnatd",
        version=__version__,
        description="XNAT-compatible import, prearchive and experiment endpoints; DICOMweb "
        "STOW-RS. HTTP Basic with user name and API token.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    app.state.users = UsersNow()

    @app.middleware("http")
    async def request_log(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        if request.url.scheme == "https":
            response.headers["Strict-Transport-Security"] = HSTS
        log.info(
            "http_request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            user=getattr(request.state, "user", None),
            seconds=round(time.perf_counter() - started, 4),
        )
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("http_error", method=request.method, path=request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        state = svc.health()
        return JSONResponse(state, status_code=200 if state.get("status") == "ok" else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(svc.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(uploads.router)
    app.include_router(prearchive_api.router)
    app.include_router(experiments.router)
    app.include_router(dicomweb.router)
    app.include_router(receipts_api.router)
    app.include_router(ui.router)
    return app
