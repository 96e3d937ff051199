"""Upload in the browser: a zip, a tar or a folder, each file sent with its own
progress, then imported all or nothing through the importer ``xnatd import`` uses.

The page sends each chosen file to ``/ui/upload/BATCH/file?path=RELATIVE`` (the
browser's progress events give per-file and total progress), then asks for
``/ui/upload/BATCH/import``: one file is imported as it is (a zip or tar), several
(a folder) as the folder they make.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from xnatd.api.auth import Principal, Right
from xnatd.api.deps import Services, Svc, require
from xnatd.api.ui.web import Viewer, check_csrf_header, checked_form, page
from xnatd.intake.importer import STAGING, ImportFailed, ImportRequest
from xnatd.store.layout import UnsafePath, inside

router = APIRouter(include_in_schema=False)
_BATCH = re.compile(r"^[0-9a-f]{32}$")
CHUNK = 1 << 20
ABANDONED_AFTER = 24 * 3600.0  # a batch untouched this long was left by a closed page


def _batch_dir(svc: Services, batch: str) -> Path:
    if not _BATCH.match(batch):
        raise HTTPException(400, "the upload batch is not 32 hexadecimal digits")
    return svc.store.data.root / STAGING / f"ui-{batch}"


def _uploader(principal: Principal, svc: Services) -> list[str]:
    """The projects the viewer may upload to."""
    projects = principal.projects_with(Right.UPLOAD)
    every = sorted(svc.config().projects)
    return every if projects is None else [p for p in every if p in projects]


def sweep_abandoned(svc: Services, now: float | None = None) -> list[Path]:
    """Remove the batches of pages closed before importing (nothing else removes them)."""
    cutoff = (time.time() if now is None else now) - ABANDONED_AFTER
    removed = []
    for folder in (svc.store.data.root / STAGING).glob("ui-*"):
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:
            continue
    return removed


@router.get("/ui/upload", response_class=HTMLResponse)
def upload_page(request: Request, principal: Principal = Viewer, svc: Services = Svc):
    """The upload page, for the projects the viewer may upload to."""
    sweep_abandoned(svc)
    return page(request, "upload.html", principal, projects=_uploader(principal, svc))


@router.post("/ui/upload/{batch}/file")
async def upload_file(
    request: Request, batch: str, path: str, principal: Principal = Viewer, svc: Services = Svc
) -> JSONResponse:
    """One file of a batch, stored under its relative path (checked part by part)."""
    check_csrf_header(request)
    if not _uploader(principal, svc):
        raise HTTPException(403, "you may not upload to any project")
    folder = _batch_dir(svc, batch) / "files"
    try:
        target = inside(folder, *path.split("/"))
    except UnsafePath as exc:
        raise HTTPException(400, f"file path {path!r}: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with target.open("wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
            size += len(chunk)
    return JSONResponse({"path": path, "bytes": size})


@router.post("/ui/upload/{batch}/import")
async def upload_import(
    request: Request, batch: str, principal: Principal = Viewer, svc: Services = Svc
) -> JSONResponse:
    """Import the batch into a project; the importer's summary, or its error (400)."""
    form = await checked_form(request)
    project = form.get("project", "")
    require(principal, project, Right.UPLOAD)
    folder = _batch_dir(svc, batch)
    try:
        files = [p for p in (folder / "files").rglob("*") if p.is_file()]
        if not files:
            raise HTTPException(400, "nothing was uploaded")
        source = files[0] if len(files) == 1 else folder / "files"
        request_ = ImportRequest(path=source, project=project, actor=f"http:{principal.name}")
        try:
            summary = await run_in_threadpool(svc.importer.run, request_, quiet=True)
        except ImportFailed as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return JSONResponse(
        {
            "created": summary.sessions_created,
            "merged": summary.sessions_merged,
            "archived": summary.archived,
            "files": summary.files,
            "skipped": summary.skipped,
        }
    )
