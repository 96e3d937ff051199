"""Finding burned-in text before OCR (issue 20): rows of character-sized strokes are
found where text was drawn, bright or dark, and not in noise or broad anatomy."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xnatd.phi.textfind import components, keep_touching, text_lines

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def drawn(
    text: str, at: tuple[int, int], fill: int, ground: np.ndarray, size: int = 16
) -> np.ndarray:
    """``ground`` with ``text`` drawn on it."""
    image = Image.fromarray(ground)
    ImageDraw.Draw(image).text(at, text, fill=fill, font=ImageFont.truetype(FONT, size))
    return np.asarray(image)


def speckle(seed: int = 3) -> np.ndarray:
    """An ultrasound-like frame: gamma speckle, no text."""
    return np.random.default_rng(seed).gamma(2.0, 18.0, (256, 320)).clip(0, 255).astype(np.uint8)


def overlaps(line, box: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    return (
        line.x < x + w and x < line.x + line.width and line.y < y + h and y < line.y + line.height
    )


def test_components_are_eight_connected_with_boxes_and_sizes() -> None:
    mask = np.zeros((8, 10), bool)
    mask[1:3, 1:4] = True  # a 2x3 block...
    mask[3, 4] = True  # ...and a pixel touching it diagonally
    mask[5:8, 8] = True  # a separate bar
    labels, parts = components(mask)
    boxes = sorted((p.x, p.y, p.width, p.height, p.pixels) for p in parts)
    assert boxes == [(1, 1, 4, 3, 7), (8, 5, 1, 3, 3)]
    assert len(np.unique(labels[mask])) == 2 and (labels[~mask] == 0).all()


def test_keep_touching_keeps_only_seeded_components() -> None:
    mask = np.zeros((6, 6), bool)
    mask[0, 0:3] = True
    mask[4, 2:6] = True
    seeds = np.zeros_like(mask)
    seeds[4, 5] = True
    assert (keep_touching(mask, seeds) == (mask & (np.arange(6)[:, None] == 4))).all()


def test_bright_text_on_speckle_is_found_where_it_was_drawn() -> None:
    image = drawn("GARCIA^MARIA", (40, 60), 230, speckle())
    lines = [line for line, _ in text_lines(image)]
    assert any(overlaps(line, (40, 60, 120, 18)) for line in lines)


def test_dark_text_on_a_light_panel_is_found() -> None:
    ground = np.full((200, 300), 200, np.uint8)
    image = drawn("1979-11-23", (150, 120), 20, ground, size=14)
    lines = [line for line, _ in text_lines(image)]
    assert [overlaps(line, (150, 120, 80, 16)) for line in lines] == [True]


def test_a_line_page_is_dark_text_on_white() -> None:
    image = drawn("MRN 88412007", (30, 40), 240, np.zeros((120, 200), np.uint8))
    [(_, page)] = text_lines(image)
    pixels = np.asarray(page)
    assert page.mode == "L" and pixels.max() == 255 and pixels.min() < 64
    assert (pixels[:3] == 255).all()  # padded with white


def test_a_line_running_from_air_onto_tissue_is_dark_all_along_its_page() -> None:
    # the digits on tissue stand out far less than the letters on air (90 of 255, not
    # 240); on the page they are as dark, or they read as noise
    ground = np.zeros((120, 320))
    ground[:, 130:] = 150  # tissue from x = 130: the last five digits are on it
    noise = np.abs(np.random.default_rng(6).normal(0, 6, ground.shape))
    image = drawn("MRN 17985418", (40, 50), 240, (ground + noise).astype(np.uint8), size=18)
    [(line, page)] = text_lines(image)
    assert line.x <= 42 and line.x + line.width >= 170
    pixels = np.asarray(page)
    on_air, on_tissue = pixels[:, : pixels.shape[1] // 2], pixels[:, int(0.7 * page.width) :]
    assert on_air.min() < 64 and on_tissue.min() < 64
