"""The idle sweeper: builds sessions once their senders have gone quiet (SPEC 4.2).

A session is claimed for building when no file has arrived for the idle timeout and
no association that delivered files to it is still open; both facts live in the
index, so timers resume after a restart and another node can take over.

The files' MD5 digests (the catalogs') would be most of a build's work. A file
received over DICOM gets its digest on its receiving thread (``store/digests.py``);
those still missing (imported or spooled files, an association killed) are taken
early, on a thread of their own, once a session's senders have been quiet for a
quarter of the idle timeout (at most ``EARLY_DIGEST_AFTER``): the rest of the timeout
is spent hashing instead of waiting, and the build reads only files that came later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from typing import Any

import structlog

from xnatd.assembler.builder import Builder
from xnatd.store.assembly import Assembly
from xnatd.store.index.records import PrearchiveSession, Status

log = structlog.get_logger(__name__)

BUILD_LEASE = 600.0  # seconds a build claim holds before another node may retake it
EARLY_DIGEST_AFTER = 1.0  # the longest a quiet session waits for its early digests


def early_digest_after(idle_timeout: float) -> float:
    """How long a session's senders must have been quiet before its files are digested
    ahead of the build: a quarter of the idle timeout, at most ``EARLY_DIGEST_AFTER``."""
    return min(EARLY_DIGEST_AFTER, idle_timeout / 4)


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
        # Its own thread: a build waits for its session's early digests, which must
        # never queue behind that build.
        self._digester = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest")
        self._digests: dict[int, tuple[float, Future[Any]]] = {}  # by session id
        self._digests_lock = threading.Lock()
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
        self.digest_quiet_sessions()
        return claimed

    def digest_quiet_sessions(self) -> list[PrearchiveSession]:
        """Queue early digests for sessions quiet long enough that have had files since
        their last ones; returns the sessions queued."""
        quiet = self.assembly.quiet_sessions(quiet=early_digest_after(self.idle_timeout))
        queued = []
        with self._digests_lock:
            seen = {session.id for session in quiet}
            for session_id in [i for i in self._digests if i not in seen]:
                if self._digests[session_id][1].done():
                    del self._digests[session_id]  # built, or receiving again
            for session in quiet:
                earlier = self._digests.get(session.id)
                if earlier is not None and earlier[0] == session.last_modified:
                    continue  # digested (or being digested) since its last file
                future = self._digester.submit(self._digest_early, session)
                self._digests[session.id] = (session.last_modified, future)
                queued.append(session)
        return queued

    def _digest_early(self, session: PrearchiveSession) -> None:
        # Only time is lost if this fails: the build takes the digests still missing
        # (and reports a file that cannot be read).
        try:
            taken = self.assembly.digest_early(session)
        except OSError as exc:  # a file replaced or removed meanwhile
            log.info("early_digest_skipped", session=str(session.name), reason=str(exc))
            return
        except Exception:
            log.exception("early_digest_failed", session=str(session.name))
            return
        if taken:
            log.debug("digested_early", session=str(session.name), files=taken)

    def _build(self, session: PrearchiveSession) -> None:
        with self._digests_lock:
            early = self._digests.pop(session.id, None)
        if early is not None:
            wait_for_futures([early[1]])  # its files may be being hashed now: not twice
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
        self._digester.shutdown(wait=wait, cancel_futures=True)
        self._pool.shutdown(wait=wait)
