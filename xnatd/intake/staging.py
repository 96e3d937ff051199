"""Unpacking uploads into a staging area: nothing is written outside it, nothing trusted.

Zip, tar, tar.gz/tgz (nested archives too), a folder or one file become a list of
staged files. Entries with ``..`` or absolute paths, links, devices, encrypted
entries, archives that do not read to the end, and bombs (too large unpacked, or
compressed beyond a ratio) are refused with the archive and entry named.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class HostileArchive(ValueError):
    """An upload that is refused as a whole; the message names archive and entry."""


@dataclass(frozen=True)
class Limits:
    """Limits on what archives may unpack (``import`` in the configuration)."""

    max_unpacked: int = 64 * 2**30  # bytes unpacked from archives, in all
    max_ratio: float = 200.0  # unpacked / compressed, per entry (zip) or per archive
    max_entries: int = 500_000


@dataclass(frozen=True)
class StagedFile:
    """One file to import: where it is read from, and the name messages use."""

    path: Path  # where to read it
    name: str  # what to call it in messages: "upload.zip!series1/IM0001"
    size: int


_NOT_IMAGES = {"dicomdir", ".ds_store", "thumbs.db", "desktop.ini"}


def obvious_non_image(name: str) -> bool:
    """Entries every door skips without reading: DICOMDIR, desktop clutter, macOS forks
    (``upload.zip!__MACOSX/._IM1``); reported as skipped, never an error."""
    parts = name.replace("!", "/").split("/")
    return parts[-1].lower() in _NOT_IMAGES or "__MACOSX" in parts or parts[-1].startswith("._")


@dataclass
class _Budget:
    limits: Limits
    unpacked: int = 0
    entries: int = 0
    counter: list[int] = field(default_factory=lambda: [0])

    def take(self, size: int, where: str) -> None:
        self.unpacked += size
        if self.unpacked > self.limits.max_unpacked:
            raise HostileArchive(
                f"{where}: more than {self.limits.max_unpacked} bytes unpacked "
                "(import.max_unpacked)"
            )

    def count(self, where: str) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise HostileArchive(f"{where}: more than {self.limits.max_entries} entries")

    def folder(self, staging: Path) -> Path:
        self.counter[0] += 1
        path = staging / f"{self.counter[0]:05d}"
        path.mkdir(parents=True)
        return path


def is_archive(path: Path) -> bool:
    """Whether the file's name ends like an archive the importer unpacks."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _safe_parts(name: str, where: str) -> tuple[str, ...]:
    if "\x00" in name:
        raise HostileArchive(f"{where}: entry name contains a NUL byte")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and pure.parts[0].endswith(":")):
        raise HostileArchive(f"{where}: absolute path {name!r} refused")
    if ".." in pure.parts:
        raise HostileArchive(f"{where}: path {name!r} leaves the archive ('..')")
    return tuple(part for part in pure.parts if part not in ("", "."))


def _copy(reader: IO[bytes], target: Path, budget: _Budget, where: str, limit: int | None) -> int:
    """Stream to target, counting real bytes: sizes in archive headers are not trusted."""
    written = 0
    with open(target, "wb") as writer:
        while chunk := reader.read(CHUNK):
            written += len(chunk)
            budget.take(len(chunk), where)
            if limit is not None and written > limit:
                raise HostileArchive(f"{where}: unpacks beyond its compression limit (a bomb?)")
            writer.write(chunk)
    return written


def _unpack_zip(archive: Path, name: str, into: Path, budget: _Budget) -> Iterator[StagedFile]:
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise HostileArchive(f"{name}: not a readable zip archive ({exc})") from None
    with handle:
        for info in handle.infolist():
            where = f"{name}!{info.filename}"
            budget.count(where)
            parts = _safe_parts(info.filename, where)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise HostileArchive(f"{where}: symbolic links are refused")
            if info.flag_bits & 0x1:
                raise HostileArchive(f"{where}: encrypted entries are refused")
            if info.is_dir() or not parts:
                continue
            limit = int(max(info.compress_size, 1) * budget.limits.max_ratio)
            if info.file_size > limit:
                raise HostileArchive(
                    f"{where}: compressed {info.file_size / max(info.compress_size, 1):.0f}:1, "
                    f"beyond import.max_ratio ({budget.limits.max_ratio:g}:1)"
                )
            target = into.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with handle.open(info) as reader:
                    size = _copy(reader, target, budget, where, limit)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise HostileArchive(f"{where}: cannot be read to the end ({exc})") from None
            yield StagedFile(target, where, size)


def _unpack_tar(archive: Path, name: str, into: Path, budget: _Budget) -> Iterator[StagedFile]:
    compressed = max(archive.stat().st_size, 1)
    unpacked = 0
    try:
        handle = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise HostileArchive(f"{name}: not a readable tar archive ({exc})") from None
    with handle:
        try:
            for member in handle:
                where = f"{name}!{member.name}"
                budget.count(where)
                parts = _safe_parts(member.name, where)
                if member.issym() or member.islnk():
                    raise HostileArchive(f"{where}: links are refused")
                if member.isdir() or not parts:
                    continue
                if not member.isfile():
                    raise HostileArchive(f"{where}: devices and pipes are refused")
                target = into.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                reader = handle.extractfile(member)
                assert reader is not None
                size = _copy(reader, target, budget, where, None)
                if size != member.size:
                    raise HostileArchive(f"{where}: truncated ({size} of {member.size} bytes)")
                unpacked += size
                if unpacked / compressed > budget.limits.max_ratio:
                    raise HostileArchive(
                        f"{name}: unpacks beyond import.max_ratio ({budget.limits.max_ratio:g}:1)"
                    )
                yield StagedFile(target, where, size)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise HostileArchive(f"{name}: cannot be read to the end ({exc})") from None


def _expand(file: Path, name: str, staging: Path, budget: _Budget) -> Iterator[StagedFile]:
    """A file as staged files: itself, or what it unpacks to (recursively)."""
    if not is_archive(file):
        yield StagedFile(file, name, file.stat().st_size)
        return
    into = budget.folder(staging)
    unpack = _unpack_zip if file.name.lower().endswith(".zip") else _unpack_tar
    for entry in unpack(file, name, into, budget):
        if is_archive(entry.path):
            yield from _expand(entry.path, entry.name, staging, budget)
        else:
            yield entry


def stage(source: Path, staging: Path, limits: Limits = Limits()) -> list[StagedFile]:
    """Every file an upload holds, archives unpacked under staging.

    Raises:
        HostileArchive: the upload is refused as a whole.
        FileNotFoundError: source does not exist.
    """
    budget = _Budget(limits)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if source.is_file():
        return list(_expand(source, source.name, staging, budget))
    files: list[StagedFile] = []
    for folder, dirs, names in os.walk(source, followlinks=False):
        dirs.sort()
        for file_name in sorted(names):
            path = Path(folder) / file_name
            relative = str(path.relative_to(source))
            if path.is_symlink():
                raise HostileArchive(f"{relative}: symbolic links are refused")
            budget.count(relative)
            files.extend(_expand(path, relative, staging, budget))
    return files
