"""The pixel check's reading of text (issue 20): lines found and read as text are
reported with what they look like; noise and anatomy are not (Tesseract runs)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xnatd.phi.pixels import reads_as_text, text_regions

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONT = f"{FONT_DIR}/DejaVuSans.ttf"


def with_text(ground: np.ndarray, lines: list[tuple[str, tuple[int, int], int]]) -> np.ndarray:
    image = Image.fromarray(ground)
    pen = ImageDraw.Draw(image)
    for text, at, fill in lines:
        pen.text(at, text, fill=fill, font=ImageFont.truetype(FONT, 16))
    return np.asarray(image)


def speckle(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 18.0, (240, 320)).clip(0, 255).astype(np.uint8)


def head(seed: int) -> np.ndarray:
    """An MR-like head: smooth tissue with noise, a hard edge to the air round it."""
    yy, xx = np.mgrid[0:256, 0:256]
    inside = ((xx - 128) / 100) ** 2 + ((yy - 128) / 110) ** 2 < 1
    tissue = np.where(inside, 120 + 80 * np.sin(xx / 12.0) * np.cos(yy / 17.0), 0)
    noise = np.abs(np.random.default_rng(seed).normal(0, 8, inside.shape))
    return (tissue + noise).clip(0, 255).astype(np.uint8)


def test_burned_in_lines_are_found_where_drawn_and_classified() -> None:
    image = with_text(speckle(1), [("GARCIA^MARIA", (12, 10), 255), ("1979-11-23", (12, 200), 230)])
    regions = text_regions(image)
    kinds = {what for x, y, w, h, what in regions}
    assert "date" in kinds
    assert all(y < 30 or y > 190 for x, y, w, h, what in regions)  # nowhere else
    assert any(y < 30 for x, y, w, h, what in regions)


def test_dark_text_on_tissue_is_found() -> None:
    image = with_text(head(2), [("MRN 88412007", (80, 120), 0)])
    regions = text_regions(image)
    assert [what for *_, what in regions] == ["id"]
    x, y, w, _, _ = regions[0]
    assert 70 <= x <= 90 and 115 <= y <= 130 and w >= 80


def test_speckle_and_anatomy_without_text_give_no_regions() -> None:
    for seed in (3, 4, 5):
        assert text_regions(speckle(seed)) == []
        assert text_regions(head(seed)) == []


def test_reads_as_text_needs_letters_and_confidence() -> None:
    assert reads_as_text([("GARCIA", 91.0)])
    assert reads_as_text([("MRN", 35.0), ("1979-11-23", 52.0)])
    assert not reads_as_text([("MRN", 96.0), ("-", 90.0)])  # too few letters and digits
    assert not reads_as_text([("Saver", 42.0), ("ae", 30.0)])  # read without confidence
    assert not reads_as_text([])


def test_words_shaped_like_patient_information_count_at_any_confidence() -> None:
    # the caret of a DICOM name read as a star or a quote, which Tesseract then doubts
    assert reads_as_text([("GARCIA*JOHN:", 23.0)])
    assert reads_as_text([("OKONKWO\u201cASTRID", 0.0)])
    assert reads_as_text([("SMITH*", 31.0), ("ANNA", 31.0)])  # split at the caret
    # dates and IDs: six digits or more, however thin the strokes read
    assert reads_as_text([("1962-04-27", 22.0)])
    assert reads_as_text([("MRN", 92.0), ("7799182", 0.0)])
    # what speckle reads as: capitals, a few digits, never joined across words
    assert not reads_as_text([("EAGER", 0.0), ("SESS,", 37.0), ("BERR", 30.0)])
    assert not reads_as_text([("4537,", 40.0), ("1066", 27.0)])
    assert not reads_as_text([("795-5", 27.0), ("REES.", 0.0), ("Parry", 45.0)])


def blended(ground: np.ndarray, text: str, font: str) -> np.ndarray:
    """``ground`` with ``text`` (16 px, grey 200) blended in by its antialiased mask."""
    layer = Image.new("L", (ground.shape[1], ground.shape[0]), 0)
    pen = ImageDraw.Draw(layer)
    pen.text((60, 100), text, fill=255, font=ImageFont.truetype(f"{FONT_DIR}/{font}", 16))
    mask = np.asarray(layer) / 255.0
    return (ground * (1 - mask) + 200 * mask).astype(np.uint8)


def test_names_with_a_caret_on_speckle_are_found() -> None:
    # Tesseract reads the caret as * or a quote and doubts the word (confidence 0 to 45):
    # before names counted at any confidence, 1 of these 6 was found
    found = [
        bool(text_regions(blended(speckle(2), name, font)))
        for name in ("GARCIA^JOHN", "SMITH^ANNA", "KOWALSKI^LENA")
        for font in ("DejaVuSansMono.ttf", "DejaVuSerif.ttf")
    ]
    assert sum(found) >= 5
