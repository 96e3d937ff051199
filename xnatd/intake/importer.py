"""Uploads without a scanner: a zip, tar, folder or file, all or nothing (issue: import).

Every entry is unpacked and checked before anything reaches the prearchive; then
each file goes through the same intake as a C-STORE; the sessions are built when
the import ends (not after the idle timer) and the project policy, or ``--archive``,
decides what happens next. If anything fails or the import is interrupted, the
sessions it created are removed and the staging area is emptied.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from xnatd.config import Config
from xnatd.dicom import Tag, UnparsableDicom, read_header
from xnatd.intake.intake import Intake, Received, Result, SessionCache
from xnatd.intake.staging import HostileArchive, Limits, StagedFile, obvious_non_image, stage
from xnatd.payload import file_payload
from xnatd.progress import Progress
from xnatd.routing import Explicit
from xnatd.store import Store
from xnatd.store.layout import PrearchiveName

log = structlog.get_logger(__name__)

STAGING = ".staging"
IMPORT_LEASE = 3600.0  # holds the idle timer of the sessions an import is filling
# Not images: skipped and reported, never a reason to stop.


class ImportFailed(Exception):
    """Nothing was imported; the message says why."""


class Interruption:
    """A person's Ctrl-C on ``xnatd import``, taken where the roll-back can be exact.

    While files are unpacked and checked, at once (KeyboardInterrupt); once they are
    being stored, before the next file: an interrupt in the middle of a write could
    leave a file the roll-back does not know of. A second one while storing still
    waits (the roll-back itself must finish).
    """

    def __init__(self) -> None:
        self.storing = False
        self.requested = False

    def interrupt(self) -> None:
        """From a SIGINT handler."""
        if not self.storing:
            raise KeyboardInterrupt
        self.requested = True


@dataclass(frozen=True)
class ImportRequest:
    """One import: what to read, where it goes, and whether to archive it at once."""

    path: Path
    project: str
    subject: str | None = None
    session: str | None = None
    archive: bool = False
    overwrite: str = "append"  # the merge mode when archive is True
    ignore_unparsable: bool = False
    actor: str = "import"
    interruption: Interruption | None = None  # the command line's Ctrl-C


class Settle(Protocol):
    """What happens to an import's sessions once every file is stored (the caller's
    policy: ``Operations.settle_import``). Returns the archived session IDs."""

    def __call__(
        self, sessions: Sequence[PrearchiveName], request: ImportRequest, /
    ) -> list[str]: ...


@dataclass
class ImportSummary:
    """What an import stored: sessions created and merged, archived IDs, files, bytes
    and the entries skipped (with why).
    """

    sessions_created: list[str] = field(default_factory=list)
    sessions_merged: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


class Importer:
    """Imports a zip, tar, folder or file through the intake, all or nothing."""

    def __init__(
        self,
        store: Store,
        intake: Intake,
        settle: Settle,
        config: Callable[[], Config],
        node: str,
    ) -> None:
        """``settle`` decides what becomes of the sessions once all is stored; the
        importer itself only stores, all or nothing."""
        self.store = store
        self.intake = intake
        self.settle = settle
        self.config = config
        self.node = node

    def run(self, request: ImportRequest, *, quiet: bool = False) -> ImportSummary:
        """Import everything or nothing.

        Raises:
            ImportFailed: with the entry and the reason; nothing was imported.
        """
        started = time.monotonic()
        config = self.config()
        if config.project(request.project) is None:
            raise ImportFailed(f"{request.project!r} is not a configured project")
        staging = self.store.data.root / STAGING / uuid.uuid4().hex
        limits = Limits(
            config.imports.max_unpacked, config.imports.max_ratio, config.imports.max_entries
        )
        summary = ImportSummary()
        try:
            try:
                staged = stage(request.path, staging, limits)
            except (HostileArchive, OSError) as exc:
                raise ImportFailed(f"{exc}; nothing was imported") from None
            files = self._check(staged, request, summary)
            self._store(files, request, summary, quiet)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    def _check(
        self, staged: list[StagedFile], request: ImportRequest, summary: ImportSummary
    ) -> list[StagedFile]:
        """Read every entry's header before anything is stored."""
        files = []
        for entry in staged:
            if obvious_non_image(entry.name):
                summary.skipped.append({"entry": entry.name, "reason": "not an image file"})
                continue
            try:
                header = read_header(str(entry.path), {Tag.SOPClassUID, Tag.SOPInstanceUID})
                if not header.get(Tag.SOPClassUID) or not header.get(Tag.SOPInstanceUID):
                    raise UnparsableDicom("no SOP Class or Instance UID")
            except UnparsableDicom as exc:
                if not request.ignore_unparsable:
                    raise ImportFailed(
                        f"{entry.name}: not DICOM ({exc}); nothing was imported "
                        "(--ignore-unparsable skips such entries)"
                    ) from None
                summary.skipped.append({"entry": entry.name, "reason": str(exc)})
                continue
            files.append(entry)
        if not files:
            raise ImportFailed(f"{request.path}: no DICOM files; nothing was imported")
        return files

    def _store(
        self,
        files: list[StagedFile],
        request: ImportRequest,
        summary: ImportSummary,
        quiet: bool,
    ) -> None:
        prearchive = self.store.prearchive
        existing = {s.id for s in self.store.index.list_sessions()}
        upload = f"import-{uuid.uuid4().hex}"
        # Registered like an association: the idle timer leaves these sessions alone
        # until the import builds them itself.
        prearchive.association_opened(
            upload,
            node=self.node,
            called_ae="import",
            calling_ae=request.actor,
            peer=str(request.path),
            lease=IMPORT_LEASE,
        )
        cache = SessionCache(written=[])
        progress = Progress("import", len(files), sum(f.size for f in files), quiet=quiet)
        try:
            self._receive_all(files, request, summary, cache, upload, progress, existing)
            for name, count in cache.files_by_session.items():
                self.store.audit.record(
                    "receive",
                    actor=request.actor,
                    session=name,
                    files=count,
                    source="import",
                    path=str(request.path),
                )
            created = {s.id for s in cache.sessions.values()} - existing
            for session in cache.sessions.values():
                bucket = (
                    summary.sessions_created if session.id in created else summary.sessions_merged
                )
                bucket.append(str(session.name))
            # Built while the upload still holds the sessions' idle timers: let go first,
            # and the daemon's sweeper could claim one ("it is BUILDING") in between.
            self._finish(cache, request, summary)
        finally:
            prearchive.association_closed(upload)

    def _receive_all(
        self,
        files: list[StagedFile],
        request: ImportRequest,
        summary: ImportSummary,
        cache: SessionCache,
        upload: str,
        progress: Progress,
        existing: set[int],
    ) -> None:
        """Every file through the intake; on any failure, what this import wrote goes."""
        explicit = Explicit(request.project, request.subject, request.session)
        interruption = request.interruption or Interruption()
        interruption.storing = True
        try:
            for entry in files:
                if interruption.requested:
                    raise KeyboardInterrupt
                outcome = self.intake.receive(
                    Received(
                        file_payload(entry.path),
                        source="import",
                        calling_ae=None,
                        association_id=upload,
                        explicit=explicit,
                    ),
                    cache,
                )
                if outcome.result is Result.DROPPED:
                    summary.skipped.append({"entry": entry.name, "reason": outcome.reason or ""})
                elif outcome.result is not Result.STORED:
                    raise ImportFailed(f"{entry.name}: {outcome.reason}; nothing was imported")
                else:
                    summary.files += 1
                    summary.bytes += entry.size
                progress.advance(entry.size)
        except BaseException:
            self._roll_back(cache, existing)
            raise
        finally:
            progress.finish()
            interruption.storing = False

    def _roll_back(self, cache: SessionCache, existing: set[int]) -> None:
        """Remove exactly the instances this import wrote, and the sessions it created
        that are left empty; what others sent meanwhile stays."""
        created = {s.id for s in cache.sessions.values()} - existing
        removed, discarded = self.store.prearchive.roll_back(cache.written or [], created)
        log.warning("import_rolled_back", instances=removed, sessions_removed=discarded)

    def _finish(self, cache: SessionCache, request: ImportRequest, summary: ImportSummary) -> None:
        """Hand the sessions that still exist to ``settle`` (build, then archive or not)."""
        names = [
            session.name
            for session in cache.sessions.values()
            if self.store.index.get_session(session.name) is not None
        ]
        summary.archived.extend(self.settle(names, request))
