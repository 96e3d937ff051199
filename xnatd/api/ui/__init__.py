"""The review pages under ``/ui/`` (SPEC 10.3): sign-in, prearchive, archive, upload."""

from __future__ import annotations

from fastapi import APIRouter

from xnatd.api.ui import account, archive_pages, prearchive_pages, upload_page

router = APIRouter(include_in_schema=False)
router.include_router(account.router)
router.include_router(prearchive_pages.router)
router.include_router(archive_pages.router)
router.include_router(upload_page.router)
