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
  window, find rows of character-sized strokes, bright or dark on their background
  (``xnatd.phi.textfind``), and read them with Tesseract. Each line read as text becomes
  a region with its frame; the text itself is never returned, only what it looks like
  (a date, an ID, a name, other text).
"""

from __future__ import annotations

import bisect
import itertools
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
MIN_CONFIDENCE = 50.0  # Tesseract's word confidence below which a word is noise
MIN_CHARACTERS = 4  # letters and digits in a word, below which it is noise
# What patient information looks like, read at any confidence: Tesseract reads a caret
# (DICOM's name separator) as * or a quote and then doubts the whole word, and doubts
# digits in thin or tilted strokes, where the text is read right. Speckle and anatomy
# read as words of letters (bench/pixel_phi.py, seeds 1 and 2: of 160 text-free
# ultrasound frames none gave a word of two runs of capitals joined so, or of 6 digits).
NAME_SHAPE = re.compile(r"[A-Z]{3,}[\^*\"'`~\u201c\u201d\u2018\u2019\u00b0]{1,2}[A-Z]{2,}")
MIN_DIGITS = 6  # digits in a word that looks like a date or an ID


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


READ_HEIGHTS = (18, 26, 34)  # px: character heights lines are read at, until one reads
# (34: thin tilted digits that Tesseract misreads smaller; bench/pixel_misses.py)
GAP = 24  # px of white between the lines stacked on one page


def read_lines(pages: list[Image.Image]) -> list[list[tuple[str, float]]]:
    """The words Tesseract reads in each line image, with their confidences.

    The lines are stacked on one page and read in one run (psm 6, a block of lines):
    starting Tesseract costs more than reading a line, and each word is given back to
    the line whose band holds its middle.
    """
    import os

    import pytesseract
    from PIL import Image

    if not pages:
        return []
    # one thread: the worker runs at low priority beside others; Tesseract's OpenMP
    # threads only contend there, and are slower than one thread on small pages
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    width = max(page.width for page in pages) + 2 * GAP
    tops = []
    height = GAP
    for page in pages:
        tops.append(height)
        height += page.height + GAP
    sheet = Image.new("L", (width, height), 255)
    for top, page in zip(tops, pages, strict=True):
        sheet.paste(page, (GAP, top))
    data = pytesseract.image_to_data(sheet, output_type=pytesseract.Output.DICT, config="--psm 6")
    found: list[list[tuple[str, float]]] = [[] for _ in pages]
    for index, text in enumerate(data["text"]):
        confidence = float(data["conf"][index])
        if not (text or "").strip() or confidence < 0:
            continue
        middle = data["top"][index] + data["height"][index] / 2
        line = bisect.bisect_right(tops, middle) - 1
        if 0 <= line < len(pages) and middle <= tops[line] + pages[line].height:
            found[line].append((text, confidence))
    return found


def read_line(page: Image.Image) -> list[tuple[str, float]]:
    """The words Tesseract reads in one line image alone (psm 7), with confidences."""
    import pytesseract

    data = pytesseract.image_to_data(page, output_type=pytesseract.Output.DICT, config="--psm 7")
    return [
        (text, float(confidence))
        for text, confidence in zip(data["text"], data["conf"], strict=True)
        if (text or "").strip() and float(confidence) >= 0
    ]


def _characters(text: str) -> int:
    return len(re.sub(r"[^A-Za-z0-9]", "", text))


def looks_like_phi(text: str) -> bool:
    """Whether a word has the shape of a name in DICOM's form (``SURNAME^GIVEN``, the
    caret read as anything like it) or of a date or ID (``MIN_DIGITS`` digits)."""
    return bool(NAME_SHAPE.search(text)) or sum(c.isdigit() for c in text) >= MIN_DIGITS


def reads_as_text(words: list[tuple[str, float]]) -> bool:
    """Whether what Tesseract read is text, not the shapes of noise or anatomy: one word
    of at least ``MIN_CHARACTERS`` letters and digits read with ``MIN_CONFIDENCE``, or
    a word shaped like patient information (``looks_like_phi``) at any confidence, or
    two words side by side shaped like a name (the caret read as a space and a quote).
    (Ultrasound speckle reads as short words, or as longer ones with low confidence:
    bench/pixel_phi.py measured three letters, or a line's mean, letting it through.)"""
    confident = any(
        _characters(text) >= MIN_CHARACTERS and confidence >= MIN_CONFIDENCE
        for text, confidence in words
    )
    texts = [text for text, _ in words]
    pairs = [a + b for a, b in itertools.pairwise(texts)]
    return (
        confident
        or any(looks_like_phi(text) for text in texts)
        or any(NAME_SHAPE.search(pair) for pair in pairs)
    )


def text_regions(image: np.ndarray) -> list[tuple[int, int, int, int, str]]:
    """Lines of text read in an 8-bit image: (x, y, w, h, what it looks like).

    ``xnatd.phi.textfind`` finds rows of character-sized strokes, bright or dark on
    their background, and gives each as a page of its own strokes only; the lines are
    read together (``read_lines``) at a few sizes, each until Tesseract reads it as
    text (``reads_as_text``), then confirmed read alone (``read_line``), so the edges
    of anatomy and the speckle of ultrasound, which rarely read as words, do not count.
    The text is only classified (``looks_like``), never kept.
    """
    from PIL import Image

    from xnatd.phi.textfind import text_lines

    found = []
    waiting = text_lines(image)
    for height in READ_HEIGHTS:
        pages = []
        for line, page in waiting:
            scale = min(8.0, max(1.0, height / line.mark_height))
            size = (round(page.width * scale), round(page.height * scale))
            pages.append(page.resize(size, Image.Resampling.LANCZOS))
        unread = []
        for (line, page), sized, words in zip(waiting, pages, read_lines(pages), strict=True):
            # confirmed alone: speckle that reads as a word among other lines rarely
            # reads as one twice (bench/pixel_phi.py's first 160 images, seeds 1 and 2:
            # 9 of 80 text-free ultrasound frames with a region unconfirmed, 1
            # confirmed, for about 2 % of recall)
            if reads_as_text(words) and reads_as_text(words := read_line(sized)):
                text = " ".join(word for word, _ in words)
                found.append((line.x, line.y, line.width, line.height, looks_like(text)))
            else:
                unread.append((line, page))
        waiting = unread
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
