"""The archive in the browser: projects, subjects and sessions with their status, a
session's scans and pictures, release, delete and the zip download.

Visibility is the API's (``experiments.visible``): collaborators see active sessions
only, deleted ones are for admins; anything else is the same 404.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from xnatd.api import experiments
from xnatd.api.auth import Principal, Right
from xnatd.api.deps import NOT_FOUND, Services, Svc, require
from xnatd.api.ui import pictures
from xnatd.api.ui.prearchive_pages import STRIP, scans_of
from xnatd.api.ui.web import Viewer, checked_form, file_row, page, picture
from xnatd.operations import Refused
from xnatd.store.index.records import ArchivedSession, ArchiveStatus, SessionFilter

router = APIRouter(include_in_schema=False)


def _experiment(svc: Services, principal: Principal, session_id: str) -> ArchivedSession:
    session = svc.store.index.get_archived(session_id)
    if session is None or not experiments.visible(principal, session):
        raise HTTPException(404, NOT_FOUND)
    return session


@router.get("/ui/archive", response_class=HTMLResponse)
def archive_list(
    request: Request, project: str = "", principal: Principal = Viewer, svc: Services = Svc
) -> HTMLResponse:
    """The projects the viewer reads; a chosen project's subjects and sessions."""
    readable = principal.projects_with(Right.READ)
    projects = sorted(readable) if readable is not None else sorted(svc.config().projects)
    sessions: list[ArchivedSession] = []
    if project:
        require(principal, project, Right.READ)
        statuses = tuple(ArchiveStatus) if principal.admin else (
            ArchiveStatus.ACTIVE, ArchiveStatus.QUARANTINE)  # fmt: skip
        found = svc.store.index.list_archived(SessionFilter(project=project, statuses=statuses))
        sessions = [s for s in found if experiments.visible(principal, s)]
    by_subject: dict[str, list[ArchivedSession]] = {}
    for session in sorted(sessions, key=lambda s: (s.subject, s.label)):
        by_subject.setdefault(session.subject, []).append(session)
    return page(
        request, "archive.html", principal, projects=projects, project=project, subjects=by_subject
    )


@router.get("/ui/archive/{session_id}", response_class=HTMLResponse)
def experiment_page(
    request: Request,
    session_id: str,
    scan: str = "",
    start: int = 0,
    principal: Principal = Viewer,
    svc: Services = Svc,
) -> HTMLResponse:
    """An archived session's page: its scans, and pictures of the chosen one."""
    session = _experiment(svc, principal, session_id)
    descriptions = {
        s.scan: s.series_description or "" for s in svc.store.index.archived_scans(session.id)
    }
    scans = scans_of(svc.store.index.archived_instances(session.id), descriptions)
    chosen = next((s for s in scans if s.scan == scan), scans[0] if scans else None)
    start = max(0, start)
    return page(
        request,
        "experiment.html",
        principal,
        session=session,
        base=f"/ui/archive/{session.id}",
        scans=scans,
        chosen=chosen,
        strip=chosen.files[start : start + STRIP] if chosen else [],
        start=start,
        step=STRIP,
        may_manage=principal.may(session.project, Right.MANAGE),
        events=svc.store.audit.events(session.id),
    )


@router.get("/ui/archive/{session_id}/picture/{scan}/{file}")
def experiment_picture(
    session_id: str,
    scan: str,
    file: str,
    size: str = "full",
    principal: Principal = Viewer,
    svc: Services = Svc,
) -> Response:
    """A picture of an archived file (``size=thumb`` for a thumbnail)."""
    session = _experiment(svc, principal, session_id)
    key = ("archive", id(svc.store.index), session.id, session.files, session.modified)
    record = file_row(key, lambda: svc.store.index.archived_instances(session.id), scan, file)
    source = svc.store.archive.instance_path(svc.store.archive.folder(session), record)
    side = pictures.THUMB_SIDE if size == "thumb" else pictures.MAX_SIDE
    return picture(svc, source, frame=None, boxes=[], side=side)


@router.get("/ui/archive/{session_id}/download")
def experiment_download(
    session_id: str, principal: Principal = Viewer, svc: Services = Svc
) -> StreamingResponse:
    """Every scan as a zip: the API's download, with the page's viewer."""
    return experiments.download(session_id, "ALL", "zip", principal, svc)


@router.post("/ui/archive/{session_id}/action", response_model=None)
async def experiment_action(
    request: Request, session_id: str, principal: Principal = Viewer, svc: Services = Svc
) -> Response:
    """Release or delete (owners), after a confirmation page."""
    form = await checked_form(request)
    action = form.get("action", "")
    if action not in ("release", "delete"):
        raise HTTPException(400, f"unknown action {action!r}")
    session = _experiment(svc, principal, session_id)
    require(principal, session.project, Right.MANAGE)
    purge = form.get("purge") == "yes"
    base = f"/ui/archive/{session.id}"
    if form.get("confirmed") != "yes":
        return page(
            request,
            "confirm_archive.html",
            principal,
            session=session,
            base=base,
            action=action,
            purge=purge,
        )
    actor = f"http:{principal.name}"
    try:
        if action == "release":
            changed = await run_in_threadpool(svc.operations.release, session.id, actor)
        else:
            changed = await run_in_threadpool(
                lambda: svc.operations.delete_archived(session.id, purge=purge, actor=actor)
            )
        message = f"{changed.id} is now {changed.status.value}"
    except Refused as exc:
        message = f"Refused: {exc}"
    return page(request, "done.html", principal, message=message, link=base)
