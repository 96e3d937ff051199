"""One received or imported file's bytes, as every stage passes them on.

A file is bytes in memory, or, past ``IN_MEMORY_LIMIT``, a ``SpooledFile``: a prefix,
a byte range of a file on disk and a suffix, read in chunks and never held whole. The
receivers make them, the intake and anonymization read and rewrite them, the store
writes them durably.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


IN_MEMORY_LIMIT = 16 * 2**20  # a file larger than this is read in chunks, never whole


class SpooledFile:
    """A file too large to hold in memory: ``prefix``, then bytes ``start`` to ``end``
    of ``source`` on disk, then ``suffix``. A received object is our Part 10 prefix and
    the spill file; an anonymized one, its rewritten header, the original pixel data
    (still in the source) and any rewritten trailing elements. Read in chunks."""

    def __init__(
        self,
        prefix: bytes,
        source: Path,
        *,
        start: int = 0,
        end: int | None = None,
        suffix: bytes = b"",
    ) -> None:
        self.prefix = prefix
        self.source = source
        self.start = start
        self.end = source.stat().st_size if end is None else end
        self.suffix = suffix
        self.size = len(prefix) + (self.end - start) + len(suffix)

    def __len__(self) -> int:
        return self.size

    def chunks(self) -> Iterator[bytes]:
        """The payload's bytes in chunks: prefix, the file's range, suffix."""
        yield self.prefix
        with self.source.open("rb") as reader:
            reader.seek(self.start)
            left = self.end - self.start
            while left > 0 and (chunk := reader.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
        if self.suffix:
            yield self.suffix

    def open(self) -> BinaryIO:
        """The whole file as one seekable stream (for reading its header)."""
        return io.BufferedReader(_SpoolReader(self))

    def read_all(self) -> bytes:
        """The whole payload in memory."""
        return b"".join(self.chunks())


Payload = bytes | SpooledFile  # a received file: in memory, or spilled to disk


@contextlib.contextmanager
def readable(data: Payload) -> Iterator[bytes | BinaryIO]:
    """The payload as ``dicom.read_header`` takes it: bytes, or a large file's stream."""
    if isinstance(data, SpooledFile):
        with data.open() as stream:
            yield stream
    else:
        yield data


def file_payload(path: Path) -> Payload:
    """A file to hand to the intake: its bytes, or read in place when it is large."""
    if path.stat().st_size > IN_MEMORY_LIMIT:
        return SpooledFile(b"", path)
    return path.read_bytes()


def chunks_of(data: Payload) -> Iterable[bytes]:
    """A payload's bytes in chunks (bytes: one chunk)."""
    return data.chunks() if isinstance(data, SpooledFile) else (data,)


class _SpoolReader(io.RawIOBase):
    def __init__(self, spool: SpooledFile) -> None:
        self.spool = spool
        self.position = 0
        self.file = spool.source.open("rb")

    @property
    def name(self) -> str:  # pydicom names the file in its messages
        return str(self.spool.source)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.spool.size}
        self.position = max(0, base[whence] + offset)
        return self.position

    def readinto(self, buffer) -> int:
        spool, position = self.spool, self.position
        middle = len(spool.prefix) + spool.end - spool.start
        if position < len(spool.prefix):
            data = spool.prefix[position : position + len(buffer)]
        elif position < middle:
            self.file.seek(spool.start + position - len(spool.prefix))
            data = self.file.read(min(len(buffer), middle - position))
        else:
            data = spool.suffix[position - middle : position - middle + len(buffer)]
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        self.file.close()
        super().close()
