"""The header PHI check end to end: real sample files sent by storescu through a site
script that forgets a nested and a private element; the session is HELD with findings
that carry no values, an owner archives it accepting them, and no log line holds the
patient's name, ID or birth date (issue 19, SPEC 10.2)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pydicom
import pytest
from helpers import Xnatd, storescu_send
from pydicom.data import get_testdata_file

# Replaces the top-level identifiers, forgets Other Patient IDs (a nested sequence)
# and private elements.
FORGETFUL = """version "6.3"
(0010,0010) := "ANON"
(0010,0020) := "S01"
-(0010,0030)
-(0008,0080)
-(0020,0010)
"""
NAME, PATIENT_ID, BIRTH = "Nakamura^Hiroshi", "HN-4471-90", "19530704"


def phi_sample(folder: Path) -> list[Path]:
    """pydicom's CT_small and MR_small, one of them given a patient with a birth date and
    a private element that repeats the patient ID."""
    folder.mkdir(parents=True, exist_ok=True)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.PatientComments = "Project: DEMO Subject: S01 Session: S01"  # labels not from PHI
    ct.save_as(folder / "ct.dcm")
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    mr.PatientName, mr.PatientID, mr.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    mr.PatientComments = "Project: DEMO Subject: S01 Session: S01_MR"
    block = mr.private_block(0x0019, "SCANNER X", create=True)
    block.add_new(0x20, "LO", f"ref {PATIENT_ID}")
    mr.save_as(folder / "mr.dcm")
    return [folder / "ct.dcm", folder / "mr.dcm"]


def with_script(mode: str):
    def hook(settings: dict) -> None:
        script = Path(settings["_workdir"]) / "site.das"
        script.write_text(FORGETFUL)
        settings.pop("_workdir")
        settings["site"]["anonymization"] = str(script)
        settings["site"]["phi_check"] = {"headers": mode}
        settings["receivers"][0]["default_project"] = "DEMO"
        settings["users"] = {
            "owner": {"token_sha256": _sha("owner-token"), "projects": {"DEMO": "owner"}},
            "member": {"token_sha256": _sha("member-token"), "projects": {"DEMO": "member"}},
        }

    return hook


def _sha(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def start(make_xnatd, tmp_path: Path, mode: str) -> Xnatd:
    hook = with_script(mode)

    def settings_hook(settings: dict) -> None:
        settings["_workdir"] = str(tmp_path)
        hook(settings)

    return make_xnatd(hook=settings_hook)


def http(xnatd: Xnatd, method: str, path: str, token: str) -> tuple[int, str]:
    user = token.split("-")[0]
    request = urllib.request.Request(f"http://127.0.0.1:{xnatd.http_port}{path}", method=method)
    request.add_header("Authorization", "Basic " + b64encode(f"{user}:{token}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_forgotten_nested_and_private_values_hold_the_session(
    make_xnatd, tmp_path: Path, storescu: str
) -> None:
    xnatd = start(make_xnatd, tmp_path, "hold")
    assert storescu_send(storescu, xnatd.port, phi_sample(tmp_path / "send")).returncode == 0
    held = xnatd.wait_status("HELD", count=2)
    by_label = {row["label"]: row for row in held}
    assert set(by_label) == {"S01", "S01_MR"}, by_label
    assert "possible patient information" in by_label["S01_MR"]["reason"]

    shown = json.loads(xnatd.cli("prearchive", "show", by_label["S01_MR"]["name"], "--json").stdout)
    where = {(f["kind"], f["where"], f["what"]) for f in shown["findings"]}
    assert ("header", "(0019,1020)", "patient id") in where
    ct = json.loads(xnatd.cli("prearchive", "show", by_label["S01"]["name"], "--json").stdout)
    assert {f["where"] for f in ct["findings"]} == {
        "(0010,1002)[0]/(0010,0020)",
        "(0010,1002)[1]/(0010,0020)",
    }
    assert all(f["file"] and f["scan"] for f in ct["findings"])

    # Archiving needs an owner's explicit acceptance, which is audited.
    name = by_label["S01_MR"]["name"]
    refused = xnatd.cli("prearchive", "archive", name, check=False)
    assert (
        refused.returncode == 1
        and "HELD" in refused.stderr
        and "--accept-findings" in (refused.stderr)
    )
    src = f"/data/services/archive?src=/prearchive/projects/{name}"
    assert http(xnatd, "POST", src, "owner-token")[0] == 409
    assert http(xnatd, "POST", src + "&acceptFindings=true", "member-token")[0] == 403
    status, body = http(xnatd, "POST", src + "&acceptFindings=true", "owner-token")
    assert status == 200, body
    accepted = [e for e in json.loads(xnatd.cli("audit", "--json").stdout)
                if e["event"] == "accept_findings"]  # fmt: skip
    assert accepted and accepted[0]["actor"] == "http:owner"

    status, body = http(
        xnatd, "GET", "/data/prearchive/projects/" + by_label["S01"]["name"], "owner-token"
    )
    assert status == 200 and json.loads(body)["findings"]
    assert 'xnatd_phi_findings_total{kind="header",what="patient id"}' in xnatd.metrics()

    # Nothing that identifies the patient is in the log, the index or the audit trail.
    log = xnatd.log().upper()
    index = (xnatd.data_dir / "index.sqlite").read_bytes().upper()
    for value in (NAME.upper(), "NAKAMURA", PATIENT_ID, BIRTH, "1CT1", "ABCD1234"):
        assert value not in log, value
        assert value.encode() not in index, value


@pytest.mark.parametrize("mode", ["flag", "off"])
def test_flag_lists_findings_on_a_ready_session_and_off_checks_nothing(
    make_xnatd, tmp_path: Path, storescu: str, mode: str
) -> None:
    xnatd = start(make_xnatd, tmp_path, mode)
    assert storescu_send(storescu, xnatd.port, phi_sample(tmp_path / "send")).returncode == 0
    rows = xnatd.wait_status("READY", count=2)
    findings = [
        f
        for row in rows
        for f in json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)[
            "findings"
        ]
    ]
    assert bool(findings) is (mode == "flag")


def test_project_script_that_forgets_holds_the_archive(
    make_xnatd, tmp_path: Path, storescu: str
) -> None:
    """No site script: the session is READY; archiving runs the project script, whose
    check finds the private copy of the ID and holds the session; accepted, it archives
    without running the script twice."""

    def project_script(settings: dict) -> None:
        (tmp_path / "demo.das").write_text(FORGETFUL)
        settings["projects"]["DEMO"] = {"anonymization": str(tmp_path / "demo.das")}
        settings["receivers"][0]["default_project"] = "DEMO"

    xnatd = make_xnatd(hook=project_script)
    [_, mr] = phi_sample(tmp_path / "send")
    assert storescu_send(storescu, xnatd.port, [mr]).returncode == 0
    [row] = xnatd.wait_status("READY")
    held = xnatd.cli("prearchive", "archive", row["name"], check=False)
    assert held.returncode == 1 and "HELD" in held.stderr, held.stderr
    shown = json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)
    assert shown["status"] == "HELD"
    found = {(f["stage"], f["where"], f["what"]) for f in shown["findings"]}
    assert ("archive", "(0019,1020)", "patient id") in found
    assert {stage for stage, _, _ in found} == {"archive"}
    done = xnatd.cli("prearchive", "archive", row["name"], "--accept-findings")
    assert "archived as" in done.stdout
    [archived] = [p for p in xnatd.data_dir.glob("archive/DEMO/arc001/**/*") if p.is_file()
                  and p.suffix not in (".xml", ".json")]  # fmt: skip
    assert str(pydicom.dcmread(archived).PatientName) == "ANON"
