"""``GET /data/receipts[?calling_ae=AE&since=DATE]``: ``xnatd receipts`` over HTTP.

Receipts span every project (a sender's files may be routed anywhere, Unassigned
included), so only site admins may read them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from xnatd.api.auth import Principal
from xnatd.api.deps import Caller, Services, Svc
from xnatd.store.receipts import parse_since, receipts, with_iso_times

router = APIRouter(tags=["receipts"])


@router.get("/data/receipts")
def list_receipts(
    calling_ae: Annotated[str | None, Query(description="one sender's AE title")] = None,
    since: Annotated[str | None, Query(description="YYYY-MM-DD or ISO 8601 (UTC)")] = None,
    principal: Principal = Caller,
    svc: Services = Svc,
) -> JSONResponse:
    """Per sender: received, rejected (with reasons), committed, and each instance's
    session, as ``xnatd receipts --json``."""
    if not principal.admin:
        raise HTTPException(403, "receipts cover every project: site admins only")
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise HTTPException(400, f"since: {exc}") from None
    entries = receipts(svc.store.index, calling_ae=calling_ae, since=start)
    return JSONResponse(with_iso_times(entries))
