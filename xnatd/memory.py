"""Keep the daemon's memory flat under sustained load (issue 16.12).

Over minutes of many associations the Python heap stays flat (tracemalloc: the same
~95 MB traced from the first minute to the last) while the RSS grew: glibc gives
each thread that contends for the allocator an arena of its own (up to eight per
core), and memory freed in an arena is kept for that arena. A receiving process runs
a thread per association, so dozens of arenas each held their high-water mark. Python
code allocates under the GIL, one thread at a time, so two arenas lose nothing; what
is freed is handed back to the system once a minute.

Between those minutes, freed memory stays with its arena. An association's received
files wait for their digests in batches of up to 8 MB (``store/digests.py``), freed
together: with glibc's default, an arena's free top past twice its last freed block
(about 0.5 MB here) went back to the system at once, so the next batch's files came
in as fresh zeroed pages, 50 page faults a 260 kB file (0.1 ms of CPU, the half of
what hashing in lanes saved). The thresholds are set to where glibc's own dynamic
ones end at most (32 MB), so a batch's memory is reused until the minute's trim.

All are glibc calls; elsewhere (musl, macOS) they are skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import structlog

log = structlog.get_logger(__name__)

ARENAS = 2
KEEP_FREED = 32 << 20  # bytes an arena keeps free, and the smallest block given its own mmap
# glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


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


def configure_allocator(arenas: int = ARENAS, keep_freed: int = KEEP_FREED) -> bool:
    """Cap glibc's malloc arenas and let each keep ``keep_freed`` bytes of freed memory
    until the next ``give_back``; call before the process starts its threads."""
    libc = _libc()
    if libc is None:
        return False
    # Both thresholds at once: setting one turns off glibc's moving of the other.
    settings = ((_M_ARENA_MAX, arenas), (_M_MMAP_THRESHOLD, keep_freed),
                (_M_TRIM_THRESHOLD, keep_freed))  # fmt: skip
    return all([bool(libc.mallopt(parameter, value)) for parameter, value in settings])


def give_back() -> None:
    """Return the allocator's free pages to the system (``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
