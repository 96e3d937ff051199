"""DICOM over TLS on a receiver (SPEC 10.4), against DCMTK and pynetdicom peers."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, pynetdicom_send, storescu_send, wait_for
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from tlscerts import Issued, Pki, make_pki

from xnatd.tls import client_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def with_tls(pki: Pki, ca: Path | None = None, **receiver: Any) -> Callable[[dict], None]:
    """A settings hook: the first receiver speaks TLS only, requiring a client
    certificate the site CA (or ``ca``) signed."""

    def hook(settings: dict) -> None:
        settings["receivers"][0]["tls"] = {
            "cert": str(pki.server.cert),
            "key": str(pki.server.key),
            "ca": str(ca or pki.ca.cert),
            "require_client_cert": True,
        }
        settings["receivers"][0].update(receiver)

    return hook


def dcmtk_tls(identity: Issued | None, pki: Pki) -> list[str]:
    """storescu/echoscu options: TLS with ``identity`` (anonymous TLS without one),
    checking xnatd's certificate against the site CA."""
    mine = ["+tls", str(identity.key), str(identity.cert)] if identity else ["+tla"]
    return [*mine, "+cf", str(pki.ca.cert)]


def echoscu_over(echoscu: str, port: int, options: list[str]) -> int:
    command = [echoscu, "-aet", "SCANNER", "-aec", "XNAT", *options, "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, timeout=60).returncode


def pynetdicom_echo(port: int, context: ssl.SSLContext, aet: str = "SCANNER") -> str:
    """A C-ECHO from stock pynetdicom over TLS: ok, rejected (A-ASSOCIATE-RJ) or failed."""
    ae = AE(ae_title=aet)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="XNAT", tls_args=(context, "localhost"))
    try:
        if assoc.is_rejected:
            return "rejected"
        if not assoc.is_established:
            return "failed"
        status = assoc.send_c_echo()
        assoc.release()
        return "ok" if status and status.Status == 0 else "failed"
    finally:
        ae.shutdown()
        transport = assoc.dul.socket
        if transport is not None and transport.socket is not None:
            transport.socket.close()


def tls_1_1_only(identity: Issued, pki: Pki) -> ssl.SSLContext:
    """A client that offers nothing newer than TLS 1.1 (and the old ciphers it needs)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_verify_locations(pki.ca.cert)
    context.load_cert_chain(identity.cert, identity.key)
    return context


def delayed_acks() -> int:
    """ACKs this machine's TCP sent late, on its delayed-ACK timer (TcpExt DelayedACKs)."""
    names, values = (
        line.split()
        for line in Path("/proc/net/netstat").read_text().splitlines()
        if line.startswith("TcpExt:")
    )
    return int(values[names.index("DelayedACKs")])


def test_storescu_with_a_client_certificate_stores_over_tls_without_delayed_acks(
    make_xnatd, pki: Pki, storescu: str, dcm_dir: Path
) -> None:
    """DCMTK storescu with Nagle on (as modalities) over TLS: every file stored, the
    peer's certificate logged, and the Nagle fix still acknowledging at once."""
    xnatd = make_xnatd(hook=with_tls(pki))
    study = StudySpec("tls", series=[SeriesSpec(1, instances=100, rows=64, columns=64)])
    paths = write_study(study, dcm_dir)
    options = dcmtk_tls(pki.scanner, pki)
    warm = storescu_send(storescu, xnatd.port, paths[:2], extra=options, nagle=True)
    assert warm.returncode == 0, warm.stderr
    before = delayed_acks()
    sent = storescu_send(storescu, xnatd.port, paths, extra=options, nagle=True)
    late = delayed_acks() - before
    assert sent.returncode == 0, sent.stderr
    assert late < 20, f"{late} delayed ACKs for 100 instances over TLS"
    assert xnatd.prearchive()[0]["files"] == 100
    established = xnatd.events("tls_established")
    assert established and all(e["certificate"] == "scanner" for e in established)
    assert all(e["version"] in ("TLSv1.2", "TLSv1.3") for e in established)


def test_pynetdicom_and_xnatd_send_store_over_tls(make_xnatd, pki: Pki, dcm_dir: Path) -> None:
    """Stock pynetdicom (tls_args) and ``xnatd send --tls --cert --key --ca``."""
    xnatd = make_xnatd(hook=with_tls(pki))
    paths = write_study(StudySpec("pyn", series=[SeriesSpec(1, instances=20)]), dcm_dir)
    context = client_context(pki.ca.cert, pki.scanner.cert, pki.scanner.key)
    assert pynetdicom_send(xnatd.port, paths[:10], tls_args=(context, "localhost")) == [0] * 10
    command = [
        sys.executable, "-m", "xnatd", "send", str(dcm_dir), "--host", "127.0.0.1",
        "--port", str(xnatd.port), "--aec", "XNAT", "--aet", "SCANNER", "--json",
        "--tls", "--cert", str(pki.scanner.cert), "--key", str(pki.scanner.key),
        "--ca", str(pki.ca.cert),
    ]  # fmt: skip
    sent = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 20
    assert sum(row["files"] for row in xnatd.prearchive()) == 20
    # Without its certificate the same sender is refused, and says so in one line.
    command[command.index("--cert") : command.index("--ca")] = []
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stdout.strip() == ""
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("xnatd: cannot connect to 127.0.0.1:"), line


def test_a_peer_the_ca_did_not_vouch_for_is_refused(make_xnatd, pki: Pki, echoscu: str) -> None:
    """No certificate, one from another CA, TLS 1.1 only, or plain DICOM: refused at
    the handshake, each logged with its reason; a good peer is served after them."""
    xnatd = make_xnatd(hook=with_tls(pki))
    assert echoscu_over(echoscu, xnatd.port, dcmtk_tls(None, pki)) != 0
    assert echoscu_over(echoscu, xnatd.port, dcmtk_tls(pki.stranger, pki)) != 0
    assert echoscu_over(echoscu, xnatd.port, []) != 0  # plain TCP on a TLS port
    no_certificate = client_context(pki.ca.cert)
    assert pynetdicom_echo(xnatd.port, no_certificate) == "failed"
    stranger = client_context(pki.ca.cert, pki.stranger.cert, pki.stranger.key)
    assert pynetdicom_echo(xnatd.port, stranger) == "failed"
    assert pynetdicom_echo(xnatd.port, tls_1_1_only(pki.scanner, pki)) == "failed"
    refused = wait_for(lambda: (seen := xnatd.events("tls_refused"))[5:] and seen)
    reasons = [event["reason"] for event in refused]
    assert reasons.count("PEER_DID_NOT_RETURN_A_CERTIFICATE") == 2
    assert reasons.count("CERTIFICATE_VERIFY_FAILED") == 2
    assert "WRONG_VERSION_NUMBER" in reasons and "UNSUPPORTED_PROTOCOL" in reasons
    assert not xnatd.events("association_accepted")
    assert echoscu_over(echoscu, xnatd.port, dcmtk_tls(pki.scanner, pki)) == 0
    scanner = client_context(pki.ca.cert, pki.scanner.cert, pki.scanner.key)
    assert pynetdicom_echo(xnatd.port, scanner) == "ok"


def test_the_allow_list_still_applies_over_tls(make_xnatd, pki: Pki) -> None:
    """A certificate the CA signed does not let an AE title the allow-list omits in."""
    xnatd = make_xnatd(hook=with_tls(pki, allow=["SCANNER"]))
    scanner = client_context(pki.ca.cert, pki.scanner.cert, pki.scanner.key)
    assert pynetdicom_echo(xnatd.port, scanner, aet="INTRUDER") == "rejected"
    assert pynetdicom_echo(xnatd.port, scanner, aet="SCANNER") == "ok"


def test_sighup_reloads_the_certificates(make_xnatd, pki: Pki, tmp_path: Path) -> None:
    """The CA file replaced in place and SIGHUP: the next handshake trusts the new CA."""
    trusted = tmp_path / "trusted-ca.pem"
    shutil.copy(pki.ca.cert, trusted)
    xnatd = make_xnatd(hook=with_tls(pki, ca=trusted))
    scanner = client_context(pki.ca.cert, pki.scanner.cert, pki.scanner.key)
    stranger = client_context(pki.ca.cert, pki.stranger.cert, pki.stranger.key)
    assert pynetdicom_echo(xnatd.port, scanner) == "ok"
    assert pynetdicom_echo(xnatd.port, stranger) == "failed"
    shutil.copy(pki.stranger.cert.parent / "other-ca.pem", trusted)
    assert xnatd.process is not None
    xnatd.process.send_signal(signal.SIGHUP)
    wait_for(lambda: xnatd.events("config_reloaded"))
    assert pynetdicom_echo(xnatd.port, stranger) == "ok"
    assert pynetdicom_echo(xnatd.port, scanner) == "failed"


def test_tls_with_two_workers_is_served_by_a_worker(
    make_xnatd, pki: Pki, storescu: str, dcm_dir: Path
) -> None:
    """With ``workers: 2`` the main process hands the connection over before any TLS:
    the worker does the handshake and stores the files."""

    def hook(settings: dict) -> None:
        with_tls(pki)(settings)
        settings["workers"] = 2

    xnatd: Xnatd = make_xnatd(hook=hook, node="n1")
    wait_for(lambda: xnatd.events("worker_ready"))
    paths = write_study(StudySpec("wtls", series=[SeriesSpec(1, instances=30)]), dcm_dir)
    sent = storescu_send(storescu, xnatd.port, paths, extra=dcmtk_tls(pki.scanner, pki))
    assert sent.returncode == 0, sent.stderr
    assert sum(row["files"] for row in xnatd.prearchive()) == 30
    [accepted] = xnatd.events("association_accepted")
    assert accepted["node"] == "n1/w1"


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(body)) + body


def _pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxI", kind, len(body)) + body


def _read_exact(sock: ssl.SSLSocket, length: int) -> bytes:
    data = b""
    while len(data) < length:
        piece = sock.recv(length - len(data))
        if not piece:
            raise ConnectionError("closed by the daemon")
        data += piece
    return data


def _read_pdu(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    kind, length = struct.unpack(">BxI", _read_exact(sock, 6))
    return kind, _read_exact(sock, length)


def _echo_request(message_id: int) -> bytes:
    """A P-DATA-TF PDU holding a whole C-ECHO-RQ on presentation context 1."""
    uid = Verification.encode() + b"\0"  # even length
    elements = struct.pack("<HHI", 0, 0x0002, len(uid)) + uid
    for element, value in ((0x0100, 0x0030), (0x0110, message_id), (0x0800, 0x0101)):
        elements += struct.pack("<HHIH", 0, element, 2, value)
    command = struct.pack("<HHII", 0, 0, 4, len(elements)) + elements
    return _pdu(0x04, struct.pack(">IBB", len(command) + 2, 1, 0x03) + command)


def test_a_pdu_already_decrypted_is_read_without_waiting_for_more(make_xnatd, pki: Pki) -> None:
    """Two C-ECHO requests in one TLS record: the second waits decrypted inside the TLS
    layer, where select() cannot see it; it is answered all the same, at once."""
    xnatd = make_xnatd(hook=with_tls(pki))
    context = client_context(pki.ca.cert, pki.scanner.cert, pki.scanner.key)
    raw = socket.create_connection(("127.0.0.1", xnatd.port), timeout=30)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        syntax = _item(0x40, b"1.2.840.10008.1.2.1")  # explicit VR little endian
        items = _item(0x10, b"1.2.840.10008.3.1.1.1")
        items += _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, Verification.encode()) + syntax)
        items += _item(0x50, _item(0x51, struct.pack(">I", 1 << 16)))
        head = struct.pack(">H2x16s16s32x", 1, b"XNAT".ljust(16), b"SCANNER".ljust(16))
        sock.sendall(_pdu(0x01, head + items))
        assert _read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
        sock.sendall(_echo_request(1) + _echo_request(2))  # one write: one TLS record
        sock.settimeout(5)
        for message_id in (1, 2):
            kind, body = _read_pdu(sock)
            assert kind == 0x04
            assert struct.pack("<HHIH", 0, 0x0120, 2, message_id) in body  # responds to it
            assert struct.pack("<HHIH", 0, 0x0900, 2, 0) in body  # status success
        sock.sendall(_pdu(0x05, b"\0" * 4))
        assert _read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
