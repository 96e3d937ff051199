"""The prearchive in the browser: the list, a session, its pictures and its actions.

Names in URLs are looked up in the index (a session by project, timestamp and label;
a file by its scan and name among the session's rows); no path from a URL reaches
the file system.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from xnatd.api.auth import Principal, Right
from xnatd.api.deps import NOT_FOUND, Services, Svc, require
from xnatd.api.prearchive_api import archive_uri
from xnatd.api.ui import pictures
from xnatd.api.ui.header_table import header_rows
from xnatd.api.ui.web import Viewer, checked_form, file_row, page, picture
from xnatd.archive.policy import OVERWRITE_MODES
from xnatd.operations import Refused
from xnatd.phi.clean import Region
from xnatd.store.index.records import Finding, InstanceRecord, PrearchiveSession, Status
from xnatd.store.layout import PrearchiveName

router = APIRouter(include_in_schema=False)
STRIP = 50  # images per page of a scan's strip


@dataclass(frozen=True)
class ScanView:
    """One scan of a session page: its description, modality and files."""

    scan: str
    description: str
    modality: str
    files: list[InstanceRecord]  # ordered by instance number

    @property
    def middle(self) -> InstanceRecord:
        """The scan's middle file, whose picture stands for the scan."""
        return self.files[(len(self.files) - 1) // 2]


def _number(text: str) -> tuple[int, str]:
    try:
        return (int(text), text)
    except ValueError:
        return (1 << 30, text)


def scans_of(records: list[InstanceRecord], descriptions: dict[str, str]) -> list[ScanView]:
    """The session's scans in scan-number order, each with its files in instance order."""
    by_scan: dict[str, list[InstanceRecord]] = {}
    for record in records:
        by_scan.setdefault(record.scan, []).append(record)
    return [
        ScanView(
            scan,
            descriptions.get(scan, ""),
            files[0].modality or "",
            sorted(files, key=lambda r: (_number(r.instance_number), r.file_name)),
        )
        for scan, files in sorted(by_scan.items(), key=lambda item: _number(item[0]))
    ]


def _session(
    svc: Services, principal: Principal, project: str, timestamp: str, label: str, right: Right
) -> PrearchiveSession:
    """The session, if the viewer may see it (else the API's 404) and do ``right`` (403)."""
    require(principal, project, right, to_see=Right.READ_ALL)
    session = svc.store.index.get_session(PrearchiveName(project, timestamp, label))
    if session is None:
        raise HTTPException(404, NOT_FOUND)
    return session


def _record(svc: Services, session: PrearchiveSession, scan: str, file: str) -> InstanceRecord:
    """The index row of one file, looked up by scan and name (never a path from the URL)."""
    key = ("prearchive", id(svc.store.index), session.id, session.files, session.last_modified)
    return file_row(key, lambda: svc.store.index.instances(session.id), scan, file)


def _descriptions(svc: Services, session: PrearchiveSession, scans: list[ScanView]) -> None:
    """Series descriptions are read from each scan's middle file (not in the index)."""
    from xnatd.dicom import Tag

    for position, view in enumerate(scans):
        try:
            header = svc.store.prearchive.read_instance_header(
                session, view.middle, frozenset({Tag.SeriesDescription})
            )
        except Exception:
            continue
        text = header.get(Tag.SeriesDescription) or ""
        scans[position] = ScanView(view.scan, text, view.modality, view.files)


@router.get("/ui/prearchive", response_class=HTMLResponse)
def prearchive_list(
    request: Request,
    project: str = "",
    status: str = "",
    principal: Principal = Viewer,
    svc: Services = Svc,
) -> HTMLResponse:
    """Every prearchive session the viewer may see, filtered by project and status."""
    visible = principal.projects_with(Right.READ_ALL)
    if project and visible is not None and project not in visible:
        raise HTTPException(404, NOT_FOUND)
    sessions = svc.store.index.list_sessions(project=project or None)
    rows = [
        (
            session,
            len(svc.store.prearchive.findings(session)),
            svc.store.prearchive.senders(session),
        )
        for session in sessions
        if (visible is None or session.project in visible)
        and (not status or session.status.value == status)
    ]
    projects = sorted(visible) if visible is not None else sorted(svc.config().projects)
    return page(
        request,
        "prearchive.html",
        principal,
        rows=rows,
        projects=projects,
        statuses=[s.value for s in Status],
        project=project,
        status=status,
        receiving=any(s.status is Status.RECEIVING for s, _, _ in rows),
    )


@router.get("/ui/prearchive/{project}/{timestamp}/{label}", response_class=HTMLResponse)
def session_page(
    request: Request,
    project: str,
    timestamp: str,
    label: str,
    scan: str = "",
    file: str = "",
    start: int = 0,
    principal: Principal = Viewer,
    svc: Services = Svc,
) -> HTMLResponse:
    """Scans with pictures, a strip of one scan, a file's header, findings, actions."""
    session = _session(svc, principal, project, timestamp, label, Right.READ_ALL)
    records = svc.store.index.instances(session.id)
    scans = scans_of(records, {})
    _descriptions(svc, session, scans)
    findings = svc.store.prearchive.findings(session)
    chosen = next((s for s in scans if s.scan == scan), scans[0] if scans else None)
    start = max(0, start)
    strip = chosen.files[start : start + STRIP] if chosen else []
    shown = None
    if chosen is not None:
        shown = next((r for r in chosen.files if r.file_name == file), chosen.middle)
    rows = []
    if shown is not None:
        flagged = {f.where for f in findings if f.kind == "header" and f.file == shown.file_name}
        try:
            rows = header_rows(svc.store.prearchive.instance_file(session, shown), flagged)
        except Exception:
            rows = []
    base = f"/ui/prearchive/{session.name}"
    return page(
        request,
        "session.html",
        principal,
        session=session,
        base=base,
        scans=scans,
        chosen=chosen,
        strip=strip,
        start=start,
        step=STRIP,
        shown=shown,
        header=rows,
        findings=findings,
        boxed_files={(f.scan, f.file) for f in findings if f.kind == "pixels"},
        events=svc.store.audit.events(str(session.name)),
        senders=sorted({r.calling_ae for r in records if r.calling_ae}),
        may_manage=principal.may(session.project, Right.MANAGE),
        may_rebuild=principal.may(session.project, Right.UPLOAD),
        targets=sorted(p for p in svc.config().projects if principal.may(p, Right.UPLOAD)),
        modes=OVERWRITE_MODES,
    )


def _boxes(findings: list[Finding], record: InstanceRecord) -> list[Region]:
    regions = [
        Region.parse_where(f.where)
        for f in findings
        if f.kind == "pixels" and f.scan == record.scan and f.file == record.file_name
    ]
    return [r for r in regions if r is not None]


@router.get("/ui/prearchive/{project}/{timestamp}/{label}/picture/{scan}/{file}")
def session_picture(
    project: str,
    timestamp: str,
    label: str,
    scan: str,
    file: str,
    frame: int | None = None,
    size: str = "full",
    principal: Principal = Viewer,
    svc: Services = Svc,
) -> Response:
    """A file's picture, pixel findings boxed; ``size=thumb`` for the strip."""
    session = _session(svc, principal, project, timestamp, label, Right.READ_ALL)
    record = _record(svc, session, scan, file)
    boxes = _boxes(svc.store.prearchive.findings(session), record)
    if frame is None and boxes:
        frame = boxes[0].frame  # the frame a finding is on, boxes visible
    side = pictures.THUMB_SIDE if size == "thumb" else pictures.MAX_SIDE
    source = svc.store.prearchive.instance_file(session, record)
    return picture(svc, source, frame=frame, boxes=boxes, side=side)


ACTIONS = {
    "archive": "Archive",
    "move": "Move to another project",
    "rebuild": "Rebuild",
    "delete": "Delete",
    "clean": "Clean the pixels (every pixel finding)",
}


@router.post("/ui/prearchive/{project}/{timestamp}/{label}/action", response_model=None)
async def session_action(
    request: Request,
    project: str,
    timestamp: str,
    label: str,
    principal: Principal = Viewer,
    svc: Services = Svc,
) -> Response:
    """First a confirmation page; with ``confirmed=yes``, the operation the CLI calls."""
    form = await checked_form(request)
    action = form.get("action", "")
    if action not in ACTIONS:
        raise HTTPException(400, f"unknown action {action!r}")
    right = Right.UPLOAD if action == "rebuild" else Right.MANAGE
    session = _session(svc, principal, project, timestamp, label, right)
    overwrite = form.get("overwrite") or "none"
    if overwrite not in OVERWRITE_MODES:
        raise HTTPException(400, f"overwrite must be one of {', '.join(OVERWRITE_MODES)}")
    accept = form.get("accept") == "yes"
    target = form.get("project_to", "")
    if action == "move":
        if not target:
            raise HTTPException(400, "choose the project to move it to")
        require(principal, target, Right.UPLOAD)
    base = f"/ui/prearchive/{session.name}"
    if form.get("confirmed") != "yes":
        return page(
            request,
            "confirm.html",
            principal,
            session=session,
            base=base,
            action=action,
            title=ACTIONS[action],
            fields={
                "overwrite": overwrite,
                "accept": "yes" if accept else "",
                "project_to": target,
            },
            findings=len(svc.store.prearchive.findings(session)),
        )
    actor = f"http:{principal.name}"
    name = session.name
    try:
        message, link = await run_in_threadpool(
            _perform, svc, name, action, overwrite, accept, target, actor
        )
    except Refused as exc:
        message, link = f"Refused: {exc}", base
    return page(request, "done.html", principal, message=message, link=link or base)


def _perform(
    svc: Services,
    name: PrearchiveName,
    action: str,
    overwrite: str,
    accept: bool,
    target: str,
    actor: str,
) -> tuple[str, str]:
    """The operation, as ``xnatd prearchive``/the API call it; what to say and link to."""
    if action == "archive":
        outcome = svc.operations.archive(name, overwrite, actor, accept_findings=accept)
        if outcome.result in ("conflict", "error", "held"):
            return f"{outcome.result.upper()}: {outcome.reason}", f"/ui/prearchive/{name}"
        uri = archive_uri(svc, outcome.session_id)
        return f"Archived as {uri}", f"/ui/archive/{outcome.session_id}"
    if action == "move":
        moved = svc.operations.move(name, target, actor)
        return f"Moved to {moved}", f"/ui/prearchive/{moved}"
    if action == "rebuild":
        status = svc.operations.rebuild(name, actor)
        return f"Rebuilt: {status.value if status else 'gone'}", f"/ui/prearchive/{name}"
    if action == "delete":
        svc.operations.delete(name, actor)
        return f"Deleted {name}", "/ui/prearchive"
    files, status = svc.operations.clean_pixels(name, None, actor)
    state = status.value if status else "gone"
    return f"Cleaned {files} file(s); the session is {state}", f"/ui/prearchive/{name}"
