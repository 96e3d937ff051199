"""The archive through real processes: racing commands, IDs, search, audit, reindex."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, postgres_schema, storescu_send, wait_for

ALLOCATE = """
import sys
from pathlib import Path
from xnatd.store.index import open_index
from xnatd.store.layout import DataDir
index = open_index(sys.argv[3], DataDir(Path(sys.argv[1])).index_file)
print("\\n".join(index.allocate_id("E", "XNATD") for _ in range(int(sys.argv[2]))))
index.close()
"""


def run_cli(xnatd: Xnatd, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "xnatd", *args, "-c", str(xnatd.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def manual_projects(settings: dict) -> None:
    settings["projects"] = {
        "DEMO": {"prearchive": "manual"},
        "AUTO": {"prearchive": "auto-archive"},
        "QUAR": {"prearchive": "auto-archive", "quarantine": True},
        "OTHER": {},
    }


def test_two_processes_racing_on_one_session(make_xnatd, storescu: str, dcm_dir: Path) -> None:
    """Two archive commands at once: one archives, the other is told why it could not."""
    xnatd = make_xnatd(hook=manual_projects)
    paths = write_study(
        StudySpec("race", study_description="DEMO", series=[SeriesSpec(1, instances=30)]), dcm_dir
    )
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    [row] = xnatd.wait_status("READY")
    racers = [run_cli(xnatd, "prearchive", "archive", row["name"]) for _ in range(2)]
    racers.append(run_cli(xnatd, "prearchive", "delete", row["name"]))
    results = [(r.wait(timeout=60), *r.communicate()) for r in racers]
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) == 1, results
    for code, _, error in losers:
        assert code == 1
        assert "is ARCHIVING" in error or "is DELETING" in error or "no prearchive session" in error
    archived = json.loads(xnatd.cli("sessions", "list", "--json").stdout)
    deleted_files = list((xnatd.data_dir / "deleted").rglob("*.dcm"))
    assert (len(archived), len(deleted_files)) in ((1, 0), (0, 30))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ids_unique_across_concurrent_processes(tmp_path: Path, backend: str) -> None:
    with contextlib.ExitStack() as stack:
        spec = "sqlite" if backend == "sqlite" else stack.enter_context(postgres_schema())
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", ALLOCATE, str(tmp_path), "50", spec],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        ids = [line for w in workers for line in w.communicate(timeout=120)[0].split()]
    assert [w.returncode for w in workers] == [0] * 4
    assert sorted(ids) == [f"XNATD_E{n:05d}" for n in range(1, 201)]


def test_search_filters(make_xnatd, storescu: str, dcm_dir: Path) -> None:
    xnatd = make_xnatd(hook=manual_projects)
    specs = [
        StudySpec(
            "mr",
            patient_id="MR_A",
            patient_name="ALPHA",
            study_description="AUTO",
            series=[SeriesSpec(1, description="T1 MPRAGE"), SeriesSpec(2, description="DWI 64dir")],
        ),
        StudySpec(
            "ct",
            patient_id="CT_B",
            patient_name="BETA",
            study_description="AUTO",
            series=[SeriesSpec(1, "CT", description="Head helical")],
            extra={"StudyDate": "20230101"},
        ),
    ]
    paths = [p for spec in specs for p in write_study(spec, dcm_dir / spec.seed)]
    assert storescu_send(storescu, xnatd.port, paths).returncode == 0
    wait_for(
        lambda: len(json.loads(xnatd.cli("sessions", "list", "--json").stdout)) == 2, timeout=30
    )

    def labels(*filters: str) -> list[str]:
        rows = json.loads(xnatd.cli("sessions", "list", "--json", *filters).stdout)
        return sorted(row["label"] for row in rows)

    assert labels() == ["CT_B", "MR_A"]
    assert labels("--modality", "ct") == ["CT_B"]
    assert labels("--scan-type", "dwi") == ["MR_A"]  # series description, any case
    assert labels("--subject", "BETA") == ["CT_B"]
    assert labels("--since", "2024-01-01") == ["MR_A"]
    assert labels("--until", "2023-12-31") == ["CT_B"]
    assert labels("--study-uid", str(specs[0].study_uid)) == ["MR_A"]
    assert labels("--label", "MR_A", "--project", "AUTO") == ["MR_A"]
    [row] = json.loads(xnatd.cli("sessions", "list", "--json", "--modality", "MR").stdout)
    assert set(row) >= {
        "id",
        "project",
        "subject",
        "subject_id",
        "label",
        "date",
        "modality",
        "xsi_type",
        "study_uid",
        "scans",
        "files",
        "status",
        "path",
    }
    assert (row["xsi_type"], row["scans"], row["files"], row["date"]) == (
        "xnat:mrSessionData",
        2,
        6,
        "2024-03-05",
    )
    shown = json.loads(xnatd.cli("sessions", "show", row["id"], "--json").stdout)
    assert sorted(scan["type"] for scan in shown["scan_list"]) == ["DWI 64dir", "T1 MPRAGE"]


def test_trail_from_receive_to_delete_and_reindex(make_xnatd, storescu: str, dcm_dir: Path) -> None:
    """Receive, build, archive, quarantine, release, delete: then lose the index and reindex."""
    xnatd = make_xnatd(hook=manual_projects)
    specs = {
        "AUTO": StudySpec("auto", patient_id="A1", study_description="AUTO"),
        "QUAR": StudySpec("quar", patient_id="Q1", study_description="QUAR"),
        "GONE": StudySpec("gone", patient_id="G1", study_description="AUTO"),
        "WAIT": StudySpec("wait", patient_id="W1", study_description="DEMO"),
    }
    for key, spec in specs.items():
        assert (
            storescu_send(
                storescu, xnatd.port, write_study(spec, dcm_dir / key), aet="MR1"
            ).returncode
            == 0
        )
    wait_for(
        lambda: len(json.loads(xnatd.cli("sessions", "list", "--json").stdout)) == 3, timeout=30
    )
    ids = {
        row["label"]: row["id"]
        for row in json.loads(xnatd.cli("sessions", "list", "--json").stdout)
    }
    xnatd.cli("sessions", "delete", ids["G1"], "--purge-files")
    xnatd.cli("sessions", "release", ids["Q1"])

    trail = json.loads(xnatd.cli("audit", "--session", ids["G1"], "--json").stdout)
    assert [event["event"] for event in trail] == ["receive", "build", "archive", "delete"]
    assert trail[0]["actor"] == "MR1" and trail[0]["details"]["files"] == 3
    assert trail[2]["actor"] == "auto-archive" and trail[3]["actor"].startswith("cli:")

    assert xnatd.stop() == 0
    before = xnatd.cli("sessions", "list", "--status", "all", "--json").stdout
    before_prearchive = xnatd.prearchive()
    before_audit = json.loads(xnatd.cli("audit", "--json").stdout)
    for leftover in xnatd.data_dir.glob("index.sqlite*"):
        leftover.unlink()
    report = xnatd.cli("reindex")
    assert "reindexed 3 archived and 1 prearchive sessions" in report.stdout
    assert xnatd.cli("sessions", "list", "--status", "all", "--json").stdout == before
    assert json.loads(xnatd.cli("audit", "--json").stdout) == before_audit
    [waiting] = xnatd.prearchive()
    assert {k: waiting[k] for k in ("name", "status", "files", "subject")} == {
        k: before_prearchive[0][k] for k in ("name", "status", "files", "subject")
    }

    # After reindex, new IDs continue past every ID ever handed out (deleted included).
    xnatd.cli("prearchive", "move", waiting["name"], "--to", "AUTO")
    [moved] = xnatd.prearchive()
    archived = xnatd.cli("prearchive", "archive", moved["name"])
    assert "archived as XNATD_E00004" in archived.stdout
