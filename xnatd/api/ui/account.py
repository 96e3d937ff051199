"""Signing in and out of the review pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from xnatd.api.ui.signin import COOKIE, LIFETIME
from xnatd.api.ui.web import checked_form, signer, templates, users_now

router = APIRouter()
NOT_ACCEPTED = "the user name and API token were not accepted"


def _safe_next(target: str | None) -> str:
    """Only a path of these pages: never another site (an open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/prearchive"


@router.get("/ui/signin", response_class=HTMLResponse)
def signin_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in form."""
    return templates.TemplateResponse(
        request, "signin.html", {"user": None, "next": _safe_next(next), "problem": None}
    )


@router.post("/ui/signin", response_model=None)
async def signin(request: Request) -> HTMLResponse | RedirectResponse:
    """The user name and API token of ``xnatd users add`` give a session cookie."""
    form = await request.form()
    name, token = str(form.get("user") or ""), str(form.get("token") or "")
    target = _safe_next(str(form.get("next") or ""))
    cookie = signer(request).sign_in(name, token, users_now(request))
    if cookie is None:
        return templates.TemplateResponse(
            request,
            "signin.html",
            {
                "user": None,
                "next": target,
                "problem": NOT_ACCEPTED,
            },
            status_code=401,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(LIFETIME),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/ui/signout")
async def signout(request: Request) -> RedirectResponse:
    """End the browser session (the cookie goes) and show the sign-in form."""
    await checked_form(request)
    response = RedirectResponse("/ui/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
def home() -> RedirectResponse:
    """``/ui``: the prearchive page."""
    return RedirectResponse("/ui/prearchive", status_code=303)
