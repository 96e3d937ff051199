"""A zip written as it is sent: no temporary file, memory bounded by one chunk."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK = 1 << 20
ZIP64_FROM = 2**31  # entries this large need ZIP64 headers, decided before writing


class _Sink(io.RawIOBase):
    """Collects what zipfile writes; not seekable, so zipfile uses data descriptors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def stream_zip(entries: Iterable[tuple[str, Path]]) -> Iterator[bytes]:
    """Yield the bytes of a stored (uncompressed: DICOM rarely shrinks) zip of the files."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, path in entries:
            size = path.stat().st_size
            info = zipfile.ZipInfo(name, time.localtime(path.stat().st_mtime)[:6])
            info.file_size = size
            with (
                path.open("rb") as source,
                archive.open(info, "w", force_zip64=size >= ZIP64_FROM) as target,
            ):
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    if data := sink.drain():
                        yield data
            if data := sink.drain():
                yield data
    if data := sink.drain():
        yield data
