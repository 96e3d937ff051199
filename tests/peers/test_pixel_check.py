"""Burned-in text (issue 20): one annotated ultrasound image among clean CT slices, sent
by storescu in each compressed syntax, holds the session with a finding for that image
only; cleaning blanks exactly the found regions and the session is READY again."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from helpers import Xnatd, storescu_send, wait_for
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
# storescu proposes the file's own compressed syntax only when told to.
PROPOSE = {
    ExplicitVRLittleEndian: [],
    RLELossless: ["--propose-rle"],
    JPEGLSLossless: ["--propose-jls-lossless"],
    JPEG2000Lossless: ["--propose-j2k-lossless"],
    JPEGBaseline8Bit: ["--propose-jpeg8"],
}


def annotated_ultrasound(template: Path, out: Path, syntax: str) -> np.ndarray:
    """An ultrasound-like frame (speckle in a sector) with a name, a date and an ID
    burned in, in the study of ``template``; returns its pixels."""
    rng = np.random.default_rng(7)
    frame = rng.gamma(2.0, 18.0, (480, 640)).clip(0, 255)
    yy, xx = np.mgrid[0:480, 0:640]
    frame[np.hypot(xx - 320, yy + 40) > 470] = 0  # the sector's edge
    image = Image.fromarray(frame.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 16)
    draw.text((12, 10), "GARCIA^MARIA", fill=255, font=font)
    draw.text((12, 32), "1979-11-23", fill=255, font=font)
    draw.text((480, 452), "ID 88412007", fill=240, font=font)
    pixels = np.asarray(image)
    study = pydicom.dcmread(template, stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "StudyDescription",
                    "StudyDate", "PatientComments"):  # fmt: skip
        if keyword in study:
            setattr(ds, keyword, study.data_element(keyword).value)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "US", 50, 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    if syntax == JPEGBaseline8Bit:  # pydicom does not encode JPEG: Pillow does
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    elif syntax != ExplicitVRLittleEndian:
        ds.compress(syntax, pixels)
    ds.save_as(out, enforce_file_format=True)
    return pydicom.dcmread(out).pixel_array  # as a receiver decodes it


def holding_pixels(settings: dict) -> None:
    settings["site"]["phi_check"] = {"pixels": "hold"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "syntax",
    [ExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGBaseline8Bit],
)
def test_annotated_ultrasound_among_ct_is_found_and_cleaned(
    make_xnatd, storescu: str, dcm_dir: Path, syntax: str
) -> None:
    ct = write_study(
        StudySpec(
            "burned", study_description="DEMO", series=[SeriesSpec(1, modality="CT", instances=4)]
        ),
        dcm_dir,
    )
    us_path = dcm_dir / "us.dcm"
    original = annotated_ultrasound(ct[0], us_path, syntax)
    xnatd: Xnatd = make_xnatd(hook=holding_pixels)
    sent = storescu_send(storescu, xnatd.port, [*ct, us_path], extra=PROPOSE[syntax])
    assert sent.returncode == 0, sent.stderr
    [row] = xnatd.wait_status("HELD", timeout=120)
    shown = json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)
    findings = shown["findings"]
    assert findings and {f["kind"] for f in findings} == {"pixels"}
    assert {f["scan"] for f in findings} == {"50"}, findings  # the ultrasound image only
    assert {f["what"] for f in findings} >= {"text (date)"}
    assert all(f["where"].startswith("frame 1: ") for f in findings)
    log = xnatd.log()
    assert "GARCIA" not in log.upper() and "88412007" not in log  # text never logged

    done = xnatd.cli("prearchive", "clean-pixels", row["name"], "--all-findings")
    assert "checked again: READY" in done.stdout, done.stdout + done.stderr
    [stored] = list((xnatd.data_dir / "prearchive").glob("DEMO/*/*/SCANS/50/DICOM/*.dcm"))
    cleaned = pydicom.dcmread(stored).pixel_array
    blanked = np.zeros(original.shape, dtype=bool)
    for finding in findings:
        x, y, w, h = (int(v) for v in finding["where"].split(": ")[1].split(","))
        blanked[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2] = True
    assert (cleaned[blanked] == original.min()).all()  # every found region blank
    assert (cleaned[~blanked] == original[~blanked]).all()  # nothing else touched
    events = [e["event"] for e in json.loads(xnatd.cli("audit", "--json").stdout)]
    assert "clean_pixels" in events


def test_ct_session_without_candidates_is_not_decoded(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    """A CT session has no candidate image: READY, no finding, no OCR worker started."""
    ct = write_study(
        StudySpec("plain", study_description="DEMO", series=[SeriesSpec(1, modality="CT")]),
        dcm_dir,
    )
    xnatd: Xnatd = make_xnatd(hook=holding_pixels)
    assert storescu_send(storescu, xnatd.port, ct).returncode == 0
    [row] = xnatd.wait_status("READY")
    shown = json.loads(xnatd.cli("prearchive", "show", row["name"], "--json").stdout)
    assert shown["findings"] == []
    children = Path(f"/proc/{xnatd.process.pid}/task/{xnatd.process.pid}/children")
    assert children.read_text().split() == [] or all(
        "spawn_main" not in Path(f"/proc/{pid}/cmdline").read_text()
        for pid in children.read_text().split()
    )


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_pixel_check_workers_die_with_a_killed_daemon(
    make_xnatd, storescu: str, dcm_dir: Path
) -> None:
    """kill -9 of the daemon leaves no idle OCR worker behind (they asked Linux to kill
    them with their parent)."""
    ct = write_study(
        StudySpec("killed", study_description="DEMO", series=[SeriesSpec(1, modality="CT")]),
        dcm_dir,
    )
    us_path = dcm_dir / "us.dcm"
    annotated_ultrasound(ct[0], us_path, ExplicitVRLittleEndian)
    xnatd: Xnatd = make_xnatd(hook=holding_pixels)
    daemon = xnatd.process.pid
    assert storescu_send(storescu, xnatd.port, [*ct, us_path]).returncode == 0
    xnatd.wait_status("HELD", timeout=120)  # the pool ran: its workers exist now
    workers = {
        pid
        for pid in children(daemon)
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    }
    assert workers, "no pixel check worker was started"
    xnatd.kill()
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)
