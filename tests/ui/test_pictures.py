"""Pictures of DICOM images: windowed grey, colour, the middle frame, compressed
transfer syntaxes, pixel findings boxed in red, and the cache keyed by the file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from xnatd.api.ui import pictures
from xnatd.phi.clean import Region
from xnatd.store.layout import DataDir

FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _png(data: bytes) -> np.ndarray:
    assert data.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # explicit little endian, signed, windowed
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPGExtended.dcm",
        "SC_rgb_jpeg_gdcm.dcm",  # colour, YBR in JPEG
        "SC_rgb_rle_2frame.dcm",  # colour, two frames
    ],
)
def test_every_transfer_syntax_gives_a_picture(name: str) -> None:
    picture = _png(pictures.render(FILES / name))
    assert picture.shape[2] == 3 and picture.std() > 0, name  # not a blank image


def test_grey_uses_the_header_window(tmp_path: Path) -> None:
    ds = pydicom.dcmread(FILES / "CT_small.dcm")
    narrow = ds.copy()
    narrow.WindowCenter, narrow.WindowWidth = 10_000, 2  # everything below: black
    narrow.save_as(tmp_path / "narrow.dcm")
    assert _png(pictures.render(tmp_path / "narrow.dcm")).max() == 0
    assert _png(pictures.render(FILES / "CT_small.dcm")).max() > 0


def test_middle_frame_and_colour() -> None:
    first = _png(pictures.render(FILES / "SC_rgb_rle_2frame.dcm", frame=1))
    middle = _png(pictures.render(FILES / "SC_rgb_rle_2frame.dcm"))
    second = _png(pictures.render(FILES / "SC_rgb_rle_2frame.dcm", frame=2))
    assert (middle == first).all() and not (second == first).all()  # (2 + 1) // 2 = frame 1
    assert not (first[..., 0] == first[..., 1]).all()  # colour, not grey


def test_findings_are_boxed_in_red_on_their_frame() -> None:
    box = Region(1, 10, 10, 40, 20)
    drawn = _png(pictures.render(FILES / "CT_small.dcm", boxes=[box]))
    assert tuple(drawn[10, 30]) == (255, 0, 0)
    elsewhere = _png(pictures.render(FILES / "CT_small.dcm", boxes=[Region(2, 10, 10, 40, 20)]))
    assert tuple(elsewhere[10, 30]) != (255, 0, 0)


def test_no_pixel_data_is_said_plainly() -> None:
    with pytest.raises(pictures.NoPicture, match="no pixel data"):
        pictures.render(FILES / "rtplan.dcm")


def test_cache_is_made_once_and_follows_the_file(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    source = tmp_path / "ct.dcm"
    source.write_bytes((FILES / "CT_small.dcm").read_bytes())
    made: list[int] = []

    def make() -> bytes:
        made.append(1)
        return pictures.render(source)

    cache = data.picture_cache(source, "full")
    assert cache.is_relative_to(data.root / ".thumbs")
    first = pictures.cached(cache, make)
    assert pictures.cached(data.picture_cache(source, "full"), make) == first
    assert len(made) == 1
    os.utime(source, ns=(0, 10**9))  # a replaced file: a new key
    assert data.picture_cache(source, "full") != cache
