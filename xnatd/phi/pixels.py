"""The pixel check (SPEC 10.2): patient information burned into the image itself.

Pure decisions plus one file's check, run in a worker process (``xnatd.assembler.
pixelcheck``), never on a receiving thread:

- ``candidate``: which images are likely to carry burned-in text (Burned In Annotation
  YES, screen and secondary captures, SECONDARY or SCREEN SHOT image types, modalities
  such as US, OT, DOC, SC, XC), or every image with ``pixels: all``;
- ``frames_to_check``: every frame of an image of up to three, else the first, the
  middle and the last (burned-in banners sit on every frame of a cine loop);
- ``check_file``: decode the frames (any transfer syntax pydicom decodes with the
  pylibjpeg, openjpeg, RLE and JPEG-LS plugins), map them to 8 bits with the header's
  window, keep the bright (or, on a light background, dark) strokes text is drawn in,
  and run Tesseract on them. Each word found becomes a region with its frame; the text
  itself is never returned, only its length and what it looks like (a date, an ID, a
  name, other text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

if TYPE_CHECKING:  # numpy and Pillow load only where pixels are checked
    import numpy as np
    from PIL import Image

SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
        "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    }
)
CANDIDATE_MODALITIES = frozenset({"US", "OT", "DOC", "SC", "XC", "SM", "ES"})
CANDIDATE_IMAGE_TYPES = ("SECONDARY", "SCREEN SHOT")
MIN_CONFIDENCE = 60.0  # Tesseract's per-word confidence below which a word is noise
MIN_CHARACTERS = 3  # letters and digits in a word, below which it is noise
UPSCALE = 3  # small burned-in fonts (12 px) read far better enlarged


@dataclass(frozen=True)
class PixelLeak:
    """Text found in a frame: the region (pixels of the stored image) and what it looks
    like; never the text."""

    frame: int
    x: int
    y: int
    width: int
    height: int
    what: str

    @property
    def where(self) -> str:
        """The region as findings name it: ``frame F: x,y,w,h``."""
        return f"frame {self.frame}: {self.x},{self.y},{self.width},{self.height}"


def candidate(
    sop_class: str, modality: str, burned_in: str, image_type: str, mode: str
) -> str | None:
    """Why an image should be checked, or None (``mode``: the site's ``pixels`` setting;
    ``all`` checks every image)."""
    if burned_in.strip().upper() == "YES":
        return "burned in annotation"
    if mode == "all":
        return "every image"
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        return "secondary or screen capture"
    if modality.upper() in CANDIDATE_MODALITIES:
        return f"modality {modality}"
    if any(kind in image_type.upper() for kind in CANDIDATE_IMAGE_TYPES):
        return "secondary image type"
    return None


def frames_to_check(count: int) -> list[int]:
    """The frames read of an image of ``count`` frames (numbered from 1)."""
    if count <= 3:
        return list(range(1, count + 1))
    return [1, (count + 1) // 2, count]


def looks_like(text: str) -> str:
    """What a piece of text looks like, to report without it: date, ID, name or text."""
    if re.search(r"\d{1,4}[-./]\d{1,2}[-./]\d{1,4}|(?:19|20)\d{6}", text):
        return "date"
    if re.search(r"\d", text) and len(re.sub(r"\W", "", text)) >= 4:
        return "id"
    if re.fullmatch(r"[A-Za-z][A-Za-z'^*,.-]+", text):
        return "name"
    return "text"


def to_8bit(dataset: pydicom.Dataset, frame: np.ndarray) -> np.ndarray:
    """One frame as 8-bit grey: the modality LUT and the header's window applied
    (else the frame's own range), MONOCHROME1 inverted, colour as luminance."""
    import numpy as np
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if frame.ndim == 3:  # colour: decoded to RGB by pydicom
        rgb = frame.astype(np.float32)
        grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        low, high = float(grey.min()), float(grey.max())
    else:
        values = apply_modality_lut(frame, dataset).astype(np.float32)
        if "WindowCenter" in dataset and "WindowWidth" in dataset:
            values = apply_voi_lut(values, dataset).astype(np.float32)
        grey = values
        low, high = float(grey.min()), float(grey.max())
    scaled = (grey - low) * (255.0 / (high - low)) if high > low else np.zeros_like(grey)
    image = scaled.clip(0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        image = 255 - image
    return image


TEXT_LEVEL = 160  # of 255: burned-in text is drawn near white (near black on a light page)


def _strokes(image: np.ndarray) -> Image.Image | None:
    """The near-white pixels (near-black on a light page) as black on white, enlarged
    for Tesseract; None when there are none. The anatomy's greys and ultrasound's
    speckle mostly fall below the level and do not become words.

    (A top-hat that kept only thin local contrast lost faint text on bright tissue:
    bench/pixel_phi.py measured it worse than this level.)
    """
    import numpy as np
    from PIL import Image

    strokes = (255 - image) if image.mean() > 128 else image
    mask = strokes >= TEXT_LEVEL
    if not mask.any():
        return None
    page = Image.fromarray(np.where(mask, 0, 255).astype(np.uint8))
    return page.resize((page.width * UPSCALE, page.height * UPSCALE), Image.Resampling.LANCZOS)


def text_regions(image: np.ndarray) -> list[tuple[int, int, int, int, str]]:
    """Words Tesseract reads in an 8-bit image: (x, y, w, h, what it looks like).

    Burned-in text is drawn in near-white (or, on a light page, near-black) strokes:
    those pixels alone, black on white and enlarged, are what Tesseract is given, so
    the anatomy's greys and the noise of ultrasound do not become words.
    """
    import pytesseract

    page = _strokes(image)
    if page is None:
        return []
    words = pytesseract.image_to_data(page, output_type=pytesseract.Output.DICT, config="--psm 11")
    found = []
    for index, text in enumerate(words["text"]):
        characters = re.sub(r"[^A-Za-z0-9]", "", text or "")
        if len(characters) < MIN_CHARACTERS or float(words["conf"][index]) < MIN_CONFIDENCE:
            continue
        found.append(
            (
                words["left"][index] // UPSCALE,
                words["top"][index] // UPSCALE,
                max(1, -(-words["width"][index] // UPSCALE)),
                max(1, -(-words["height"][index] // UPSCALE)),
                looks_like(text),
            )
        )
    return found


def check_file(path: Path, reason: str) -> list[PixelLeak]:
    """The pixel check of one file (``reason``: why it is a candidate).

    Raises:
        Exception: the file cannot be read or decoded (the caller reports it).
    """
    from pydicom.pixels import pixel_array

    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    leaks: list[PixelLeak] = []
    if reason == "burned in annotation":  # a finding even if no text is read
        leaks.append(PixelLeak(0, 0, 0, int(dataset.Columns), int(dataset.Rows), reason))
    if "Rows" not in dataset or "Columns" not in dataset:
        return leaks
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    for number in frames_to_check(count):
        frame = pixel_array(path, index=number - 1)  # one frame decoded, not the file
        for x, y, width, height, what in text_regions(to_8bit(dataset, frame)):
            leaks.append(PixelLeak(number, x, y, width, height, f"text ({what})"))
    return leaks
