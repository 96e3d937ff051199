"""``xnatd receipts`` and ``GET /data/receipts`` (issue 22): per sender, what was received,
rejected (with the reason), committed, and which session each instance ended in."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pydicom
import requests
from apiclient import TOKENS, users
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import pynetdicom_send
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import MRImageStorage, StorageCommitmentPushModel

SITE_SCRIPT = 'version "6.3"\n(0020,0011) = "99" ? reject[]\n'


def send_and_commit(port: int, paths: list[Path], committed: list[Path]) -> None:
    """SCANNER stores ``paths`` and asks for commitment of ``committed``."""
    request = Dataset()
    request.TransactionUID = generate_uid()
    items = []
    for path in committed:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = (
            ds.SOPClassUID,
            ds.SOPInstanceUID,
        )
        items.append(item)
    request.ReferencedSOPSequence = items
    reported = threading.Event()

    def on_report(event: evt.Event) -> tuple[int, None]:
        reported.set()
        return 0x0000, None

    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)  # as the files are
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="XNAT", evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
    )
    try:
        assert assoc.is_established
        for path in paths:
            assert assoc.send_c_store(path).Status == 0x0000
        status, _ = assoc.send_n_action(
            request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1"
        )
        assert status.Status == 0x0000
        assert reported.wait(timeout=20)
        # How the association ends is not under test here (test_commitment.py checks
        # the release); an abort cannot meet pynetdicom's requester still answering
        # the report on its reactor, which once left release() waiting for ever.
        assoc.abort()
    finally:
        ae.shutdown()


def test_receipts_say_where_each_sent_instance_is(make_xnatd, dcm_dir: Path) -> None:
    def hook(settings: dict) -> None:
        settings["receivers"][0]["storage_commitment"] = "durable"
        settings["site"]["anonymization"] = "site.das"
        settings["site"]["phi_check"] = {"headers": "flag"}  # the script keeps the name
        settings["users"] = users()

    xnatd = make_xnatd(start=False, hook=hook)
    (xnatd.workdir / "site.das").write_text(SITE_SCRIPT)
    xnatd.start()
    study = StudySpec(
        "receipts",
        patient_id="R1",
        study_description="DEMO",
        series=[SeriesSpec(1, instances=3), SeriesSpec(99, instances=1)],
    )
    paths = write_study(study, dcm_dir / "scanner")
    kept = [p for p in paths if pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber == 1]
    send_and_commit(xnatd.port, paths, committed=kept)
    other = write_study(StudySpec("other", patient_id="R2"), dcm_dir / "other")
    assert set(pynetdicom_send(xnatd.port, other, aet="WORKSTATION")) == {0}

    [scanner] = json.loads(xnatd.cli("receipts", "--calling-ae", "SCANNER", "--json").stdout)
    assert (scanner["received"], scanner["rejected"], scanner["committed"]) == (3, 1, 3)
    assert scanner["rejections"] == {"rejected by the site script": 1}
    [session] = scanner["sessions"]
    assert (session["place"], session["project"], session["instances"]) == ("prearchive", "DEMO", 3)
    assert all(i["committed"] and i["session"] == session["session"] for i in scanner["instances"])

    # Archived, the same instances are found in the archive, under the session's ID.
    xnatd.wait_status("READY", count=2)
    assert xnatd.cli("prearchive", "archive", session["session"]).returncode == 0
    everyone = json.loads(xnatd.cli("receipts", "--json").stdout)
    assert [entry["calling_ae"] for entry in everyone] == ["SCANNER", "WORKSTATION"]
    [archived] = everyone[0]["sessions"]
    assert (archived["place"], archived["session"]) == ("archive", "XNATD_E00001")
    text = xnatd.cli("receipts", "--calling-ae", "SCANNER").stdout
    assert "SCANNER: received 3, rejected 1 (1 rejected by the site script), committed 3" in text
    assert "XNATD_E00001" in text

    assert json.loads(xnatd.cli("receipts", "--since", "2999-01-01", "--json").stdout) == []
    bad = xnatd.cli("receipts", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr

    url = f"{xnatd.http_url}/data/receipts"
    answer = requests.get(url, params={"calling_ae": "SCANNER"}, auth=("root", TOKENS["root"]))
    assert answer.status_code == 200
    assert answer.json()[0]["sessions"][0]["session"] == "XNATD_E00001"
    denied = requests.get(url, auth=("alice", TOKENS["alice"]), timeout=10)
    assert denied.status_code == 403
