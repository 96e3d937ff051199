"""The idle sweeper: builds sessions once their senders have gone quiet (SPEC 4.2).

A session is claimed for building when no file has arrived for the idle timeout and
no association that delivered files to it is still open; both facts live in the
index, so timers resume after a restart and another node can take over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog

from xnatd.assembler.builder import Builder
from xnatd.store.assembly import Assembly
from xnatd.store.index.records import PrearchiveSession, Status

log = structlog.get_logger(__name__)

BUILD_LEASE = 600.0  # seconds a build claim holds before another node may retake it


def poll_interval(idle_timeout: float) -> float:
    """How often to look for idle sessions: a tenth of the timeout, within 0.1 s to 1 s."""
    return min(1.0, max(0.1, idle_timeout / 10))


class Sweeper:
    """Claims idle sessions and builds them on a small pool, off the receiving threads."""

    def __init__(
        self,
        assembly: Assembly,
        builder: Builder,
        *,
        idle_timeout: float,
        node: str,
        workers: int = 2,
        on_ready: Callable[[PrearchiveSession], None] | None = None,
    ) -> None:
        self.assembly = assembly
        self.builder = builder
        self.idle_timeout = idle_timeout
        self.node = node
        self.on_ready = on_ready  # the next stage: the project's archive policy
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="build")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: set[Future[Any]] = set()

    def start(self) -> None:
        """Start the sweeping thread (and the build pool it feeds)."""
        self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)
        self._thread.start()

    def sweep_once(self) -> list[PrearchiveSession]:
        """Claim what is idle now and queue its builds; returns the claimed sessions."""
        claimed = self.assembly.claim_idle_sessions(
            idle_timeout=self.idle_timeout, node=self.node, lease=BUILD_LEASE
        )
        for session in claimed:
            future = self._pool.submit(self._build, session)
            self._running.add(future)
            future.add_done_callback(self._running.discard)
        return claimed

    def _build(self, session: PrearchiveSession) -> None:
        try:
            if self.builder.build(session) is Status.READY and self.on_ready is not None:
                self.on_ready(session)
        except Exception:
            # A bug must not kill the pool; the claim expires and the build is retried.
            log.exception("build_crashed", session=str(session.name))

    def _loop(self) -> None:
        interval = poll_interval(self.idle_timeout)
        while not self._stop.wait(interval):
            try:
                self.sweep_once()
            except Exception:
                log.exception("sweep_failed")

    def stop(self, wait: bool = True) -> None:
        """Stop claiming; let builds in flight finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=wait)
