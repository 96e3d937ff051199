"""Unpacking uploads: good archives of every kind, and every hostile case refused by name."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study

from xnatd.intake.staging import HostileArchive, Limits, stage


@pytest.fixture
def study_files(tmp_path: Path) -> list[Path]:
    return write_study(StudySpec("stage", series=[SeriesSpec(1, instances=3)]), tmp_path / "study")


def names(staged) -> list[str]:
    return sorted(entry.name for entry in staged)


class TestGoodUploads:
    def test_zipfile_tarfile_and_nested(self, tmp_path: Path, study_files: list[Path]) -> None:
        inner = tmp_path / "inner.tar.gz"
        with tarfile.open(inner, "w:gz") as tar:
            tar.add(study_files[0], arcname="a/one.dcm")
        outer = tmp_path / "outer.zip"
        with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(study_files[1], "b/two.dcm")
            zf.write(inner, "nested/inner.tar.gz")
        staged = stage(outer, tmp_path / "staging")
        assert names(staged) == ["outer.zip!b/two.dcm", "outer.zip!nested/inner.tar.gz!a/one.dcm"]
        assert all(e.path.is_relative_to(tmp_path / "staging") for e in staged)
        assert {e.path.read_bytes() for e in staged} == {p.read_bytes() for p in study_files[:2]}

    @pytest.mark.parametrize("command", [["zip", "-qr"], ["tar", "-czf"], ["tar", "-cf"]])
    def test_archives_from_the_zip_and_tar_commands(
        self, tmp_path: Path, study_files: list[Path], command: list[str]
    ) -> None:
        suffix = {"zip": ".zip", "-czf": ".tgz", "-cf": ".tar"}[
            command[-1] if command[0] == "tar" else "zip"
        ]
        archive = tmp_path / f"upload{suffix}"
        subprocess.run([*command, str(archive), "study"], cwd=tmp_path, check=True)
        staged = stage(archive, tmp_path / "staging")
        assert len(staged) == 3

    def test_folder_and_single_file(self, tmp_path: Path, study_files: list[Path]) -> None:
        assert len(stage(tmp_path / "study", tmp_path / "staging")) == 3
        [one] = stage(study_files[0], tmp_path / "staging")
        assert one.path == study_files[0]


def zip_with(tmp_path: Path, name: str, data: bytes = b"x", **info: object) -> Path:
    archive = tmp_path / "hostile.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        entry = zipfile.ZipInfo(name)
        entry.compress_type = zipfile.ZIP_DEFLATED
        for key, value in info.items():
            setattr(entry, key, value)
        zf.writestr(entry, data)
    return archive


class TestHostileUploads:
    @pytest.mark.parametrize("name", ["../escape.dcm", "a/../../escape.dcm", "/etc/passwd"])
    def test_paths_leaving_the_archive(self, tmp_path: Path, name: str) -> None:
        with pytest.raises(HostileArchive, match=r"leaves the archive|absolute path"):
            stage(zip_with(tmp_path, name), tmp_path / "staging")
        assert not (tmp_path / "escape.dcm").exists()

    def test_zip_symlink(self, tmp_path: Path) -> None:
        archive = zip_with(tmp_path, "link", b"/etc/passwd", external_attr=(0o120777 << 16))
        with pytest.raises(HostileArchive, match="symbolic links"):
            stage(archive, tmp_path / "staging")

    @pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
    def test_tar_links(self, tmp_path: Path, kind: bytes) -> None:
        archive = tmp_path / "links.tar"
        with tarfile.open(archive, "w") as tar:
            member = tarfile.TarInfo("evil")
            member.type = kind
            member.linkname = "/etc/passwd"
            tar.addfile(member)
        with pytest.raises(HostileArchive, match="links are refused"):
            stage(archive, tmp_path / "staging")

    def test_zip_bomb_by_ratio(self, tmp_path: Path) -> None:
        archive = zip_with(tmp_path, "zeros.dcm", b"\0" * 20_000_000)
        with pytest.raises(HostileArchive, match="max_ratio"):
            stage(archive, tmp_path / "staging")
        assert sum(f.stat().st_size for f in (tmp_path / "staging").rglob("*") if f.is_file()) == 0

    def test_tar_bomb_by_total_size(self, tmp_path: Path) -> None:
        archive = tmp_path / "big.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            data = os.urandom(3_000_000)
            member = tarfile.TarInfo("big.dcm")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        with pytest.raises(HostileArchive, match="max_unpacked"):
            stage(archive, tmp_path / "staging", Limits(max_unpacked=1_000_000))

    def test_encrypted_zip_entry(self, tmp_path: Path, study_files: list[Path]) -> None:
        archive = tmp_path / "secret.zip"
        subprocess.run(
            ["zip", "-q", "-P", "secret", str(archive), study_files[0].name],
            cwd=study_files[0].parent,
            check=True,
        )
        with pytest.raises(HostileArchive, match="encrypted"):
            stage(archive, tmp_path / "staging")

    @pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tar"])
    def test_truncated_archives(self, tmp_path: Path, study_files: list[Path], suffix: str) -> None:
        archive = tmp_path / f"whole{suffix}"
        if suffix == ".zip":
            with zipfile.ZipFile(archive, "w") as zf:
                for path in study_files:
                    zf.write(path, path.name)
        else:
            with tarfile.open(archive, "w:gz" if suffix == ".tar.gz" else "w") as tar:
                for path in study_files:
                    tar.add(path, arcname=path.name)
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
        with pytest.raises(HostileArchive, match="cut"):
            stage(cut, tmp_path / "staging")

    def test_symlink_in_a_folder(self, tmp_path: Path, study_files: list[Path]) -> None:
        (tmp_path / "study" / "link.dcm").symlink_to("/etc/passwd")
        with pytest.raises(HostileArchive, match="symbolic links"):
            stage(tmp_path / "study", tmp_path / "staging")
