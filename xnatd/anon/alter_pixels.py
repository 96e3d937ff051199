"""``alterPixels``: blank a rectangle of native (uncompressed) pixel data in place.

XNAT's behaviour, from its XRT validators (TestAnonymizationAlterPixels): the
rectangle is ``l=, t=, r=, b=`` in pixels, left and top inclusive, right and bottom
exclusive; it is clipped to the image; every frame is blanked; a file without Pixel
Data is left alone and the rest of the script still runs. Only ``"rectangle"`` and
``"solid"`` fill exist in XNAT.

Encapsulated (compressed) pixel data cannot be edited without decoding and
re-encoding it, which would change the transfer syntax's bytes everywhere: the file
fails with a message rather than leaving the region unblanked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID

PIXEL_DATA = 0x7FE00010


class PixelEditError(ValueError):
    """The request or the file does not allow the edit; the message says which."""


@dataclass(frozen=True)
class Rectangle:
    """A rectangle in pixels: left and top inclusive, right and bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int


def _params(text: str, what: str) -> dict[str, str]:
    """``"l=0, t=0, r=20, b=20"`` as a dict (commas or spaces between pairs)."""
    pairs = re.findall(r"(\w+)\s*=\s*(-?[\w.]+)", text)
    if not pairs:
        raise PixelEditError(f"alterPixels: cannot read {what} {text!r} (expected k=v pairs)")
    return {key.lower(): value for key, value in pairs}


def parse_rectangle(shape: str, params: str) -> Rectangle:
    """alterPixels' shape and its ``l=, t=, r=, b=`` parameters as a Rectangle."""
    if shape.strip().lower() != "rectangle":
        raise PixelEditError(f"alterPixels: shape {shape!r} is not supported (only rectangle)")
    values = _params(params, "shape parameters")
    try:
        return Rectangle(*(int(values[key]) for key in ("l", "t", "r", "b")))
    except KeyError as exc:
        raise PixelEditError(f"alterPixels: rectangle needs l, t, r and b, got {params!r}") from exc
    except ValueError as exc:
        raise PixelEditError(f"alterPixels: rectangle bounds must be integers: {params!r}") from exc


def parse_fill(fill: str, params: str) -> int:
    """alterPixels' fill (only ``solid``) and its ``v=`` parameter as the pixel value."""
    if fill.strip().lower() != "solid":
        raise PixelEditError(f"alterPixels: fill {fill!r} is not supported (only solid)")
    value = _params(params, "fill parameters").get("v")
    try:
        return int(float(value)) if value is not None else 0
    except ValueError as exc:
        raise PixelEditError(f"alterPixels: fill value must be a number: {params!r}") from exc


def blank_rectangle(dataset: Dataset, box: Rectangle, value: int) -> bool:
    """Set every sample of every frame inside the box to value; False when no pixel data.

    Raises:
        PixelEditError: compressed or 1-bit pixel data, or a value that does not fit.
    """
    element = dataset.get(PIXEL_DATA)
    if element is None or element.value is None:
        return False
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    if syntax.is_compressed or syntax.is_deflated:
        raise PixelEditError(
            f"alterPixels: pixel data in {syntax.name} ({syntax}) is compressed; "
            "xnatd blanks uncompressed pixel data only"
        )
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    bits = int(dataset.BitsAllocated)
    if bits % 8:
        raise PixelEditError(f"alterPixels: Bits Allocated {bits} is not supported")
    samples = int(dataset.get("SamplesPerPixel", 1))
    planar = int(dataset.get("PlanarConfiguration", 0)) if samples > 1 else 0
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    width = bits // 8
    signed = int(dataset.get("PixelRepresentation", 0)) == 1
    try:
        sample = value.to_bytes(
            width, "little" if syntax.is_little_endian else "big", signed=signed
        )
    except OverflowError as exc:
        raise PixelEditError(f"alterPixels: v={value} does not fit {bits}-bit samples") from exc

    left, right = max(box.left, 0), min(box.right, columns)
    top, bottom = max(box.top, 0), min(box.bottom, rows)
    if left >= right or top >= bottom:
        return True
    data = bytearray(element.value)
    plane = rows * columns * width
    frame_size = plane * samples
    if len(data) < frame_size * frames:
        raise PixelEditError(
            f"alterPixels: Pixel Data holds {len(data)} bytes, "
            f"{frame_size * frames} expected for {frames} frame(s) of {rows}x{columns}"
        )
    if planar:  # RRR...GGG...BBB: blank the box in each plane
        run, stride, planes = (right - left) * width, columns * width, samples
        blank = sample * (right - left)
    else:  # RGBRGB...: one run per row covers every sample
        run, stride, planes = (right - left) * width * samples, columns * width * samples, 1
        blank = sample * ((right - left) * samples)
    for frame in range(frames):
        for index in range(planes):
            base = frame * frame_size + index * plane
            for row in range(top, bottom):
                start = base + row * stride + left * (width * (1 if planar else samples))
                data[start : start + run] = blank
    element.value = bytes(data)
    return True
