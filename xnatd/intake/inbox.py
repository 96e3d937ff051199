"""The watched inbox: ``inbox/PROJECT/<file, archive or folder>`` is imported once settled.

Each top-level entry under a project's folder is one upload. It is imported when
nothing in it has changed for ``inbox.settle``, then removed; one that fails moves
to ``inbox/.failed/PROJECT/`` beside ``NAME.reason.txt``. watchdog wakes the loop
on changes, and every pass rescans, so nothing dropped while the daemon was
stopped, or missed by the watcher, is left behind.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from xnatd.intake.importer import Importer, ImportFailed, ImportRequest

log = structlog.get_logger(__name__)

FAILED = ".failed"


def last_change(path: Path) -> float:
    """The newest modification time in a file or folder tree."""
    newest = path.lstat().st_mtime
    if path.is_dir():
        for folder, _, names in os.walk(path):
            for name in names:
                try:
                    newest = max(newest, (Path(folder) / name).lstat().st_mtime)
                except FileNotFoundError:
                    continue
    return newest


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.event.set()


class Inbox:
    """The watched inbox of one data directory, imported on a thread of its own."""

    def __init__(self, root: Path, importer: Importer, settle: float) -> None:
        self.root = root
        self.importer = importer
        self.settle = settle
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        """Create the inbox folder if needed, then watch it and import on a thread."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Wake(self._wake), str(self.root), recursive=True)
        self._observer.start()
        self._thread = threading.Thread(target=self._loop, name="inbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; waits up to a minute for an import under way."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=60)

    def uploads(self) -> list[tuple[str, Path]]:
        """(project, entry) for every upload waiting in the inbox."""
        found = []
        for project in sorted(self.root.iterdir()):
            if project.name.startswith(".") or not project.is_dir():
                continue
            for entry in sorted(project.iterdir()):
                if not entry.name.startswith("."):
                    found.append((project.name, entry))
        return found

    def scan_once(self, now: float | None = None) -> int:
        """Import every settled upload; returns how many were handled."""
        handled = 0
        for project, entry in self.uploads():
            try:
                settled = (now or time.time()) - last_change(entry) >= self.settle
            except FileNotFoundError:
                continue
            if settled:
                self._import(project, entry)
                handled += 1
        return handled

    def _import(self, project: str, entry: Path) -> None:
        request = ImportRequest(path=entry, project=project, actor="inbox")
        try:
            summary = self.importer.run(request, quiet=True)
        except (ImportFailed, OSError, ValueError) as exc:
            self._fail(project, entry, str(exc))
            return
        log.info(
            "inbox_imported",
            path=str(entry),
            project=project,
            files=summary.files,
            sessions=summary.sessions_created + summary.sessions_merged,
        )
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()

    def _fail(self, project: str, entry: Path, reason: str) -> None:
        target_dir = self.root / FAILED / project
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / entry.name
        if target.exists():
            target = target_dir / f"{entry.name}.{int(time.time() * 1000)}"
        os.replace(entry, target)
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
        log.warning(
            "inbox_failed", path=str(entry), project=project, reason=reason, kept=str(target)
        )

    def _loop(self) -> None:
        tick = max(0.1, min(1.0, self.settle / 4))
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("inbox_scan_failed")
            self._wake.wait(tick)
            self._wake.clear()
