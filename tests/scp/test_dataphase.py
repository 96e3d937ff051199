"""The native data phase (scp/dataphase.py, scp/dimse.py) against a daemon, spoken to
through a raw socket, so fragments, contexts and commands are exactly as written here."""

from __future__ import annotations

import socket
import struct
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from dicomgen import SeriesSpec, StudySpec, instance
from helpers import dicom_files, pynetdicom_send, wait_for
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage, Verification

from xnatd.scp.dataphase import SpillingBuffer
from xnatd.scp.dimse import C_STORE_RQ, Command, decode_command, encode_response

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


# -- a peer that writes its own PDUs (PS3.8 9.3) -----------------------------------------
def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(body)) + body


def _uid(text: str) -> bytes:
    return text.encode()


class RawPeer:
    """An SCU on a bare socket: associates with one context per (id, abstract syntax)."""

    def __init__(self, port: int, contexts: dict[int, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        items = _item(0x10, _uid("1.2.840.10008.3.1.1.1"))
        for context_id, abstract in contexts.items():
            body = bytes([context_id, 0, 0, 0]) + _item(0x30, _uid(abstract))
            items += _item(0x20, body + _item(0x40, _uid(EXPLICIT)))
        items += _item(0x50, _item(0x51, struct.pack(">I", 1 << 20)))
        head = struct.pack(">H2x16s16s32x", 1, b"XNAT".ljust(16), b"RAWPEER".ljust(16))
        self.send_pdu(0x01, head + items)
        kind, _ = self.read_pdu()
        assert kind == 0x02, f"association not accepted (PDU type {kind:#x})"

    def send_pdu(self, kind: int, body: bytes) -> None:
        self.sock.sendall(struct.pack(">BxI", kind, len(body)) + body)

    def send_pdvs(self, *pdvs: tuple[int, int, bytes]) -> None:
        """One P-DATA-TF PDU of (context id, message control header, value) items."""
        self.send_pdu(0x04, b"".join(struct.pack(">IBB", len(v) + 2, c, h) + v for c, h, v in pdvs))

    def read_exact(self, length: int) -> bytes:
        data = b""
        while len(data) < length:
            piece = self.sock.recv(length - len(data))
            if not piece:
                raise ConnectionError("closed by the daemon")
            data += piece
        return data

    def read_pdu(self) -> tuple[int, bytes]:
        kind, length = struct.unpack(">BxI", self.read_exact(6))
        return kind, self.read_exact(length)

    def response(self) -> Dataset:
        """The next response command set, decoded by pydicom."""
        kind, body = self.read_pdu()
        assert kind == 0x04, f"expected P-DATA-TF, got PDU type {kind:#x}"
        length, _, control = struct.unpack(">IBB", body[:6])
        assert control == 0x03  # the whole command set in one last fragment
        return read_dataset(DicomBytesIO(body[6 : 4 + length]), True, True)

    def release(self) -> None:
        self.send_pdu(0x05, b"\x00" * 4)
        assert self.read_pdu()[0] == 0x06
        self.sock.close()


def command_set(field: int, message_id: int, sop_class: str, sop_instance: str = "") -> bytes:
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class
    ds.CommandField = field
    ds.MessageID = message_id
    ds.CommandDataSetType = 0x0101 if field == 0x0030 else 0x0000
    if sop_instance:
        ds.AffectedSOPInstanceUID = sop_instance
    body = _encode(ds, implicit=True)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def _encode(ds: Dataset, *, implicit: bool) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


def _mr(seed: str, rows: int = 64) -> Dataset:
    study = StudySpec(seed, series=[SeriesSpec(1, instances=1, rows=rows, columns=rows)])
    return instance(study, study.series[0], 1)


# -- the codec, checked against pydicom and pynetdicom -------------------------------------
def test_a_pynetdicom_c_store_request_decodes() -> None:
    from pynetdicom.dimse_messages import C_STORE_RQ as Message
    from pynetdicom.dimse_primitives import C_STORE

    primitive = C_STORE()
    primitive.MessageID = 513
    primitive.AffectedSOPClassUID = MRImageStorage
    primitive.AffectedSOPInstanceUID = "1.2.3.4.5"
    primitive.Priority = 2
    primitive.DataSet = BytesIO(b"\x08\x00\x18\x00\x00\x00\x00\x00")
    message = Message()
    message.primitive_to_message(primitive)
    encoded = message.encode_msg(1, 16382)  # P-DATA primitives: the command set first
    fragments = [pdv for p in encoded for _, pdv in p.presentation_data_value_list]
    command = decode_command(b"".join(f[1:] for f in fragments if f[0] & 0x01))
    assert command == Command(C_STORE_RQ, 513, True, MRImageStorage, "1.2.3.4.5")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the bad UID, as meant
def test_a_response_reads_back_with_pydicom_and_keeps_a_bad_uid_as_sent() -> None:
    request = Command(C_STORE_RQ, 7, True, "1.2.GARBAGE", "1.2.3")
    response = read_dataset(DicomBytesIO(encode_response(request, 0xC000)), True, True)
    assert response.CommandField == 0x8001 and response.MessageIDBeingRespondedTo == 7
    assert response.Status == 0xC000 and response.CommandDataSetType == 0x0101
    assert response.AffectedSOPClassUID == "1.2.GARBAGE"
    assert response.AffectedSOPInstanceUID == "1.2.3"
    assert response.CommandGroupLength == len(encode_response(request, 0)) - 12


# -- the daemon ----------------------------------------------------------------------------
def test_a_store_cut_into_tiny_fragments_over_several_pdus_is_kept_byte_for_byte(
    xnatd,
) -> None:
    ds = _mr("fragments")
    data = _encode(ds, implicit=False)
    command = command_set(C_STORE_RQ, 1, ds.SOPClassUID, ds.SOPInstanceUID)
    peer = RawPeer(xnatd.port, {1: MRImageStorage})
    peer.send_pdvs((1, 0x01, command[:10]), (1, 0x01, command[10:30]))
    peer.send_pdvs((1, 0x03, command[30:]), (1, 0x00, data[:7]))
    pieces = [data[i : i + 997] for i in range(7, len(data), 997)]
    for piece in pieces[:-1]:
        peer.send_pdvs((1, 0x00, piece))
    peer.send_pdvs((1, 0x02, pieces[-1]))
    response = peer.response()
    assert response.Status == 0x0000 and response.MessageIDBeingRespondedTo == 1
    assert response.AffectedSOPInstanceUID == ds.SOPInstanceUID
    peer.release()
    [stored] = dicom_files(xnatd.data_dir)
    kept = pydicom.dcmread(stored)
    assert kept.file_meta.TransferSyntaxUID == EXPLICIT
    assert stored.read_bytes().endswith(data)


def test_a_release_sent_in_the_middle_of_a_message_is_answered_by_pynetdicom(xnatd) -> None:
    """The data phase reads a message's next PDUs itself only while they are P-DATA:
    an A-RELEASE-RQ that arrives with them, before the message is complete, goes to
    pynetdicom's state machine (which releases), not to the P-DATA reader (which would
    call it a protocol error and abort). The unfinished instance is not kept."""
    ds = _mr("released-midway")
    data = _encode(ds, implicit=False)
    command = command_set(C_STORE_RQ, 1, ds.SOPClassUID, ds.SOPInstanceUID)
    peer = RawPeer(xnatd.port, {1: MRImageStorage})
    pdv = struct.pack(">IBB", len(command) + 2, 1, 0x03) + command
    first = struct.pack(">IBB", 1000 + 2, 1, 0x00) + data[:1000]
    second = struct.pack(">IBB", 1000 + 2, 1, 0x00) + data[1000:2000]
    peer.sock.sendall(
        b"".join(struct.pack(">BxI", 0x04, len(body)) + body for body in (pdv, first, second))
        + struct.pack(">BxI", 0x05, 4)
        + b"\x00" * 4
    )
    kind, _ = peer.read_pdu()
    assert kind == 0x06  # A-RELEASE-RP, not an A-ABORT
    peer.sock.close()
    assert not xnatd.events("association_aborted")
    assert dicom_files(xnatd.data_dir) == []


def test_echo_unknown_commands_and_wrong_contexts_get_a_status_and_the_association_goes_on(
    xnatd,
) -> None:
    ds = _mr("statuses")
    peer = RawPeer(xnatd.port, {1: MRImageStorage, 3: Verification})
    peer.send_pdvs((3, 0x03, command_set(0x0030, 1, Verification)))
    echo = peer.response()
    assert (echo.CommandField, echo.Status) == (0x8030, 0x0000)
    peer.send_pdvs((1, 0x03, command_set(0x0020, 2, MRImageStorage)), (1, 0x02, b""))
    find = peer.response()  # C-FIND-RQ: not something a storage SCP performs
    assert (find.CommandField, find.Status) == (0x8020, 0x0211)
    peer.send_pdvs((3, 0x03, command_set(C_STORE_RQ, 3, MRImageStorage, ds.SOPInstanceUID)))
    peer.send_pdvs((3, 0x02, _encode(ds, implicit=False)))
    assert peer.response().Status == 0x0122  # a store on the Verification context
    peer.send_pdvs((1, 0x03, command_set(C_STORE_RQ, 4, ds.SOPClassUID, ds.SOPInstanceUID)))
    peer.send_pdvs((1, 0x02, _encode(ds, implicit=False)))
    assert peer.response().Status == 0x0000
    peer.release()
    assert len(dicom_files(xnatd.data_dir)) == 1


@pytest.mark.parametrize(
    "pdvs",
    [
        [(5, 0x03, b"")],  # a context that was never proposed
        [(1, 0x02, b"\x00" * 8)],  # a data set with no command before it
        [(1, 0x03, b"\x00\x00\x00\x00\x04\x00")],  # a command set cut short
    ],
    ids=["unknown-context", "data-before-command", "truncated-command"],
)
def test_a_broken_message_aborts_its_association_only(xnatd, dcm_dir: Path, pdvs) -> None:
    peer = RawPeer(xnatd.port, {1: MRImageStorage})
    peer.send_pdvs(*pdvs)
    kind, _ = peer.read_pdu()
    assert kind == 0x07  # A-ABORT
    peer.sock.close()
    assert xnatd.events("association_aborted")
    ds = _mr("after-abort")
    path = dcm_dir / "after.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert pynetdicom_send(xnatd.port, [path]) == [0]  # everyone else is still served


def test_a_large_object_in_one_huge_pdu_is_stored_intact(xnatd, dcm_dir: Path) -> None:
    """pynetdicom, told our maximum PDU is unlimited, sends a 20 MB object as one PDV:
    it is streamed to the spool folder, never held whole (SpillingBuffer's limit)."""
    ds = _mr("huge-pdu", rows=3200)  # 3200 x 3200 x 2 bytes: past the 16 MiB spill limit
    path = dcm_dir / "large.dcm"
    ds.save_as(path, enforce_file_format=True)
    ae = AE(ae_title="BIGPDU")
    ae.add_requested_context(MRImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", xnatd.port, ae_title="XNAT", max_pdu=0)
    assert assoc.is_established and assoc.acceptor.maximum_length == 0
    assert assoc.send_c_store(path).Status == 0x0000
    assoc.release()
    [stored] = wait_for(lambda: dicom_files(xnatd.data_dir))
    assert pydicom.dcmread(stored).PixelData == ds.PixelData
    assert not list((xnatd.data_dir).rglob("*.part"))


def test_large_data_sets_spill_to_the_spool_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(SpillingBuffer, "folder", tmp_path)
    monkeypatch.setattr(SpillingBuffer, "limit", 10)
    small = SpillingBuffer()
    small.write(b"12345")
    assert small.finish() is None and small.getvalue() == b"12345"
    large = SpillingBuffer()
    large.write(b"1234")
    large.write(b"5678901234567890")  # past the limit: memory moves to a file
    large.write(b"abc")
    spill = large.finish()
    assert spill is not None and spill.parent == tmp_path
    assert spill.read_bytes() == b"12345678901234567890abc"
    assert large.getvalue() == b""  # nothing left in memory
