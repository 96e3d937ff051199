"""Blanking pixel regions (``xnatd prearchive clean-pixels``): pure, bytes in and out.

The regions are set to the frame's darkest value, two pixels wider on every side than
asked (OCR boxes hug the glyphs). Native pixel data is written back as it was stored;
compressed pixel data is re-encoded as RLE Lossless (pydicom's own encoder), or, where
that cannot hold it, stored as Explicit VR Little Endian. What was done is returned for
the audit trail.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

MARGIN = 2


@dataclass(frozen=True)
class Region:
    """A rectangle of one frame (numbered from 1) in stored-image pixels."""

    frame: int
    x: int
    y: int
    width: int
    height: int

    @classmethod
    def parse_where(cls, where: str) -> Region | None:
        """A pixel finding's ``where`` ("frame 2: 10,20,30,8"); None for a finding
        without a region (a Burned In Annotation attribute, an unchecked image)."""
        frame, sep, box = where.partition(": ")
        if not sep or not frame.startswith("frame "):
            return None
        try:
            number = int(frame.removeprefix("frame "))
            x, y, width, height = (int(v) for v in box.split(","))
        except ValueError:
            return None
        return cls(number, x, y, width, height) if number >= 1 else None


class CleanFailed(Exception):
    """The file's pixels cannot be decoded or written back; the message says why."""


def blank_regions(data: bytes, regions: list[Region]) -> tuple[bytes, str]:
    """The file with ``regions`` blanked, and how its pixel data was written.

    Raises:
        CleanFailed: the pixel data cannot be decoded or a region lies outside it.
    """
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        pixels = dataset.pixel_array.copy()
    except Exception as exc:  # pydicom's decoders raise many kinds
        raise CleanFailed(f"pixel data cannot be decoded: {exc}") from None
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    stack = pixels if frames > 1 else pixels[np.newaxis, ...]
    for region in regions:
        if not 1 <= region.frame <= frames:
            raise CleanFailed(f"frame {region.frame} is not in the image ({frames} frames)")
        frame = stack[region.frame - 1]
        top, left = max(0, region.y - MARGIN), max(0, region.x - MARGIN)
        bottom = min(frame.shape[0], region.y + region.height + MARGIN)
        right = min(frame.shape[1], region.x + region.width + MARGIN)
        if top >= bottom or left >= right:
            raise CleanFailed(
                f"region {region} lies outside the {frame.shape[1]}x{frame.shape[0]} image"
            )
        frame[top:bottom, left:right] = frame.min()
    syntax = dataset.file_meta.TransferSyntaxUID
    if dataset.get("SamplesPerPixel", 1) == 3:  # decoded to RGB, whatever it was stored as
        dataset.PhotometricInterpretation = "RGB"
        dataset.PlanarConfiguration = 0
    if not syntax.is_compressed:
        dataset.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        how = f"pixel data written back in {syntax.name}"
    else:
        try:
            dataset.compress(RLELossless, pixels)
            how = f"pixel data re-encoded from {syntax.name} as RLE Lossless"
        except Exception:  # an image RLE cannot hold: stored uncompressed
            dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            dataset.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            dataset["PixelData"].VR = "OW" if dataset.BitsAllocated > 8 else "OB"
            how = f"pixel data stored as Explicit VR Little Endian (was {syntax.name})"
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue(), how
