"""The FastAPI application: services, the caller, request logs, health and metrics."""

from __future__ import annotations

import time

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from xnatd import __version__
from xnatd.api import dicomweb, experiments, prearchive_api, receipts_api, ui, uploads
from xnatd.api.deps import Services, UsersNow

log = structlog.get_logger(__name__)

# Over HTTPS, browsers are told to use nothing else for this host for a year (RFC 6797).
HSTS = "max-age=31536000"


def create_app(svc: Services) -> FastAPI:
    """The FastAPI application over the daemon's services: every router, request logs,
    ``/healthz`` and ``/metrics``.
    """
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
