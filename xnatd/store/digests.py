"""MD5 digests of stored files, for the catalogs' ``digest`` (SPEC 5.2).

A file received over DICOM is hashed from memory on its receiving thread, after its
response has gone out (``AfterReplyDigests``), while the sender prepares the next one:
not before (the hash would lengthen every round trip, a tenth of one association's
rate), and not from the file when the session is built (which read every file back).
A file without one (imported, spooled to disk, its association killed, replaced by a
concurrent copy) is read and hashed when its session is built (``files_md5``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xnatd.payload import Payload, chunks_of, file_payload
from xnatd.store.index.records import InstanceRecord, TakenDigest

THREADS = os.cpu_count() or 1
PARALLEL_FROM = 256 << 20  # bytes in all before threads pay for themselves


def payload_md5(data: Payload) -> str:
    """The hex MD5 of a payload, read chunk by chunk."""
    digest = hashlib.md5()
    for chunk in chunks_of(data):
        digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """The hex MD5 of a file, read chunk by chunk."""
    return payload_md5(file_payload(path))  # a large file is read in chunks


def files_md5(paths: list[Path], sizes: list[int]) -> list[str]:
    """The MD5 of each file. Past ``PARALLEL_FROM`` bytes the files are shared out by
    size among one thread per core (hashlib lets go of the GIL); below, threads would
    only fight over the GIL for the per-file Python (0.52 s against 0.19 s serially for
    10,000 files of 9 kB)."""
    if sum(sizes) < PARALLEL_FROM or THREADS == 1:
        return [file_md5(path) for path in paths]
    shares: list[list[int]] = [[] for _ in range(THREADS)]
    loads = [0] * THREADS
    for position in sorted(range(len(paths)), key=lambda i: -sizes[i]):
        lightest = loads.index(min(loads))
        shares[lightest].append(position)
        loads[lightest] += sizes[position]
    digests = [""] * len(paths)

    def digest_share(share: list[int]) -> None:
        for position in share:
            digests[position] = file_md5(paths[position])

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(digest_share, shares))  # list(): a failure raises here
    return digests


class AfterReplyDigests:
    """One association's received files, hashed after their responses went out; each
    digest waits for the association's next index write (``drain``).

    Used only by the association's DUL thread, which reads its requests, answers them,
    and closes it.
    """

    def __init__(self) -> None:
        self._taken: list[TakenDigest] = []

    def take(
        self, session_id: int, record: InstanceRecord, data: bytes, path: Path, inode: int
    ) -> None:
        """Hash the bytes written as inode ``inode`` at ``path`` (hashlib lets go of the
        GIL meanwhile). Dropped if the path now holds another file: a copy of the same
        instance, written at once by another association, whose row may then still carry
        this file's received time and size."""
        md5 = hashlib.md5(data).hexdigest()
        try:
            ours = os.stat(path).st_ino == inode
        except OSError:
            ours = False
        if ours:
            self._taken.append(
                TakenDigest(session_id, record.sop_instance_uid, record.received, record.size, md5)
            )

    def drain(self) -> list[TakenDigest]:
        """The digests taken since the last drain; they are handed over, not kept."""
        taken, self._taken = self._taken, []
        return taken

    def give_back(self, taken: Sequence[TakenDigest]) -> None:
        """Keep drained digests whose write failed, for the next one."""
        self._taken[:0] = taken
