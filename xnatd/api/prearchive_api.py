"""XNAT's prearchive resources and the archive service (reference 4.1, 4.3).

``GET /data/prearchive/projects[/P]``, ``GET|POST|DELETE
/data/prearchive/projects/P/TS/LABEL`` (``action=build|commit|move``) and
``POST /data/services/archive?src=/prearchive/projects/P/TS/LABEL``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from xnatd.api.auth import Principal, Right
from xnatd.api.deps import Caller, Services, Svc, require
from xnatd.archive.policy import OVERWRITE_MODES
from xnatd.operations import Refused
from xnatd.rows import finding_row, prearchive_row
from xnatd.store.index.records import PrearchiveSession
from xnatd.store.layout import PrearchiveName
from xnatd.units import iso

router = APIRouter(tags=["prearchive"])


def prearchive_uri(name: PrearchiveName | str) -> str:
    """XNAT's URI of a prearchive session: ``/prearchive/projects/P/TS/LABEL``."""
    return f"/prearchive/projects/{name}"


def archive_uri(svc: Services, session_id: str | None) -> str:
    """XNAT's URI of an archived session (empty when there is none):
    ``/archive/projects/P/subjects/S/experiments/LABEL``.
    """
    archived = svc.store.index.get_archived(session_id) if session_id else None
    if archived is None:
        return ""
    return (
        f"/archive/projects/{archived.project}/subjects/{archived.subject}"
        f"/experiments/{archived.label}"
    )


def xnat_row(session: PrearchiveSession) -> dict[str, object]:
    """Our prearchive row with XNAT's listing fields (``xdat_search.prearchive``) over it."""
    return {
        **prearchive_row(session),
        "project": session.project,
        "timestamp": session.timestamp,
        "lastmod": iso(session.last_modified),
        "uploaded": iso(session.created),
        "subject": session.subject,
        "folderName": session.label,
        "name": session.label,
        "tag": session.study_uid,
        "status": session.status.value,
        "url": prearchive_uri(session.name),
        "autoarchive": session.auto_archive,
        "SOURCE": session.source,
    }


def _result_set(rows: list[dict[str, object]]) -> JSONResponse:
    return JSONResponse({"ResultSet": {"Result": rows, "totalRecords": str(len(rows))}})


def _session(svc: Services, principal: Principal, name: PrearchiveName, right: Right):
    require(principal, name.project, right, to_see=Right.READ_ALL)
    session = svc.store.index.get_session(name)
    if session is None:
        raise HTTPException(404, "not found")
    return session


@router.get("/data/prearchive/projects")
def list_all(principal: Principal = Caller, svc: Services = Svc) -> JSONResponse:
    """Every prearchive session the caller may see (admins: Unassigned too)."""
    visible = principal.projects_with(Right.READ_ALL)
    sessions = svc.store.index.list_sessions()
    rows = [xnat_row(s) for s in sessions if visible is None or s.project in visible]
    return _result_set(rows)


@router.get("/data/prearchive/projects/{project}")
def list_project(project: str, principal: Principal = Caller, svc: Services = Svc) -> JSONResponse:
    """The prearchive sessions of one project."""
    require(principal, project, Right.READ_ALL, to_see=Right.READ_ALL)
    return _result_set([xnat_row(s) for s in svc.store.index.list_sessions(project=project)])


@router.get("/data/prearchive/projects/{project}/{timestamp}/{label}")
def show(
    project: str, timestamp: str, label: str, principal: Principal = Caller, svc: Services = Svc
) -> JSONResponse:
    """One prearchive session, with the PHI check's findings."""
    name = PrearchiveName(project, timestamp, label)
    session = _session(svc, principal, name, Right.READ_ALL)
    findings = [finding_row(f) for f in svc.store.prearchive.findings(session)]
    return JSONResponse({**xnat_row(session), "findings": findings})


@router.post("/data/prearchive/projects/{project}/{timestamp}/{label}")
def act(
    project: str,
    timestamp: str,
    label: str,
    action: Literal["build", "commit", "move"],
    newProject: Annotated[str | None, Query()] = None,
    principal: Principal = Caller,
    svc: Services = Svc,
) -> PlainTextResponse:
    """``build`` rebuilds now (members); ``commit`` builds, then the project's policy
    decides (owners); ``move`` needs ``newProject`` (owner here, uploader there)."""
    name = PrearchiveName(project, timestamp, label)
    right = Right.UPLOAD if action == "build" else Right.MANAGE
    _session(svc, principal, name, right)
    actor = f"http:{principal.name}"
    try:
        if action == "move":
            if not newProject:
                raise HTTPException(400, "action=move needs newProject")
            require(principal, newProject, Right.UPLOAD)
            return PlainTextResponse(
                prearchive_uri(svc.operations.move(name, newProject, actor)) + "\n"
            )
        if action == "build":
            svc.operations.rebuild(name, actor)
        elif archived := svc.operations.commit(name, actor):
            return PlainTextResponse(archive_uri(svc, archived) + "\n")
    except Refused as exc:
        raise HTTPException(409, str(exc)) from None
    return PlainTextResponse(prearchive_uri(name) + "\n")


@router.delete("/data/prearchive/projects/{project}/{timestamp}/{label}")
def delete(
    project: str, timestamp: str, label: str, principal: Principal = Caller, svc: Services = Svc
) -> PlainTextResponse:
    """Delete a prearchive session (its files kept under ``deleted/``); 409 when refused."""
    name = PrearchiveName(project, timestamp, label)
    _session(svc, principal, name, Right.MANAGE)
    try:
        svc.operations.delete(name, f"http:{principal.name}")
    except Refused as exc:
        raise HTTPException(409, str(exc)) from None
    return PlainTextResponse(f"deleted {prearchive_uri(name)}\n")


@router.post("/data/services/archive", tags=["archive"])
def archive(
    src: str,
    overwrite: Annotated[str, Query(description=", ".join(OVERWRITE_MODES))] = "none",
    acceptFindings: Annotated[
        bool, Query(description="archive a HELD session, accepting its PHI findings (owners)")
    ] = False,
    principal: Principal = Caller,
    svc: Services = Svc,
) -> PlainTextResponse:
    """Archive a prearchive session; answers with its archive URI (409 on CONFLICT, or
    when it is HELD and acceptFindings is not given)."""
    text = src.removeprefix("/data").removeprefix("/prearchive/projects/")
    try:
        name = PrearchiveName.parse(text)
    except ValueError:
        raise HTTPException(400, f"src={src!r} is not /prearchive/projects/P/TS/LABEL") from None
    if overwrite not in OVERWRITE_MODES:
        raise HTTPException(400, f"overwrite must be one of {', '.join(OVERWRITE_MODES)}")
    _session(svc, principal, name, Right.MANAGE)
    try:
        outcome = svc.operations.archive(
            name, overwrite, f"http:{principal.name}", accept_findings=acceptFindings
        )
    except Refused as exc:
        raise HTTPException(409, str(exc)) from None
    if outcome.result == "conflict":
        raise HTTPException(409, f"CONFLICT: {outcome.reason}")
    if outcome.result in ("error", "held"):
        raise HTTPException(409, f"{outcome.result.upper()}: {outcome.reason}")
    return PlainTextResponse(archive_uri(svc, outcome.session_id) + "\n")
