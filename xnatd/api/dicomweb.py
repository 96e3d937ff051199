"""DICOMweb STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies[/{study}]``.

The body is ``multipart/related; type="application/dicom"``, parsed as it arrives
(python-multipart); each part goes through the same intake as a C-STORE. Headers
route each instance as they would from a scanner, limited to the projects the user
may upload to; ``/dicomweb/projects/P/studies`` puts every instance in project P.
Answers with the Store Instances Response (application/dicom+json): 200 when all
were stored, 202 when some failed, 409 when none was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from xnatd.api.auth import Principal, Right
from xnatd.api.deps import Caller, Services, Svc, require
from xnatd.dicom import Tag, UnparsableDicom, read_header
from xnatd.intake.intake import Received, Result
from xnatd.routing import Explicit

router = APIRouter(tags=["dicomweb"])

# Failure Reason (0008,1197) values, PS3.18 table 10.5.3-1 / PS3.4 C-STORE statuses.
FAILURE = {
    Result.REJECTED: 0xC000,  # cannot understand
    Result.MISMATCHED: 0xA900,  # data set does not match SOP class (C-STORE only)
    Result.REFUSED: 0xA700,  # out of resources
    Result.NOT_PERMITTED: 0x0124,  # not authorized
}
STUDY_MISMATCH = 0xA900  # the instance's Study UID is not the one in the URL
_BODY = {
    "content": {
        'multipart/related; type="application/dicom"': {
            "schema": {"type": "string", "format": "binary"}
        }
    }
}


class _Parts:
    """Collects each part's bytes and its Content-Type as the body streams in."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, bytes]] = []
        self._data = bytearray()
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_part_data": lambda data, start, end: self._data.extend(data[start:end]),
            "on_part_end": self._end,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
        }

    def _begin(self) -> None:
        self._data, self._headers = bytearray(), {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field, self._value = bytearray(), bytearray()

    def _end(self) -> None:
        content_type = self._headers.get("content-type", "application/dicom")
        self.parts.append((content_type.split(";")[0].strip().lower(), bytes(self._data)))


def part10(data: bytes) -> bytes:
    """The part as a Part 10 file: some clients (pydicom-based ones among them) send
    the meta group without the 128-byte preamble and ``DICM``; put them back."""
    if data[128:132] != b"DICM" and data[:2] == b"\x02\x00":
        return bytes(128) + b"DICM" + data
    return data


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


async def _read_parts(request: Request) -> list[tuple[str, bytes]]:
    media, options = parse_options_header(request.headers.get("content-type", ""))
    if media != b"multipart/related" or b"boundary" not in options:
        raise HTTPException(415, 'STOW-RS takes multipart/related; type="application/dicom"')
    kind = options.get(b"type", b"application/dicom").lower()
    if kind != b"application/dicom":
        raise HTTPException(415, f"only application/dicom parts are accepted, not {kind.decode()}")
    collected = _Parts()
    parser = MultipartParser(options[b"boundary"], cast(Any, collected.callbacks()))
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except Exception as exc:  # python-multipart's errors have no common base worth naming
        raise HTTPException(400, f"the multipart body cannot be read: {exc}") from None
    return collected.parts


def _store_all(
    svc: Services,
    principal: Principal,
    parts: list[tuple[str, bytes]],
    study: str | None,
    project: str | None,
    base_url: str,
) -> JSONResponse:
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    allowed = principal.projects_with(Right.UPLOAD)
    for content_type, raw in parts:
        data = part10(raw)
        try:
            header = read_header(data, {Tag.SOPClassUID, Tag.SOPInstanceUID, Tag.StudyInstanceUID})
        except UnparsableDicom:
            header = {}
        reference = {
            "00081150": _element("UI", *filter(None, [header.get(Tag.SOPClassUID)])),
            "00081155": _element("UI", *filter(None, [header.get(Tag.SOPInstanceUID)])),
        }
        if content_type != "application/dicom":
            failed.append({**reference, "00081197": _element("US", 0xC000)})
            continue
        if study is not None and header.get(Tag.StudyInstanceUID) not in (None, study):
            failed.append({**reference, "00081197": _element("US", STUDY_MISMATCH)})
            continue
        outcome = svc.intake.receive(
            Received(data, source="stow", explicit=Explicit(project), projects=allowed)
        )
        if outcome.result in (Result.STORED, Result.DROPPED):
            stored.append(reference)
        else:
            failed.append({**reference, "00081197": _element("US", FAILURE[outcome.result])})
    body: dict[str, Any] = {}
    if study:
        body["00081190"] = _element("UR", f"{base_url}/studies/{study}")
    if stored:
        body["00081199"] = _element("SQ", *stored)
    if failed:
        body["00081198"] = _element("SQ", *failed)
    status = 200 if not failed else 202 if stored else 409
    return JSONResponse(body, status_code=status, media_type="application/dicom+json")


async def _stow(
    request: Request, svc: Services, principal: Principal, study: str | None, project: str | None
) -> JSONResponse:
    """Read the body as it streams, then store each part off the event loop."""
    parts = await _read_parts(request)
    base = str(request.base_url).rstrip("/") + "/dicomweb"
    if project is not None:
        base += f"/projects/{project}"
    return await run_in_threadpool(_store_all, svc, principal, parts, study, project, base)


@router.post("/dicomweb/studies", openapi_extra={"requestBody": _BODY})
async def stow(
    request: Request, principal: Principal = Caller, svc: Services = Svc
) -> JSONResponse:
    """STOW-RS: store each part of a multipart request, routed as a C-STORE is."""
    return await _stow(request, svc, principal, None, None)


@router.post("/dicomweb/studies/{study}", openapi_extra={"requestBody": _BODY})
async def stow_study(
    study: str, request: Request, principal: Principal = Caller, svc: Services = Svc
) -> JSONResponse:
    """STOW-RS to one study: a part of another study fails (0xA900)."""
    return await _stow(request, svc, principal, study, None)


@router.post("/dicomweb/projects/{project}/studies", openapi_extra={"requestBody": _BODY})
async def stow_project(
    project: str, request: Request, principal: Principal = Caller, svc: Services = Svc
) -> JSONResponse:
    """STOW-RS into one project (``UPLOAD`` there needed), whatever the headers say."""
    require(principal, project, Right.UPLOAD)
    return await _stow(request, svc, principal, None, project)
