"""Fixtures: free ports, daemons as real subprocesses, DCMTK peers, XNAT schemas."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import SCHEMAS, Site, Xnatd, base_settings, dcmtk_tool, free_port

from xnatd import process

# The settings every xnatd entry point makes at start, for what the tests run in
# process. pynetdicom itself stays stock here: the test senders are a real peer.
process.configure()


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def storescu() -> str:
    return dcmtk_tool("storescu")


@pytest.fixture(scope="session")
def echoscu() -> str:
    return dcmtk_tool("echoscu")


@pytest.fixture(scope="session")
def schemas() -> dict[str, Any]:
    from lxml import etree

    if not (SCHEMAS / "xnat" / "xnat.xsd").is_file():
        pytest.fail(f"XNAT schemas not found at {SCHEMAS} (CI has ../shared beside the checkout)")
    return {
        "xnat": etree.XMLSchema(etree.parse(str(SCHEMAS / "xnat" / "xnat.xsd"))),
        "catalog": etree.XMLSchema(etree.parse(str(SCHEMAS / "catalog" / "catalog.xsd"))),
    }


@pytest.fixture
def make_xnatd(tmp_path: Path) -> Iterator[Callable[..., Xnatd]]:
    """Factory: ``make_xnatd(**site_overrides, settings_hook=fn)`` gives a started daemon."""
    started: list[Xnatd] = []

    def make(start: bool = True, hook: Callable[[dict], None] | None = None, **site: Any) -> Xnatd:
        workdir = tmp_path / f"node{len(started)}"
        workdir.mkdir()
        settings = base_settings(free_port(), free_port(), **site)
        if hook is not None:
            hook(settings)
        daemon = Xnatd(workdir, settings)
        started.append(daemon)
        return daemon.start() if start else daemon

    yield make
    for daemon in started:
        if daemon.process is not None:
            daemon.process.kill()
            daemon.process.wait(timeout=10)


@pytest.fixture
def xnatd(make_xnatd: Callable[..., Xnatd]) -> Xnatd:
    return make_xnatd()


@pytest.fixture
def dcm_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dicom"
    folder.mkdir()
    return folder


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[Path, str], Path]]:
    """Mount a small tmpfs (a real file system that fills up); skips where not allowed."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    sites: list[Site] = []

    def make(projects: dict[str, Any] | None = None, **site: Any) -> Site:
        folder = tmp_path / f"site{len(sites)}"
        folder.mkdir()
        made = Site(folder, projects if projects is not None else {"DEMO": {}}, **site)
        sites.append(made)
        return made

    yield make
    for made in sites:
        made.close()
