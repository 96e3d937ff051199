"""Issue 16.12: the daemon's memory stays flat under load.

The Python heap of a receiving process stays flat under sustained load; its RSS grew
because glibc gave each contending thread (one per association) a malloc arena of its
own, each keeping its high-water mark. This counts the arenas of a daemon that has
served a dozen associations at once: two at most (``xnatd/memory.py``). The RSS curve
itself is ``bench/soak_rss.py``'s to measure (minutes, not a test's seconds).
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, storescu_send

HEAP_MAX = 64 * 2**20  # a glibc non-main arena reserves this much, aligned to it


def malloc_arenas(pid: int) -> int:
    """The main arena plus each non-main arena's heap in the process's mappings: a
    read-write anonymous mapping starting on a 64 MiB boundary, followed by the
    inaccessible rest of its 64 MiB reservation."""
    mappings = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        mappings.append((start, end, fields[1], len(fields) > 5))
    heaps = 0
    for (start, end, perms, named), following in itertools.pairwise(mappings):
        if named or perms != "rw-p" or start % HEAP_MAX:
            continue
        if end == start + HEAP_MAX or (
            following[0] == end and following[2] == "---p" and following[1] == start + HEAP_MAX
        ):
            heaps += 1
    return 1 + heaps


def test_many_associations_share_two_malloc_arenas(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    def one_process(settings: dict) -> None:
        settings["workers"] = 1

    xnatd: Xnatd = make_xnatd(hook=one_process)
    folders = []
    for number in range(12):
        spec = StudySpec(
            f"arena{number}",
            patient_id=f"A{number:02d}",
            study_description="DEMO",
            series=[SeriesSpec(1, instances=40, rows=128, columns=128)],
        )
        folders.append(write_study(spec, dcm_dir / str(number)))
    results: list[int] = []

    def send(paths: list[Path]) -> None:
        results.append(storescu_send(storescu, xnatd.port, paths).returncode)

    senders = [threading.Thread(target=send, args=(paths,)) for paths in folders]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=120)
    assert results == [0] * 12
    assert xnatd.process is not None
    assert malloc_arenas(xnatd.process.pid) <= 2
