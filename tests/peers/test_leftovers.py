"""Issue 16.5: a writer killed between its fsync and its rename leaves no file for good."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, storescu_send, wait_for

# Writes one file with xnatd's durable write and stops itself where the rename would be:
# the test then kills it (-9) or keeps it stopped (a live writer).
_WRITER = """
import os, signal, sys
from pathlib import Path
from xnatd.store import durable
os.replace = lambda source, target: os.kill(os.getpid(), signal.SIGSTOP)
durable.write_durably(Path(sys.argv[1]), b"DICM" * 1000, Path(sys.argv[2]))
"""


class Writer:
    """A real process stopped between fsync and rename; ``kill`` makes it a dead one."""

    def __init__(self, target: Path, root: Path) -> None:
        self.target = target
        self.process = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(root)])
        self.part = wait_for(self._part, timeout=30)

    def _part(self) -> Path | None:
        assert self.process.poll() is None or self.process.returncode == -signal.SIGSTOP
        found = sorted(self.target.parent.glob(f".{self.target.name}.*.part"))
        if found and subprocess.run(
            ["ps", "-o", "stat=", "-p", str(self.process.pid)], capture_output=True, text=True
        ).stdout.startswith("T"):
            return found[0]
        return None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    made: list[Writer] = []
    yield made
    for writer in made:
        if writer.process.poll() is None:
            writer.kill()


def test_start_up_removes_parts_of_dead_writers_only(make_xnatd, writers: list[Writer]) -> None:
    xnatd: Xnatd = make_xnatd(start=False)
    scan = xnatd.data_dir / "prearchive" / "DEMO" / "20240101_000000000" / "S1" / "SCANS" / "1"
    dead = Writer(scan / "DICOM" / "a.dcm", xnatd.workdir)
    writers.append(dead)
    live = Writer(scan / "DICOM" / "b.dcm", xnatd.workdir)
    writers.append(live)
    dead.kill()
    xnatd.start()
    wait_for(lambda: not dead.part.exists(), timeout=20)
    assert live.part.exists(), "a part whose writer is alive must stay"
    assert [e["files"] for e in xnatd.events("stray_parts_removed")] == [1]


def test_build_removes_parts_of_dead_writers(
    xnatd: Xnatd, storescu: str, dcm_dir: Path, writers: list[Writer]
) -> None:
    study = StudySpec("leftover", study_description="DEMO", series=[SeriesSpec(1, instances=3)])
    paths = write_study(study, dcm_dir)
    assert storescu_send(storescu, xnatd.port, paths[:2]).returncode == 0
    [row] = xnatd.wait_status("READY")
    folder = xnatd.data_dir / "prearchive" / row["project"] / row["timestamp"] / row["label"]
    [dicom] = list(folder.glob("SCANS/*/DICOM"))
    dead = Writer(dicom / "killed.dcm", xnatd.data_dir / "prearchive")
    writers.append(dead)
    dead.kill()
    assert storescu_send(storescu, xnatd.port, paths[2:]).returncode == 0
    wait_for(lambda: [r for r in xnatd.prearchive() if r["status"] == "READY" and r["files"] == 3])
    assert not dead.part.exists()
    assert sorted(p.name for p in dicom.iterdir() if p.name.startswith(".")) == []
