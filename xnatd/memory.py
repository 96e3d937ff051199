"""Keep the daemon's memory flat under sustained load (issue 16.12).

Over minutes of many associations the Python heap stays flat (tracemalloc: the same
~95 MB traced from the first minute to the last) while the RSS grew: glibc gives
each thread that contends for the allocator an arena of its own (up to eight per
core), and memory freed in an arena is kept for that arena. A receiving process runs
a thread per association, so dozens of arenas each held their high-water mark. Python
code allocates under the GIL, one thread at a time, so two arenas lose nothing; what
is freed is handed back to the system once a minute.

Both are glibc calls; elsewhere (musl, macOS) they are skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import structlog

log = structlog.get_logger(__name__)

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas; call before the process starts its threads."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def give_back() -> None:
    """Return the allocator's free pages to the system (``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
