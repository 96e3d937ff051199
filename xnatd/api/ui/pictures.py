"""Pictures of DICOM images for the review pages: PNG, windowed as the header says.

Any transfer syntax pydicom decodes with the installed plugins (JPEG, JPEG 2000,
JPEG-LS, RLE); the middle frame of a multi-frame image unless a frame is asked for;
colour images as colour. Pixel findings are drawn as red boxes onto the picture.
Each picture is made once and kept in the data directory's picture cache, keyed by
the file's path, size and modification time.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.pixels import apply_modality_lut

from xnatd.phi.clean import Region

MAX_SIDE = 512  # pixels; the pages show pictures this size or smaller
THUMB_SIDE = 128


class NoPicture(Exception):
    """The file holds no image that can be shown; the message says why."""


def _first(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _to_8bit(image: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """One grey frame, through the modality LUT and the header's window (or its range)."""
    values = apply_modality_lut(image, ds).astype(np.float64)
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if centre is not None and width is not None and width >= 1:
        low = centre - 0.5 - (width - 1) / 2
        high = centre - 0.5 + (width - 1) / 2
    else:
        low, high = float(values.min()), float(values.max())
    span = max(high - low, 1e-9)
    scaled = np.clip((values - low) / span, 0.0, 1.0) * 255.0
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 255.0 - scaled
    return scaled.astype(np.uint8)


def frame_count(ds: pydicom.Dataset) -> int:
    """The data set's Number of Frames, 1 when absent or not a number."""
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def render(
    path: Path, *, frame: int | None = None, boxes: Sequence[Region] = (), side: int = MAX_SIDE
) -> bytes:
    """The PNG of one frame (numbered from 1; None: the middle one) with boxes drawn.

    Raises:
        NoPicture: no pixel data, or pixel data this installation cannot decode.
    """
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise NoPicture("the file holds no pixel data")
        frames = frame_count(ds)
        chosen = (frames + 1) // 2 if frame is None else min(max(frame, 1), frames)
        pixels = ds.pixel_array  # YBR is converted to RGB by pydicom
        if frames > 1:
            pixels = pixels[chosen - 1]
    except NoPicture:
        raise
    except Exception as exc:
        raise NoPicture(f"cannot decode the pixel data: {type(exc).__name__}: {exc}") from None
    if pixels.ndim == 3:  # colour
        colour = pixels.astype(np.float64)
        top = float(colour.max()) or 1.0
        rgb = (colour * (255.0 / top)).astype(np.uint8) if top > 255 else colour.astype(np.uint8)
        picture = Image.fromarray(rgb[..., :3], "RGB")
    else:
        picture = Image.fromarray(_to_8bit(pixels, ds), "L").convert("RGB")
    drawn = [box for box in boxes if box.frame == chosen]
    if drawn:
        pen = ImageDraw.Draw(picture)
        thickness = max(2, max(picture.size) // 200)
        for box in drawn:
            pen.rectangle(
                (box.x, box.y, box.x + box.width - 1, box.y + box.height - 1),
                outline=(255, 0, 0),
                width=thickness,
            )
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, "PNG", optimize=False)
    return out.getvalue()


def cached(cache_path: Path, make: Callable[[], bytes]) -> bytes:
    """The cached picture, or ``make()`` written to the cache (atomically) first."""
    try:
        return cache_path.read_bytes()
    except FileNotFoundError:
        pass
    data = make()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, cache_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return data
