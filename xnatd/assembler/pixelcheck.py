"""Runs the pixel check (``xnatd.phi.pixels``) for a build, in a small pool of worker
processes at low CPU priority: decoding and OCR take seconds per image and must never
hold a receiving thread, the GIL or a core that receivers need.

The pool is started the first time a build has a candidate image, so a CT or MR
session without one costs nothing. Workers are spawned (not forked from the
multi-threaded daemon) and lower their own priority, which Tesseract inherits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import structlog

from xnatd.phi.pixels import PixelLeak
from xnatd.process import die_with_parent

log = structlog.get_logger(__name__)

NICENESS = 10
TIMEOUT = 300.0  # seconds one image may take before it is reported unchecked


def _start_worker() -> None:
    """In each worker: a lower priority (Tesseract inherits it), and death with the
    daemon (a daemon killed with kill -9 leaves no idle worker behind)."""
    with contextlib.suppress(OSError):  # not allowed here: run at the same priority
        os.nice(NICENESS)
    die_with_parent()


def _check(path: str, reason: str) -> list[PixelLeak]:
    from xnatd.phi.pixels import check_file

    return check_file(Path(path), reason)


class PixelChecker:
    """A bounded pool of low-priority processes that check images for burned-in text."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                )
            return self._pool

    def check(self, images: list[tuple[Path, str]]) -> list[list[PixelLeak] | str]:
        """For each (path, reason): the leaks found, or why the image could not be
        checked (a file pydicom cannot decode, a worker that died)."""
        if not images:
            return []
        futures: list[Future] = []
        try:
            pool = self._executor()
            futures = [pool.submit(_check, str(path), reason) for path, reason in images]
        except BrokenProcessPool:
            self._reset()
            return ["the pixel check's worker process died"] * len(images)
        results: list[list[PixelLeak] | str] = []
        for future in futures:
            try:
                results.append(future.result(timeout=TIMEOUT))
            except BrokenProcessPool:
                self._reset()
                results.append("the pixel check's worker process died")
            except Exception as exc:  # the image's fault: reported as unchecked
                results.append(f"{type(exc).__name__}: {exc}"[:200])
        return results

    def _reset(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes (the daemon's shutdown)."""
        self._reset()
