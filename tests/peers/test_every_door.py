"""One rule at every door: the same files through C-STORE, import, the inbox and STOW-RS.

Issue 16: Color Palette, Hanging Protocol, the implant template classes, Defined
Procedure Protocol, Protocol Approval and Inventory were refused at association
(pynetdicom's storage list) while ``xnatd import`` stored them, and a 64-hex-digit
hash-style SOP Instance UID was refused over C-STORE but stored by import.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from apiclient import TOKENS, users
from dicomgen import SeriesSpec, StudySpec, instance, write
from helpers import Xnatd, base_settings, free_port, pynetdicom_send, storescu_send, wait_for
from pydicom.uid import MRImageStorage
from rawstore import RawStore, send_raw

from xnatd.dicom import Tag, read_header

UNLISTED_STORAGE = {
    "ColorPalette": "1.2.840.10008.5.1.4.39.1",
    "HangingProtocol": "1.2.840.10008.5.1.4.38.1",
    "GenericImplantTemplate": "1.2.840.10008.5.1.4.43.1",
    "ImplantAssemblyTemplate": "1.2.840.10008.5.1.4.44.1",
    "ImplantTemplateGroup": "1.2.840.10008.5.1.4.45.1",
    "CTDefinedProcedureProtocol": "1.2.840.10008.5.1.4.1.1.200.1",
    "ProtocolApproval": "1.2.840.10008.5.1.4.1.1.200.3",
    "Inventory": "1.2.840.10008.5.1.4.1.1.201.1",
}
INVENTORY = UNLISTED_STORAGE["Inventory"]
HASH_UID = hashlib.sha256(b"issue 16").hexdigest()  # 64 hex digits, as some tools write


def the_files(folder: Path) -> list[Path]:
    """One study: an instance of each storage class, and an MR with a hash-style UID."""
    study = StudySpec("every-door", patient_id="DOORS", study_description="DEMO")
    datasets = []
    for number, (name, sop_class) in enumerate(UNLISTED_STORAGE.items(), start=1):
        series = SeriesSpec(number, "OT", 1, name, sop_class=sop_class)
        datasets.append(instance(study, series, 1))
    hashed = instance(study, SeriesSpec(99, "MR", 1, "hashed", sop_class=MRImageStorage), 1)
    hashed.SOPInstanceUID = HASH_UID
    hashed.file_meta.MediaStorageSOPInstanceUID = HASH_UID
    datasets.append(hashed)
    return write(datasets, folder)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Xnatd]:
    settings = base_settings(free_port(), free_port())
    settings["users"] = users()
    settings["inbox"] = {"settle": "300ms"}
    for project in ("IMPORT", "INBOX", "STOW"):
        settings["projects"][project] = {}
        settings["users"]["alice"]["projects"][project] = "owner"
    (tmp_path / "site").mkdir()
    started = Xnatd(tmp_path / "site", settings).start()
    yield started
    if started.process is not None:
        started.stop()


def stow(daemon: Xnatd, project: str, files: list[Path]) -> requests.Response:
    """STOW-RS of the files as they are, one part each, as alice (owner)."""
    boundary = "xnatd-door"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + path.read_bytes()
        + b"\r\n"
        for path in files
    )
    return requests.post(
        f"http://127.0.0.1:{daemon.http_port}/dicomweb/projects/{project}/studies",
        data=body + f"--{boundary}--\r\n".encode(),
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
        auth=("alice", TOKENS["alice"]),
        timeout=60,
    )


def files_in(daemon: Xnatd, project: str) -> int:
    return sum(row["files"] for row in daemon.prearchive() if row["project"] == project)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom frowns on the hash-style UID
def test_the_same_files_are_stored_through_every_door(
    daemon: Xnatd, storescu: str, tmp_path: Path
) -> None:
    files = the_files(tmp_path / "files")
    expected = len(files)

    # C-STORE: DCMTK proposes only a fixed list of common classes unless -R (the files'
    # own); DCMTK 3.6.7 does not know Inventory Storage and will not send it, so stock
    # pynetdicom sends that file as it is.
    inventory = [p for p in files if read_header(p.read_bytes())[Tag.SOPClassUID] == INVENTORY]
    sent = storescu_send(
        storescu, daemon.port, [p for p in files if p not in inventory], extra=["-R"]
    )
    assert sent.returncode == 0, sent.stderr
    assert pynetdicom_send(daemon.port, inventory) == [0x0000]
    wait_for(lambda: files_in(daemon, "DEMO") == expected)

    imported = daemon.cli("import", str(tmp_path / "files"), "--project", "IMPORT")
    assert imported.returncode == 0
    assert files_in(daemon, "IMPORT") == expected

    inbox = daemon.data_dir / "inbox" / "INBOX"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tmp_path / "files", inbox / "drop")
    wait_for(lambda: files_in(daemon, "INBOX") == expected, timeout=30)

    response = stow(daemon, "STOW", files)
    assert response.status_code == 200, response.text
    wait_for(lambda: files_in(daemon, "STOW") == expected)


def test_a_class_no_door_stores_is_refused_at_each(daemon: Xnatd, tmp_path: Path) -> None:
    """The same rule refuses: a Storage Commitment "instance" is not stored anywhere."""
    study = StudySpec("no-door", patient_id="NODOOR", study_description="DEMO")
    commitment = "1.2.840.10008.1.20.1"
    [path] = write([instance(study, SeriesSpec(1, "OT", 1, sop_class=commitment), 1)], tmp_path)
    imported = daemon.cli("import", str(path), "--project", "IMPORT", check=False)
    assert imported.returncode != 0 and "not a storage SOP class" in imported.stderr
    with pytest.raises(ConnectionError):  # no presentation context for it: nothing to send
        send_raw(daemon.port, [RawStore(commitment, "1.2.3", "1.2.840.10008.1.2.1", b"")])
    assert daemon.prearchive() == []


def test_a_damaged_file_is_refused_at_every_door(daemon: Xnatd, tmp_path: Path) -> None:
    """Item 1 at every door: pixel data cut short is never stored, whoever brings it."""
    study = StudySpec("damaged-door", patient_id="DAMAGED", study_description="DEMO")
    [path] = write([instance(study, SeriesSpec(1), 1)], tmp_path / "files")
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])
    start = 144 + int.from_bytes(whole[140:144], "little")
    header = read_header(whole)

    [answer] = send_raw(
        daemon.port,
        [RawStore(header[Tag.SOPClassUID], header[Tag.SOPInstanceUID], "1.2.840.10008.1.2.1",
                  whole[start:-10])],
    )  # fmt: skip
    assert answer.status == 0xC000 and answer.error_comment.startswith("malformed data set")

    imported = daemon.cli("import", str(path), "--project", "IMPORT", check=False)
    assert imported.returncode != 0 and "malformed data set" in imported.stderr

    inbox = daemon.data_dir / "inbox" / "INBOX"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, inbox / "damaged.dcm")
    reason = daemon.data_dir / "inbox" / ".failed" / "INBOX" / "damaged.dcm.reason.txt"
    wait_for(reason.exists, timeout=30)
    assert "malformed data set" in reason.read_text()

    response = stow(daemon, "STOW", [path])
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert daemon.prearchive() == []
