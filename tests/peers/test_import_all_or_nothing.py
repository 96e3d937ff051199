"""Issue 16.8: an import is all or nothing, next to a running daemon and a scanner.

(a) The daemon's sweeper must not build an import's sessions before the import does;
(b) a failed import removes exactly the instances it wrote: what a scanner sent to a
session the import created stays; (c) so do the older sessions' own files, and the
import's files merged into them go.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, storescu_send
from pydicom.uid import JPEGBaseline8Bit

from xnatd import config as config_module
from xnatd.intake.importer import ImportFailed, ImportRequest
from xnatd.intake.intake import Received
from xnatd.metrics import Metrics
from xnatd.pipeline import Pipeline, open_store

# Blanking compressed pixel data fails the file: the import's last file will fail.
SCRIPT = 'version "6.1"\nalterPixels["rectangle", "l=0, t=0, r=2, b=2", "solid", "v=0"]\n'


def test_import_builds_its_own_sessions_beside_a_busy_sweeper(make_xnatd, tmp_path: Path) -> None:
    """Twenty sessions, a sweeper looking every 100 ms: none is claimed under the import."""
    xnatd: Xnatd = make_xnatd(session_idle_timeout="100ms")
    folder = tmp_path / "upload"
    for number in range(20):
        spec = StudySpec(
            f"many{number}", patient_id=f"P{number:02d}", series=[SeriesSpec(1, instances=2)]
        )
        write_study(spec, folder / f"s{number:02d}")
    command = [sys.executable, "-m", "xnatd", "import", str(folder), "--project", "DEMO"]
    result = subprocess.run(
        [*command, "-c", str(xnatd.config_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = xnatd.prearchive()
    assert len(rows) == 20 and {r["status"] for r in rows} == {"READY"}
    assert sum(r["files"] for r in rows) == 40


def _files(xnatd: Xnatd, row: dict) -> list[str]:
    folder = xnatd.data_dir / "prearchive" / row["project"] / row["timestamp"] / row["label"]
    return sorted(p.name for p in folder.glob("SCANS/*/DICOM/*.dcm"))


def test_failed_import_removes_exactly_what_it_wrote(
    make_xnatd, storescu: str, tmp_path: Path, dcm_dir: Path
) -> None:
    def site_script(settings: dict) -> None:
        (tmp_path / "site.das").write_text(SCRIPT)
        settings["site"]["anonymization"] = str(tmp_path / "site.das")
        settings["site"]["phi_check"] = {"headers": "flag"}  # the script keeps the IDs
        settings["workers"] = 1

    xnatd: Xnatd = make_xnatd(hook=site_script)
    older = StudySpec("older", patient_id="OLD", study_description="DEMO")
    assert (
        storescu_send(storescu, xnatd.port, write_study(older, dcm_dir / "older")).returncode == 0
    )
    [before] = xnatd.wait_status("READY")
    older_files = _files(xnatd, before)

    upload = tmp_path / "upload"
    older.series = [SeriesSpec(2, instances=2)]  # merged into the older session
    write_study(older, upload / "a")
    fresh = StudySpec("fresh", patient_id="NEW", series=[SeriesSpec(1, instances=2)])
    write_study(fresh, upload / "b")
    failing = StudySpec(
        "zz", patient_id="ZZ", series=[SeriesSpec(1, transfer_syntax=JPEGBaseline8Bit)]
    )
    write_study(failing, upload / "c")
    scanner = StudySpec("fresh", patient_id="NEW", study_description="DEMO")
    scanner.series = [SeriesSpec(3, instances=2)]
    scanner_paths = write_study(scanner, dcm_dir / "scanner")

    # The import runs here, on the daemon's data directory and index; once it has
    # created the new session, a scanner sends two instances to that same session.
    config = config_module.load(xnatd.config_path)
    store = open_store(config)
    try:
        pipeline = Pipeline.assemble(store, lambda: config, Metrics(), "importer")
        intake, importer = pipeline.intake, pipeline.importer
        stored: list[str] = []
        receive = intake.receive

        def receive_then_scanner(item: Received, cache=None):
            outcome = receive(item, cache)
            stored.append(outcome.result.value)
            if len(stored) == 4:  # both of the fresh study's files are in
                sent = storescu_send(storescu, xnatd.port, scanner_paths)
                assert sent.returncode == 0, sent.stderr
            return outcome

        intake.receive = receive_then_scanner  # type: ignore[method-assign]
        with pytest.raises(ImportFailed, match="compressed"):
            importer.run(ImportRequest(upload, project="DEMO"), quiet=True)
    finally:
        store.close()
    assert stored == ["stored"] * 4 + ["refused"]

    rows = {row["label"]: row for row in xnatd.wait_status("READY", count=2)}
    assert sorted(rows) == ["NEW", "OLD"]
    assert rows["OLD"]["files"] == len(older_files) and _files(xnatd, rows["OLD"]) == older_files
    assert rows["NEW"]["files"] == 2
    kept = _files(xnatd, rows["NEW"])
    assert len(kept) == 2 and all("-3-" in name for name in kept)  # the scanner's series 3
