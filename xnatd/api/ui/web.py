"""What every review page shares: templates, the signed-in viewer, CSRF and pictures.

Pages are views over the same calls as the API (STYLE 15): a route checks the same
roles with the same 404, calls the same operation, and gives a template only what
to show. Templates are autoescaped: a header value is always text.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from xnatd.api.auth import Principal
from xnatd.api.deps import NOT_FOUND, Services
from xnatd.api.ui import pictures
from xnatd.api.ui.signin import COOKIE, Signer
from xnatd.phi.clean import Region
from xnatd.store.index.records import InstanceRecord

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every value is text unless a template says otherwise (none does)
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["when"] = lambda epoch: (
    time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) if epoch else ""
)
_ENV.filters["size"] = lambda n: (
    f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20
    else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} B"
)  # fmt: skip
templates = Jinja2Templates(env=_ENV)
_signer_lock = threading.Lock()


def signer(request: Request) -> Signer:
    """The daemon's cookie signer: one key per daemon, made at first use, in memory."""
    state = request.app.state
    with _signer_lock:
        if getattr(state, "ui_signer", None) is None:
            state.ui_signer = Signer()
        return state.ui_signer


def users_now(request: Request):
    """The users as the users file holds them now (``UsersNow``)."""
    return request.app.state.users.of(request.app.state.services.config())


def viewer(request: Request) -> Principal:
    """The signed-in user; anyone else is sent to the sign-in form."""
    principal = signer(request).principal(request.cookies.get(COOKIE), users_now(request))
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "sign in first", {"Location": f"/ui/signin?next={quote(target)}"})
    request.state.user = principal.name
    return principal


async def checked_form(request: Request) -> dict[str, str]:
    """A changing request's form, once its CSRF token matched the session's (else 403)."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    token = fields.get("csrf") or request.headers.get("x-csrf-token")
    if not signer(request).csrf_ok(request.cookies.get(COOKIE), token):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    return fields


def check_csrf_header(request: Request) -> None:
    """For script requests with a body that is not a form (uploads)."""
    token = request.headers.get("x-csrf-token")
    if not signer(request).csrf_ok(request.cookies.get(COOKIE), token):
        raise HTTPException(403, "the request's CSRF token is missing or wrong: reload the page")


Viewer = Depends(viewer)
_ROWS: OrderedDict[tuple, dict[tuple[str, str], InstanceRecord]] = OrderedDict()
_ROWS_LOCK = threading.Lock()
KEPT_SESSIONS = 16


def file_row(
    key: tuple, load: Callable[[], list[InstanceRecord]], scan: str, file: str
) -> InstanceRecord:
    """A session's file by scan and name, from its index rows (else the API's 404).

    A page shows dozens of pictures of one session: its rows are read once and kept
    for a few sessions; ``key`` names the session as it is now (its file count and
    modification time in it), so a changed session is read again."""
    with _ROWS_LOCK:
        files = _ROWS.get(key)
        if files is not None:
            _ROWS.move_to_end(key)
    if files is None:
        files = {(r.scan, r.file_name): r for r in load()}
        with _ROWS_LOCK:
            _ROWS[key] = files
            while len(_ROWS) > KEPT_SESSIONS:
                _ROWS.popitem(last=False)
    record = files.get((scan, file))
    if record is None:
        raise HTTPException(404, NOT_FOUND)
    return record


def page(request: Request, template: str, principal: Principal, **context: object) -> HTMLResponse:
    """A rendered page with what every page needs (the user, the CSRF token)."""
    cookie = request.cookies.get(COOKIE) or ""
    return templates.TemplateResponse(
        request,
        template,
        {"user": principal, "csrf": signer(request).csrf(cookie), **context},
    )


def picture(
    svc: Services, source: Path, *, frame: int | None, boxes: list[Region], side: int
) -> Response:
    """A PNG of ``source`` from the picture cache, made first if new.

    Called from plain (``def``) routes: FastAPI runs those on its worker threads, so
    decoding never holds up the event loop that serves the other requests."""
    variant = f"{frame}:{side}:{[tuple(vars(b).values()) for b in boxes]}"
    try:
        cache = svc.store.data.picture_cache(source, variant)
    except OSError:
        raise HTTPException(404, "the file is missing") from None
    try:
        data = pictures.cached(
            cache, lambda: pictures.render(source, frame=frame, boxes=boxes, side=side)
        )
    except pictures.NoPicture as exc:
        raise HTTPException(415, str(exc)) from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
