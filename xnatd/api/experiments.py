"""XNAT's experiment resources: list, document, download, release and delete.

``GET /data/projects/P/experiments`` (``ResultSet.Result``), ``GET
/data/experiments/ID?format=xml|json``, ``GET
/data/experiments/ID/scans/ALL|1,2/files?format=zip`` (streamed), ``POST
/data/experiments/ID?action=release`` and ``DELETE /data/experiments/ID``
(``removeFiles=true`` purges). Quarantined sessions are invisible to collaborators;
deleted ones to everyone but admins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse

from xnatd.api.auth import Principal, Right
from xnatd.api.deps import NOT_FOUND, Caller, Services, Svc, require
from xnatd.api.zipstream import stream_zip
from xnatd.operations import Refused
from xnatd.rows import archived_row
from xnatd.store.index.records import ArchivedSession, ArchiveStatus, SessionFilter
from xnatd.units import iso

router = APIRouter(tags=["experiments"])


def _needed_to_see(session: ArchivedSession) -> Right:
    return Right.READ if session.status is ArchiveStatus.ACTIVE else Right.READ_ALL


def visible(principal: Principal, session: ArchivedSession) -> bool:
    """Whether the caller may see an archived session (deleted ones: admins only)."""
    if session.status is ArchiveStatus.DELETED and not principal.admin:
        return False
    return principal.may(session.project, _needed_to_see(session))


def _experiment(svc: Services, principal: Principal, session_id: str) -> ArchivedSession:
    session = svc.store.index.get_archived(session_id)
    if session is None or not visible(principal, session):
        raise HTTPException(404, NOT_FOUND)
    return session


def xnat_row(session: ArchivedSession) -> dict[str, object]:
    """XNAT's experiment listing columns, then a few of ours."""
    return {
        "ID": session.id,
        "project": session.project,
        "date": session.date or "",
        "xsiType": f"xnat:{session.xsi_type}",
        "label": session.label,
        "insert_date": iso(session.archived),
        "URI": f"/data/experiments/{session.id}",
        "subject_ID": session.subject_id,
        "subject_label": session.subject,
        "modality": session.modality or "",
        "status": session.status.value,
    }


@router.get("/data/projects/{project}/experiments")
def list_experiments(
    project: str,
    format: Literal["json"] = "json",
    principal: Principal = Caller,
    svc: Services = Svc,
) -> JSONResponse:
    """XNAT's experiment listing of a project: its active and quarantined sessions the
    caller may see.
    """
    require(principal, project, Right.READ)
    statuses = (ArchiveStatus.ACTIVE, ArchiveStatus.QUARANTINE)
    sessions = svc.store.index.list_archived(SessionFilter(project=project, statuses=statuses))
    rows = [xnat_row(s) for s in sessions if visible(principal, s)]
    return JSONResponse({"ResultSet": {"Result": rows, "totalRecords": str(len(rows))}})


@router.get("/data/experiments/{session_id}", response_model=None)
def get_experiment(
    session_id: str,
    format: Literal["xml", "json"] = "xml",
    principal: Principal = Caller,
    svc: Services = Svc,
) -> FileResponse | JSONResponse:
    """An archived session: its session document (XML), or its row and scans (JSON)."""
    session = _experiment(svc, principal, session_id)
    if format == "json":
        row = archived_row(session, svc.store)
        row.pop("path")
        return JSONResponse(
            {**row, "scan_list": [s.__dict__ for s in svc.store.index.archived_scans(session.id)]}
        )
    document = svc.store.archive.folder(session) / f"{session.label}.xml"
    if not document.is_file():
        raise HTTPException(404, "the session document is missing (purged?)")
    return FileResponse(document, media_type="application/xml")


@router.get("/data/experiments/{session_id}/scans/{scans}/files")
def download(
    session_id: str,
    scans: str,
    format: Literal["zip"] = "zip",
    principal: Principal = Caller,
    svc: Services = Svc,
) -> StreamingResponse:
    """The scans' DICOM files as a zip, streamed; ``ALL`` or a comma-separated list."""
    session = _experiment(svc, principal, session_id)
    wanted = None if scans.upper() == "ALL" else set(scans.split(","))
    folder = svc.store.archive.folder(session)
    records = [
        r
        for r in svc.store.index.archived_instances(session.id)
        if wanted is None or r.scan in wanted
    ]
    if not records:
        raise HTTPException(404, f"no files in scans {scans}")
    entries = [
        (
            f"{session.label}/scans/{r.scan}/resources/DICOM/files/{r.file_name}",
            svc.store.archive.instance_path(folder, r),
        )
        for r in sorted(records, key=lambda r: (len(r.scan), r.scan, r.file_name))
    ]
    missing = [str(path) for _, path in entries if not path.is_file()]
    if missing:
        raise HTTPException(404, f"{len(missing)} files are missing (purged?)")
    return StreamingResponse(
        stream_zip(entries),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{session.label}.zip"'},
    )


def _manage(
    svc: Services,
    principal: Principal,
    session_id: str,
    operation: Callable[[str, str], ArchivedSession],
) -> PlainTextResponse:
    """An owner's change to an archived session: the new status, or 409 when refused."""
    session = _experiment(svc, principal, session_id)
    require(principal, session.project, Right.MANAGE)
    try:
        changed = operation(session.id, f"http:{principal.name}")
    except Refused as exc:
        raise HTTPException(409, str(exc)) from None
    return PlainTextResponse(f"{changed.id} {changed.status.value}\n")


@router.post("/data/experiments/{session_id}")
def change(
    session_id: str,
    action: Literal["release"],
    principal: Principal = Caller,
    svc: Services = Svc,
) -> PlainTextResponse:
    """``action=release`` takes a session out of quarantine (owners)."""
    return _manage(svc, principal, session_id, svc.operations.release)


@router.delete("/data/experiments/{session_id}")
def delete(
    session_id: str,
    removeFiles: Annotated[bool, Query()] = False,
    principal: Principal = Caller,
    svc: Services = Svc,
) -> PlainTextResponse:
    """Soft delete (owners); ``removeFiles=true`` moves the files to ``deleted/``."""

    def delete_archived(session: str, actor: str) -> ArchivedSession:
        return svc.operations.delete_archived(session, purge=removeFiles, actor=actor)

    return _manage(svc, principal, session_id, delete_archived)
