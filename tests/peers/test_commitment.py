"""Storage Commitment Push Model (SPEC 10.4) with stock pynetdicom as the requester:
reports on the same association and on a new one, across a restart, with two nodes."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, free_port, postgres_schema, wait_for
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import MRImageStorage, StorageCommitmentPushModel
from tlscerts import make_pki

from xnatd.tls import client_context, server_context

WELL_KNOWN = "1.2.840.10008.1.20.1.1"
UNKNOWN = ("1.2.840.10008.5.1.4.1.1.4", "1.2.826.0.1.3680043.8.498.999")  # never sent


@dataclass
class Reports:
    """N-EVENT-REPORTs a requester received: (event type, event information)."""

    received: list[tuple[int, Dataset]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def handle(self, event: evt.Event) -> tuple[int, None]:
        self.received.append((event.request.EventTypeID, event.event_information))
        self.arrived.set()
        return 0x0000, None  # success, no event reply


def commitment_request(paths: list[Path], extra: tuple[tuple[str, str], ...] = ()) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    references = []
    for sop_class, uid in [*(_identity(path) for path in paths), *extra]:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = uid
        references.append(item)
    ds.ReferencedSOPSequence = references
    return ds


def _identity(path: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def store_and_request(
    port: int,
    paths: list[Path],
    request: Dataset,
    reports: Reports,
    *,
    wait_here: bool,
    tls_args: tuple[ssl.SSLContext, str] | None = None,
) -> int:
    """C-STORE the files, then N-ACTION on the same association (as a scanner does);
    with ``wait_here`` the report is awaited before release. Returns the N-ACTION status."""
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)  # as the files are
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="XNAT",
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)],
        tls_args=tls_args,
    )
    try:
        assert assoc.is_established
        for path in paths:
            assert assoc.send_c_store(path).Status == 0x0000
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, WELL_KNOWN)
        if wait_here:
            assert reports.arrived.wait(timeout=20), "no N-EVENT-REPORT on the association"
        assoc.release()
        return int(status.Status)
    finally:
        ae.shutdown()


@pytest.fixture
def scanner() -> Iterator[tuple[int, Reports]]:
    """The requester's own listener, where reports come on a new association."""
    reports = Reports()
    ae = AE(ae_title="SCANNER")
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)],
    )
    try:
        yield port, reports
    finally:
        server.shutdown()


def with_commitment(
    mode: str, scanner_port: int | None = None, **site: Any
) -> Callable[[dict], None]:
    def hook(settings: dict) -> None:
        receiver = settings["receivers"][0]
        receiver["storage_commitment"] = mode
        if scanner_port is not None:
            receiver["commitment_peers"] = {"SCANNER": f"127.0.0.1:{scanner_port}"}
        settings["projects"]["DEMO"]["prearchive"] = "auto-archive"
        settings["site"].update(site)

    return hook


def mr_study(seed: str, folder: Path, count: int = 3) -> list[Path]:
    spec = StudySpec(
        seed,
        patient_id=seed.upper(),  # a session label of its own
        study_description="DEMO",
        series=[SeriesSpec(1, instances=count)],
    )
    return write_study(spec, folder)


def sop_uids(sequence: Any) -> set[str]:
    return {str(item.ReferencedSOPInstanceUID) for item in sequence}


def test_durable_commitment_is_reported_on_the_same_association(make_xnatd, dcm_dir: Path) -> None:
    """``durable``: the report follows the N-ACTION-RSP at once; an instance xnatd never
    received is listed as failed with reason 0x0112 (no such object instance)."""
    xnatd = make_xnatd(hook=with_commitment("durable"))
    paths = mr_study("durable", dcm_dir)
    reports = Reports()
    request = commitment_request(paths, extra=(UNKNOWN,))
    assert store_and_request(xnatd.port, paths, request, reports, wait_here=True) == 0
    [(event_type, info)] = reports.received
    assert event_type == 2  # some failed
    assert info.TransactionUID == request.TransactionUID
    assert sop_uids(info.ReferencedSOPSequence) == {_identity(p)[1] for p in paths}
    [failed] = info.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (UNKNOWN[1], 0x0112)
    # The requester's N-EVENT-REPORT-RSP is taken as such: the association is released.
    [closed] = wait_for(lambda: xnatd.events("association_closed"))
    assert closed["result"] == "released" and not xnatd.events("association_aborted")


def test_archived_commitment_is_reported_on_a_new_association_once_archived(
    make_xnatd, dcm_dir: Path, scanner: tuple[int, Reports]
) -> None:
    port, reports = scanner
    xnatd = make_xnatd(hook=with_commitment("archived", port))
    paths = mr_study("archived", dcm_dir)
    request = commitment_request(paths)
    assert store_and_request(xnatd.port, paths, request, Reports(), wait_here=False) == 0
    assert reports.arrived.wait(timeout=30), "no report after the session was archived"
    [(event_type, info)] = reports.received
    assert event_type == 1 and "FailedSOPSequence" not in info
    assert sop_uids(info.ReferencedSOPSequence) == {_identity(p)[1] for p in paths}
    assert xnatd.cli("sessions", "list").stdout.count("DEMO") >= 1
    [sent] = xnatd.events("commitment_reported")
    assert sent["via"] == f"127.0.0.1:{port}"


def test_a_pending_commitment_survives_a_restart(
    make_xnatd, dcm_dir: Path, scanner: tuple[int, Reports]
) -> None:
    """Requested, the daemon stopped before the session is archived; the restarted
    daemon archives it and sends the report."""
    port, reports = scanner
    xnatd: Xnatd = make_xnatd(hook=with_commitment("archived", port, session_idle_timeout="1h"))
    paths = mr_study("restart", dcm_dir)
    request = commitment_request(paths)
    assert store_and_request(xnatd.port, paths, request, Reports(), wait_here=False) == 0
    assert xnatd.stop() == 0
    assert not reports.received
    xnatd.settings["site"]["session_idle_timeout"] = "1s"
    xnatd.write_config()
    xnatd.start()
    assert reports.arrived.wait(timeout=30), "no report after the restart"
    [(event_type, info)] = reports.received
    assert event_type == 1 and info.TransactionUID == request.TransactionUID


def test_two_nodes_send_a_pending_report_once(
    make_xnatd, tmp_path: Path, dcm_dir: Path, scanner: tuple[int, Reports]
) -> None:
    """Two nodes share the index: the request taken by one is reported by whichever
    claims it, and only once."""
    port, reports = scanner
    with postgres_schema() as url:
        nodes = []
        for name in ("node-a", "node-b"):
            hook = with_commitment(
                "archived",
                port,
                data_dir=str(tmp_path / "shared-data"),
                node=name,
                lease="3s",
                session_idle_timeout="1s",
            )

            def shared(settings: dict, hook: Callable[[dict], None] = hook) -> None:
                hook(settings)
                settings["index"] = url

            nodes.append(make_xnatd(hook=shared))
        a, b = nodes
        first, second = mr_study("n1", dcm_dir / "a"), mr_study("n2", dcm_dir / "b")
        assert (
            store_and_request(a.port, first, commitment_request(first), Reports(), wait_here=False)
            == 0
        )
        assert (
            store_and_request(
                b.port, second, commitment_request(second), Reports(), wait_here=False
            )
            == 0
        )
        wait_for(lambda: len(reports.received) >= 2, timeout=40)
        # Every node has looked for due requests since: a second report would be here.
        for node in (a, b):
            node.stop()
        assert len(reports.received) == 2
        sent = a.events("commitment_reported") + b.events("commitment_reported")
        assert len(sent) == 2


def test_a_tls_receiver_reports_over_tls_with_its_certificate(
    make_xnatd, dcm_dir: Path, tmp_path: Path
) -> None:
    """A receiver that speaks TLS only sends its later reports over TLS too: here to a
    requester that accepts only peers the site CA signed."""
    pki = make_pki(tmp_path / "pki")
    reports = Reports()
    ae = AE(ae_title="SCANNER")
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    port = free_port()
    listening = server_context(pki.scanner.cert, pki.scanner.key, pki.ca.cert, True)
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)],
        ssl_context=listening,
    )
    try:

        def hook(settings: dict) -> None:
            with_commitment("archived", port)(settings)
            settings["receivers"][0]["tls"] = {
                "cert": str(pki.server.cert),
                "key": str(pki.server.key),
                "ca": str(pki.ca.cert),
                "require_client_cert": True,
            }

        xnatd = make_xnatd(hook=hook)
        paths = mr_study("tls", dcm_dir)
        context = client_context(pki.ca.cert, pki.scanner.cert, pki.scanner.key)
        status = store_and_request(
            xnatd.port,
            paths,
            commitment_request(paths),
            Reports(),
            wait_here=False,
            tls_args=(context, "localhost"),
        )
        assert status == 0
        assert reports.arrived.wait(timeout=30), "no report over TLS"
        [(event_type, _)] = reports.received
        assert event_type == 1
    finally:
        server.shutdown()
