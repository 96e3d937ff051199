"""Durable writes (xnatd.store.durable) and the payloads they write (xnatd.payload).

A C-STORE is acknowledged once ``write_durably`` returns, so what it leaves on disk,
and what a crash in the middle leaves, is what a sender relies on.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xnatd import payload
from xnatd.payload import SpooledFile, chunks_of, file_payload
from xnatd.store import durable
from xnatd.store.durable import (
    STALE_PART_AGE,
    abandoned_part,
    makedirs_durable,
    move_durably,
    part_name,
    remove_stray_parts,
    write_durably,
)


def parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name.endswith(".part"))


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def part_of(final: Path, pid: int, host: str | None = None) -> Path:
    """A part file as a writer with ``pid`` on ``host`` would have left it."""
    mine = part_name(final)
    own = f".{os.getpid()}@{durable._HOST}."
    assert own in mine.name
    name = mine.name.replace(own, f".{pid}@{durable._HOST if host is None else host}.")
    path = final.with_name(name)
    path.write_bytes(b"half a file")
    return path


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


class TestWriteDurably:
    def test_leaves_exactly_the_bytes_and_no_part(self, tmp_path: Path) -> None:
        target = tmp_path / "a" / "b" / "file.dcm"
        data = os.urandom(100_000)

        write_durably(target, data, tmp_path)

        assert target.read_bytes() == data
        assert parts(tmp_path) == []

    def test_replaces_an_existing_file_whole(self, tmp_path: Path) -> None:
        target = tmp_path / "file.dcm"
        target.write_bytes(b"old contents that are longer than the new ones")

        write_durably(target, b"new", tmp_path)

        assert target.read_bytes() == b"new"
        assert parts(tmp_path) == []

    def test_writes_a_spooled_file_chunk_by_chunk(self, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.setattr(payload, "CHUNK", 7)
        source = tmp_path / "spill"
        body = bytes(range(256)) * 10
        source.write_bytes(body)
        spooled = SpooledFile(b"HEAD", source, start=5, end=2000, suffix=b"TAIL")

        write_durably(tmp_path / "out" / "x.dcm", spooled, tmp_path)

        assert (tmp_path / "out" / "x.dcm").read_bytes() == b"HEAD" + body[5:2000] + b"TAIL"

    def test_a_failed_write_leaves_neither_file_nor_part(self, tmp_path: Path) -> None:
        """The source of a spooled payload vanishing mid-write stands for any failure
        between open and rename: nothing half-written may be left under either name."""
        source = tmp_path / "spill"
        source.write_bytes(b"x" * 100)
        spooled = SpooledFile(b"prefix", source)
        source.unlink()
        target = tmp_path / "session" / "file.dcm"

        with pytest.raises(FileNotFoundError):
            write_durably(target, spooled, tmp_path)

        assert not target.exists()
        assert parts(tmp_path) == []


class TestStrayParts:
    def test_part_name_is_hidden_beside_the_final_file(self, tmp_path: Path) -> None:
        final = tmp_path / "file.dcm"
        name = part_name(final)
        assert name.parent == final.parent
        assert name.name.startswith(".file.dcm.") and name.name.endswith(".part")
        assert part_name(final) != name  # two writers of one file never share a part

    def test_a_part_whose_writer_is_alive_is_kept(self, tmp_path: Path) -> None:
        live = part_name(tmp_path / "file.dcm")  # this process: alive
        live.write_bytes(b"being written")

        assert not abandoned_part(live)
        assert remove_stray_parts(tmp_path) == []
        assert live.exists()

    def test_a_part_whose_writer_died_is_removed_at_once(self, tmp_path: Path) -> None:
        folder = tmp_path / "SCANS" / "1" / "DICOM"
        folder.mkdir(parents=True)
        crashed = part_of(folder / "file.dcm", dead_pid())

        assert abandoned_part(crashed)
        assert remove_stray_parts(tmp_path) == [crashed]
        assert not crashed.exists()

    def test_a_part_from_another_host_waits_for_its_age(self, tmp_path: Path) -> None:
        """Another node sharing the data directory: its pid means nothing here."""
        other = part_of(tmp_path / "file.dcm", dead_pid(), host="elsewhere")

        assert not abandoned_part(other)
        assert remove_stray_parts(tmp_path) == []

        age(other, STALE_PART_AGE + 60)
        assert abandoned_part(other)
        assert remove_stray_parts(tmp_path) == [other]
        assert not other.exists()

    def test_a_live_writers_part_untouched_for_an_hour_goes(self, tmp_path: Path) -> None:
        stuck = part_name(tmp_path / "file.dcm")
        stuck.write_bytes(b"x")
        age(stuck, STALE_PART_AGE - 60)
        assert not abandoned_part(stuck)

        age(stuck, STALE_PART_AGE + 60)
        assert abandoned_part(stuck)

    def test_only_hidden_part_files_are_ever_removed(self, tmp_path: Path) -> None:
        keep = [tmp_path / "file.dcm", tmp_path / "visible.part", tmp_path / ".hidden.dcm"]
        for path in keep:
            path.write_bytes(b"data")
            age(path, STALE_PART_AGE * 10)

        assert remove_stray_parts(tmp_path) == []
        assert all(path.exists() for path in keep)

    def test_not_recursive_leaves_parts_in_subfolders(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        top = part_of(tmp_path / "doc.xml", dead_pid())
        below = part_of(tmp_path / "sub" / "file.dcm", dead_pid())

        assert remove_stray_parts(tmp_path, recursive=False) == [top]
        assert below.exists()


class TestMoveAndMakedirs:
    def test_move_durably_renames_and_makes_the_folders(self, tmp_path: Path) -> None:
        source = tmp_path / "a.dcm"
        source.write_bytes(b"payload")
        inode = source.stat().st_ino
        target = tmp_path / "archive" / "P" / "S" / "a.dcm"

        move_durably(source, target, tmp_path)

        assert not source.exists()
        assert target.read_bytes() == b"payload"
        assert target.stat().st_ino == inode  # same file system: a rename, not a copy

    def test_move_durably_across_file_systems_copies_then_unlinks(
        self, tmp_path: Path, monkeypatch
    ) -> None:
        """os.replace fails with EXDEV between file systems; simulated for the first
        call only, so the copy's own rename of its part file goes through."""
        source = tmp_path / "a.dcm"
        data = os.urandom(3 * (1 << 20) + 17)
        source.write_bytes(data)
        target = tmp_path / "other" / "a.dcm"
        real_replace = os.replace
        calls = []

        def cross_device(src, dst):
            calls.append((Path(src), Path(dst)))
            if len(calls) == 1:
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return real_replace(src, dst)

        monkeypatch.setattr(durable.os, "replace", cross_device)
        move_durably(source, target, tmp_path)

        assert not source.exists()
        assert target.read_bytes() == data
        assert calls[1][0].name.endswith(".part") and calls[1][1] == target
        assert parts(tmp_path) == []

    def test_move_durably_raises_other_errors_and_keeps_the_source(self, tmp_path: Path) -> None:
        source = tmp_path / "a.dcm"
        source.write_bytes(b"x")
        (tmp_path / "dir" / "a.dcm").mkdir(parents=True)
        (tmp_path / "dir" / "a.dcm" / "inside").write_bytes(b"y")

        with pytest.raises(OSError):
            move_durably(source, tmp_path / "dir" / "a.dcm", tmp_path)

        assert source.read_bytes() == b"x"

    def test_makedirs_durable_creates_every_missing_level(self, tmp_path: Path) -> None:
        deep = tmp_path / "x" / "y" / "z"
        makedirs_durable(deep, tmp_path)
        assert deep.is_dir()
        makedirs_durable(deep, tmp_path)  # again: nothing to do, no error
        assert deep.is_dir()

    def test_makedirs_durable_never_creates_the_stop_folder(self, tmp_path: Path) -> None:
        """``stop`` is the data directory: if it is gone (unmounted), recreating it
        would write files to the wrong disk."""
        stop = tmp_path / "data"
        with pytest.raises(FileNotFoundError):
            makedirs_durable(stop / "prearchive" / "P", stop)
        assert not stop.exists()


class TestPayload:
    def test_spooled_file_is_prefix_range_suffix(self, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.setattr(payload, "CHUNK", 10)
        source = tmp_path / "spill"
        body = os.urandom(1000)
        source.write_bytes(body)
        spooled = SpooledFile(b"PRE", source, start=100, end=655, suffix=b"SUF")
        expected = b"PRE" + body[100:655] + b"SUF"

        assert len(spooled) == len(expected)
        chunks = list(spooled.chunks())
        assert b"".join(chunks) == expected
        assert max(len(c) for c in chunks) <= 10  # never read whole
        assert spooled.read_all() == expected
        assert b"".join(chunks_of(spooled)) == expected
        with spooled.open() as stream:
            assert stream.read() == expected
            stream.seek(1)
            assert stream.read(5) == expected[1:6]
            stream.seek(-4, os.SEEK_END)
            assert stream.read() == expected[-4:]

    def test_spooled_file_defaults_to_the_whole_source(self, tmp_path: Path) -> None:
        source = tmp_path / "spill"
        source.write_bytes(b"0123456789")
        spooled = SpooledFile(b"", source)
        assert len(spooled) == 10 and spooled.read_all() == b"0123456789"

    def test_file_payload_switches_to_spooled_past_the_limit(
        self, tmp_path: Path, monkeypatch
    ) -> None:
        monkeypatch.setattr(payload, "IN_MEMORY_LIMIT", 100)
        small, large = tmp_path / "small", tmp_path / "large"
        small.write_bytes(b"s" * 100)
        large.write_bytes(b"l" * 101)

        assert file_payload(small) == b"s" * 100
        spooled = file_payload(large)
        assert isinstance(spooled, SpooledFile)
        assert spooled.source == large and spooled.read_all() == b"l" * 101
