"""MD5 digests of stored files, for the catalogs' ``digest`` (SPEC 5.2).

A file received over DICOM is hashed from memory on its receiving thread, after its
response has gone out (``AfterReplyDigests``), while the sender prepares the next one:
not before (the hash would lengthen every round trip, a tenth of one association's
rate), and not from the file when the session is built (which read every file back).
A file without one (imported, spooled to disk, its association killed, replaced by a
concurrent copy) is read and hashed when its session is built (``files_md5``).

An association's files are hashed in batches (``md5_many``): MD5 is a chain, one buffer
at a time runs at about 770 MB/s a core, but independent buffers hash side by side in
the lanes of a vector (``_md5lanes.c``), about 4.3 GB/s for 16 of them.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xnatd.payload import Payload, chunks_of, file_payload
from xnatd.store.index.records import InstanceRecord, TakenDigest

_lane_digests: Callable[[Sequence[bytes]], list[bytes]] | None
try:
    from xnatd.store._md5lanes import digests as _lane_digests
except ImportError:  # not built (no C compiler at install): hashlib alone
    _lane_digests = None

THREADS = os.cpu_count() or 1
PARALLEL_FROM = 256 << 20  # bytes in all before threads pay for themselves
# Lanes pay once the bytes in all are this many times the longest buffer's: 16 lanes
# run at about 270 MB/s each (AVX2; 190 with SSE2 alone), one hashlib MD5 at 770 MB/s.
LANES_PAY_FROM = 4
# An association's files wait for a batch this long, or holding this many bytes.
BATCH_FILES = 16
BATCH_BYTES = 8 << 20


def md5_many(buffers: Sequence[bytes]) -> list[str]:
    """The hex MD5 of each buffer, side by side in vector lanes where that is faster."""
    if _lane_digests is not None and len(buffers) > 1:
        sizes = [len(buffer) for buffer in buffers]
        if sum(sizes) >= LANES_PAY_FROM * max(sizes):
            return [digest.hex() for digest in _lane_digests(buffers)]
    return [hashlib.md5(buffer).hexdigest() for buffer in buffers]


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
    """The MD5 of each file, read a batch at a time and hashed in lanes. Past
    ``PARALLEL_FROM`` bytes the files are shared out by size among one thread per core
    (reading and hashing let go of the GIL); below, threads would only fight over the
    GIL for the per-file Python (0.52 s against 0.19 s serially for 10,000 files of
    9 kB, before the lanes)."""
    if sum(sizes) < PARALLEL_FROM or THREADS == 1:
        return _batched_files_md5(paths, sizes)
    shares: list[list[int]] = [[] for _ in range(THREADS)]
    loads = [0] * THREADS
    for position in sorted(range(len(paths)), key=lambda i: -sizes[i]):
        lightest = loads.index(min(loads))
        shares[lightest].append(position)
        loads[lightest] += sizes[position]
    digests = [""] * len(paths)

    def digest_share(share: list[int]) -> None:
        taken = _batched_files_md5([paths[i] for i in share], [sizes[i] for i in share])
        for position, md5 in zip(share, taken, strict=True):
            digests[position] = md5

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(digest_share, shares))  # list(): a failure raises here
    return digests


def _batched_files_md5(paths: list[Path], sizes: list[int]) -> list[str]:
    """The MD5 of each file: up to ``BATCH_FILES`` files or ``BATCH_BYTES`` bytes read
    and hashed together; a file past the batch's bytes read and hashed in chunks."""
    digests = [""] * len(paths)
    batch: list[int] = []
    contents: list[bytes] = []
    held = 0

    def hash_batch() -> None:
        nonlocal held
        for position, md5 in zip(batch, md5_many(contents), strict=True):
            digests[position] = md5
        batch.clear()
        contents.clear()
        held = 0

    for position, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        if size > BATCH_BYTES:
            digests[position] = file_md5(path)
            continue
        contents.append(path.read_bytes())
        batch.append(position)
        held += len(contents[-1])
        if len(batch) >= BATCH_FILES or held >= BATCH_BYTES:
            hash_batch()
    hash_batch()
    return digests


class AfterReplyDigests:
    """One association's received files, hashed after their responses went out, a batch
    at a time (``BATCH_FILES`` files or ``BATCH_BYTES`` bytes, the rest when it closes);
    each digest waits for the association's next index write (``drain``).

    Its DUL thread adds files as it answers them; the association's close may come on
    another thread (an abort), hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, InstanceRecord, bytes, Path, int]] = []
        self._waiting_bytes = 0
        self._taken: list[TakenDigest] = []

    def take(
        self, session_id: int, record: InstanceRecord, data: bytes, path: Path, inode: int
    ) -> None:
        """Keep the bytes written as inode ``inode`` at ``path`` for the next batch, and
        hash the batch once it is full."""
        with self._lock:
            self._waiting.append((session_id, record, data, path, inode))
            self._waiting_bytes += len(data)
            if len(self._waiting) >= BATCH_FILES or self._waiting_bytes >= BATCH_BYTES:
                self._hash_waiting()

    def finish(self) -> None:
        """Hash the files still waiting for a batch (the association is closing)."""
        with self._lock:
            self._hash_waiting()

    def _hash_waiting(self) -> None:
        """Hash the batch (the GIL is let go meanwhile). A file's digest is dropped if its
        path now holds another file: a copy of the same instance, written at once by
        another association, whose row may then still carry this file's received time
        and size."""
        waiting, self._waiting, self._waiting_bytes = self._waiting, [], 0
        if not waiting:
            return
        digests = md5_many([data for _, _, data, _, _ in waiting])
        for (session_id, record, _, path, inode), md5 in zip(waiting, digests, strict=True):
            try:
                ours = os.stat(path).st_ino == inode
            except OSError:
                ours = False
            if ours:
                self._taken.append(
                    TakenDigest(
                        session_id, record.sop_instance_uid, record.received, record.size, md5
                    )
                )

    def drain(self) -> list[TakenDigest]:
        """The digests taken since the last drain; they are handed over, not kept."""
        with self._lock:
            taken, self._taken = self._taken, []
        return taken

    def give_back(self, taken: Sequence[TakenDigest]) -> None:
        """Keep drained digests whose write failed, for the next one."""
        with self._lock:
            self._taken[:0] = taken
