"""alterPixels as XNAT's XRT validators check it: which pixels change, and to what."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomgen import ENCAPSULATED, SeriesSpec, StudySpec, write_study
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from xnatd.anon.apply import apply_to_bytes
from xnatd.anon.engine import ScriptFailed, run
from xnatd.anon.script import parse

ROWS, COLUMNS = 40, 64


def pixels(ds: Dataset) -> np.ndarray:
    order = ">" if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian else "<"
    return np.frombuffer(ds.PixelData, dtype=f"{order}u2").reshape(ds.Rows, ds.Columns)


def blanked(script: str, syntax: str, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    spec = SeriesSpec(1, instances=1, transfer_syntax=syntax, rows=ROWS, columns=COLUMNS)
    [path] = write_study(StudySpec("pix", series=[spec]), tmp_path)
    out = tmp_path / "out.dcm"
    out.write_bytes(apply_to_bytes(parse(script), path.read_bytes(), {}))
    result = pydicom.dcmread(out)
    assert result.file_meta.TransferSyntaxUID == syntax
    return pixels(pydicom.dcmread(path)), pixels(result)


def expect(before: np.ndarray, after: np.ndarray, inside) -> None:
    rows, columns = np.indices(before.shape)
    mask = inside(columns, rows)  # x is the column, y the row, as XNAT's validators
    assert mask.any()
    assert (after[mask] == 0).all()
    assert (after[~mask] == before[~mask]).all()


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
)
def test_basic_two_rectangles(tmp_path: Path, syntax: str) -> None:
    before, after = blanked(
        'version "6.4"\n'
        'alterPixels["rectangle", "l=0, t=0, r=20, b=20", "solid", "v=0"]\n'
        'alterPixels["rectangle", "l=30, t=25, r=50, b=35", "solid", "v=0"]\n',
        syntax,
        tmp_path,
    )
    expect(
        before,
        after,
        lambda x, y: ((x < 20) & (y < 20)) | ((x >= 30) & (x < 50) & (y >= 25) & (y < 35)),
    )


def test_rectangle_past_the_edge_is_clipped(tmp_path: Path) -> None:
    before, after = blanked(
        'alterPixels["rectangle", "l=20, t=20, r=270, b=120", "solid", "v=0"]',
        ExplicitVRLittleEndian,
        tmp_path,
    )
    expect(before, after, lambda x, y: (x >= 20) & (y >= 20))


def test_fill_value_other_than_zero(tmp_path: Path) -> None:
    spec = SeriesSpec(1, instances=1, rows=ROWS, columns=COLUMNS)
    [path] = write_study(StudySpec("fill", series=[spec]), tmp_path)
    script = parse('alterPixels["rectangle", "l=1, t=2, r=3, b=4", "solid", "v=1234"]')
    out = pydicom.dcmread(__import__("io").BytesIO(apply_to_bytes(script, path.read_bytes(), {})))
    assert (pixels(out)[2:4, 1:3] == 1234).all()


def test_every_frame_and_every_sample_of_rgb(tmp_path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 4, 5, 8, 3
    ds.PlanarConfiguration, ds.NumberOfFrames, ds.PixelRepresentation = 0, 2, 0
    ds.PixelData = bytes(range(1, 121))
    run(parse('alterPixels["rectangle", "l=1, t=1, r=3, b=2", "solid", "v=0"]'), ds, {})
    frames = np.frombuffer(ds.PixelData, dtype="u1").reshape(2, 4, 5, 3)
    original = np.arange(1, 121, dtype="u1").reshape(2, 4, 5, 3)
    assert (frames[:, 1, 1:3, :] == 0).all()
    frames_copy = frames.copy()
    frames_copy[:, 1, 1:3, :] = original[:, 1, 1:3, :]
    assert (frames_copy == original).all()

    ds.PlanarConfiguration, ds.PixelData = 1, bytes(range(1, 121))
    run(parse('alterPixels["rectangle", "l=0, t=3, r=1, b=4", "solid", "v=0"]'), ds, {})
    planes = np.frombuffer(ds.PixelData, dtype="u1").reshape(2, 3, 4, 5)
    assert (planes[:, :, 3, 0] == 0).all() and int((planes == 0).sum()) == 6


def test_a_file_without_pixels_still_gets_the_rest_of_the_script() -> None:
    ds = Dataset()
    ds.PatientName = "ALTERPIXELS^TEST"
    run(
        parse('alterPixels["rectangle", "l=0, t=0, r=2, b=2", "solid", "v=0"]\n(0010,0010) := "X"'),
        ds,
        {},
    )
    assert ds.PatientName == "X"


@pytest.mark.parametrize("syntax", sorted(ENCAPSULATED)[:2])
def test_compressed_pixels_fail_the_file_rather_than_leak(tmp_path: Path, syntax: str) -> None:
    spec = SeriesSpec(1, instances=1, transfer_syntax=syntax)
    [path] = write_study(StudySpec("enc", series=[spec]), tmp_path)
    script = parse('alterPixels["rectangle", "l=0, t=0, r=2, b=2", "solid", "v=0"]')
    with pytest.raises(ScriptFailed, match="compressed"):
        apply_to_bytes(script, path.read_bytes(), {})


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ('"circle", "l=0, t=0, r=2, b=2", "solid", "v=0"', "only rectangle"),
        ('"rectangle", "l=0, t=0, r=2", "solid", "v=0"', "needs l, t, r and b"),
        ('"rectangle", "l=0, t=0, r=2, b=2", "blur", "v=0"', "only solid"),
        ('"rectangle", "l=0, t=0, r=2, b=2", "solid", "v=70000"', "does not fit"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, args: str, says: str) -> None:
    spec = SeriesSpec(1, instances=1)
    [path] = write_study(StudySpec("bad", series=[spec]), tmp_path)
    with pytest.raises(ScriptFailed, match=says):
        apply_to_bytes(parse(f"alterPixels[{args}]"), path.read_bytes(), {})
