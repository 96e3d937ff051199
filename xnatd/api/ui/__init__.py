"""The review pages under ``/ui/`` (SPEC 10.3): sign-in, prearchive, archive, upload."""

from __future__ import annotations

from fastapi import APIRouter

from xnatd.api.ui import account, prearchive_pages

router = APIRouter(include_in_schema=False)
router.include_router(account.router)
router.include_router(prearchive_pages.router)
