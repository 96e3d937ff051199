"""XNAT's import service, ``POST /data/services/import`` (reference 8.1).

``import-handler``: ``DICOM-zip`` (zip, tar, tgz: all or nothing, through the same
importer as ``xnatd import``), ``gradual-DICOM`` (one object, as a C-STORE would
deliver it; built after the idle timeout), ``inbox`` (``path=`` a folder or archive
under the data directory's ``inbox/PROJECT``). The body is multipart (the first file
part; other fields count as parameters) or, with ``inbody=true`` or an
``application/dicom`` body, the request body itself. Answers with the prearchive or
archive URIs, one per line, as XNAT does.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from xnatd.api.auth import Principal, Right
from xnatd.api.deps import Caller, Services, Svc, require
from xnatd.api.prearchive_api import archive_uri, prearchive_uri
from xnatd.archive.policy import OVERWRITE_MODES
from xnatd.intake.importer import STAGING, ImportFailed, ImportRequest
from xnatd.intake.intake import Received, Result
from xnatd.payload import file_payload
from xnatd.routing import Explicit
from xnatd.store.layout import PrearchiveName

router = APIRouter(tags=["upload"])

HANDLERS = ("DICOM-zip", "SI", "gradual-DICOM", "inbox")
CHUNK = 1 << 20
_FILE_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
        "application/dicom": {"schema": {"type": "string", "format": "binary"}},
    }
}


@dataclass(frozen=True)
class ImportParams:
    """An import request's parameters, under XNAT's names resolved (``parse_params``)."""

    handler: str
    project: str | None
    subject: str | None
    session: str | None
    archive: bool
    overwrite: str
    path: str | None


def _first(params: dict[str, str], *names: str) -> str | None:
    for name in names:
        if params.get(name):
            return params[name]
    return None


def parse_params(params: dict[str, str], content_type: str) -> ImportParams:
    """XNAT's parameter names; ``dest`` may carry project, subject and label."""
    handler = params.get("import-handler") or (
        "gradual-DICOM" if content_type.startswith("application/dicom") else "DICOM-zip"
    )
    if handler not in HANDLERS:
        raise HTTPException(400, f"import-handler {handler!r} is not one of {', '.join(HANDLERS)}")
    project = _first(params, "PROJECT_ID", "project")
    subject = _first(params, "SUBJECT_ID", "subject")
    session = _first(params, "EXPT_LABEL", "session")
    dest = (params.get("dest") or "/prearchive").removeprefix("/data")
    parts = [p for p in dest.split("/") if p]
    if not parts or parts[0] not in ("prearchive", "archive"):
        raise HTTPException(400, f"dest={dest!r} is not /prearchive[...] or /archive[...]")
    fields = dict(zip(parts[1::2], parts[2::2], strict=False))  # projects/P/subjects/S/...
    project = fields.get("projects", project)
    subject = fields.get("subjects", subject)
    session = fields.get("experiments", session)
    overwrite = params.get("overwrite") or "none"
    if overwrite not in OVERWRITE_MODES:
        raise HTTPException(400, f"overwrite must be one of {', '.join(OVERWRITE_MODES)}")
    return ImportParams(
        handler, project, subject, session, parts[0] == "archive", overwrite, params.get("path")
    )


async def _save_body(request: Request, target: Path) -> tuple[Path, dict[str, str]]:
    """The uploaded file, written to target; and the form's other fields."""
    content_type = request.headers.get("content-type", "")
    fields: dict[str, str] = {}
    target.parent.mkdir(parents=True, exist_ok=True)
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=100) as form:
            upload = None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    upload = upload or value
                else:
                    fields[key] = value
            if upload is None:
                raise HTTPException(400, "the multipart body holds no file")
            name = Path(upload.filename or "upload").name or "upload"
            target = target.with_name(name)
            with target.open("wb") as out:
                while chunk := await upload.read(CHUNK):
                    out.write(chunk)
        return target, fields
    with target.open("wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
    return target, fields


@router.post(
    "/data/services/import",
    openapi_extra={"requestBody": _FILE_BODY},
    response_class=PlainTextResponse,
)
async def import_service(
    request: Request, principal: Principal = Caller, svc: Services = Svc
) -> PlainTextResponse:
    """XNAT's import service: a zip or tar (all or nothing), one DICOM object
    (``gradual-DICOM``) or an inbox path; the sessions' URIs, one a line.
    """
    query = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    staging = svc.store.data.root / STAGING / f"http-{uuid.uuid4().hex}"
    try:
        body = None
        if query.get("import-handler") != "inbox":
            suffix = ".dcm" if content_type.startswith("application/dicom") else ".zip"
            body, fields = await _save_body(request, staging / f"upload{suffix}")
            query = {**fields, **query}
        params = parse_params(query, content_type)
        return await run_in_threadpool(_import, svc, principal, params, body)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _import(
    svc: Services, principal: Principal, params: ImportParams, body: Path | None
) -> PlainTextResponse:
    actor = f"http:{principal.name}"
    if params.project is not None:
        require(principal, params.project, Right.MANAGE if params.archive else Right.UPLOAD)
    if params.handler == "gradual-DICOM":
        return _gradual(svc, principal, params, body)
    if params.project is None:
        raise HTTPException(400, "PROJECT_ID is required")
    if svc.config().project(params.project) is None:
        raise HTTPException(404 if not principal.admin else 400, "no such project")
    path = body
    if params.handler == "inbox":
        path = _inbox_path(svc, params)
    if path is None or (path.is_file() and path.stat().st_size == 0):
        raise HTTPException(400, "the request holds no file")
    request = ImportRequest(
        path=path,
        project=params.project,
        subject=params.subject,
        session=params.session,
        archive=params.archive,
        overwrite=params.overwrite,
        actor=actor,
    )
    try:
        summary = svc.importer.run(request, quiet=True)
    except ImportFailed as exc:
        raise HTTPException(400, str(exc)) from None
    uris = [archive_uri(svc, session_id) for session_id in summary.archived]
    for name in summary.sessions_created + summary.sessions_merged:
        if svc.store.index.get_session(PrearchiveName.parse(name)) is not None:
            uris.append(prearchive_uri(name))
    return PlainTextResponse("\n".join(uris) + "\n")


def _inbox_path(svc: Services, params: ImportParams) -> Path:
    """``path=`` must lie in the data directory's ``inbox/PROJECT`` (as XNAT's inboxPath)."""
    if not params.path:
        raise HTTPException(400, "import-handler=inbox needs path=")
    base = (svc.store.data.root / "inbox" / str(params.project)).resolve()
    candidate = Path(params.path)
    path = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if path != base and base not in path.parents:
        raise HTTPException(400, f"path must be inside {base}")
    if not path.exists():
        raise HTTPException(400, f"{params.path} does not exist")
    return path


def _gradual(
    svc: Services, principal: Principal, params: ImportParams, body: Path | None
) -> PlainTextResponse:
    """One object through the intake, as C-STORE would deliver it."""
    if body is None or not body.is_file() or body.stat().st_size == 0:
        raise HTTPException(400, "gradual-DICOM needs one DICOM object in the body")
    outcome = svc.intake.receive(
        Received(
            file_payload(body),
            source="http",
            explicit=Explicit(params.project, params.subject, params.session),
            projects=principal.projects_with(Right.UPLOAD),
        )
    )
    if outcome.result is Result.NOT_PERMITTED:
        raise HTTPException(404, "not found")
    if outcome.result is Result.DROPPED:  # reject[] in the site script: success, as XNAT
        return PlainTextResponse("\n")
    if outcome.result is Result.REFUSED:
        raise HTTPException(503, outcome.reason or "refused")
    if outcome.result is not Result.STORED:
        raise HTTPException(400, outcome.reason or "rejected")
    return PlainTextResponse(prearchive_uri(outcome.session or "") + "\n")
