"""Where burned-in text may be in an 8-bit frame, before any OCR (issue 20).

Pure numpy and Pillow, no OCR: ``text_lines`` returns the boxes of rows of
character-sized marks, which ``xnatd.phi.pixels`` then reads one line at a time.

- ``ink``: how much each pixel stands out as part of a thin stroke, bright on a darker
  surround or dark on a lighter one (a grey top-hat each way, signed by the pixel's
  side of the wider background), so text on air, on tissue, on a light screen panel,
  or crossing from one to the other, is kept; broad anatomy and the gaps between
  letters are not.
- ``stroke_masks``: the pixels whose ink beats the noise around them (hysteresis: weak
  pixels count where they touch strong ones, so thin antialiased strokes stay whole).
- ``components``: the 8-connected parts of a mask with their boxes and sizes.
- ``text_lines``: components of a character's size and fill, chained into rows of
  marks of a similar height side by side; a row of three or more, or a mark much wider
  than high (letters run together), is a candidate line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

STROKE_SPAN = 9  # px: wider than the strokes of a 28 px bold font, narrower than a bone
BACKGROUND_BLOCK = 4  # px: the wider background is a median over blocks this size...
BACKGROUND_SPAN = 11  # ...and this many blocks across (44 px: more than a line's height)
MIN_CONTRAST = 48.0  # of 255: the least a stroke must stand out, on a clean image
MAX_LEVEL = 130.0  # the most asked of it, on the noisiest (text stands out 150 or more)
NOISE_FACTOR = 3.0  # times the 75th percentile of the ink around it (the noise's marks)
TILE = 128  # px: the square whose noise sets the level
WEAK = 0.5  # of the level: a weaker pixel counts where it touches a strong one...
WEAK_FACTOR = 2.0  # ...if it also beats this many times the noise's 75th percentile
CHAR_HEIGHT = (5, 60)  # px: a character of an 8 to 40 px font, tilted or not
MIN_MARKS = 3  # characters in a row, below which it is not a line
PAD = 0.4  # of a line's height: the white round it on its page
FAINT_MARK = 0.45  # of a line's ink: a letter below it is shown by its own ink


@dataclass(frozen=True)
class Component:
    """One connected part of a mask: its number in the label image, its box (x, y,
    w, h) and its pixel count."""

    label: int
    x: int
    y: int
    width: int
    height: int
    pixels: int


@dataclass(frozen=True)
class Line:
    """A candidate line of text: its box, its marks, the middle of its full-height
    marks (x, y) and its slant through there (radians; positive falling to the right)."""

    x: int
    y: int
    width: int
    height: int
    marks: tuple[Component, ...]
    middle: tuple[float, float]
    slant: float

    @property
    def mark_height(self) -> int:
        """The median height of its marks: the height of its characters."""
        return sorted(m.height for m in self.marks)[len(self.marks) // 2]


def _running(values: np.ndarray, span: int, reduce: np.ufunc, axis: int) -> np.ndarray:
    """The min or max (``reduce``) over a window of ``span`` along one axis, the edges
    repeated outward."""
    half = span // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half, half)
    padded = np.pad(values, pad, mode="edge")
    length = values.shape[axis]
    out = np.take(padded, range(0, length), axis=axis).copy()
    for shift in range(1, span):
        reduce(out, np.take(padded, range(shift, shift + length), axis=axis), out=out)
    return out


def _rank(values: np.ndarray, span: int, reduce: np.ufunc) -> np.ndarray:
    """The min or max over a ``span`` square (separable: rows, then columns)."""
    return _running(_running(values, span, reduce, 1), span, reduce, 0)


def _tile_levels(strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ink a stroke pixel needs (strong) and the ink a pixel next to one needs
    (weak), per pixel, from the 75th percentile of the ink in its ``TILE`` square (how
    strongly the noise there marks itself): strong ``NOISE_FACTOR`` times it, within
    ``MIN_CONTRAST`` and ``MAX_LEVEL`` (so a page dense with text keeps its text);
    weak ``WEAK_FACTOR`` times it, at least ``WEAK`` of strong and at most strong."""
    height, width = strength.shape
    strong = np.empty_like(strength)
    weak = np.empty_like(strength)
    for top in range(0, height, TILE):
        for left in range(0, width, TILE):
            noise = float(np.percentile(strength[top : top + TILE, left : left + TILE], 75))
            level = min(MAX_LEVEL, max(MIN_CONTRAST, NOISE_FACTOR * noise))
            strong[top : top + TILE, left : left + TILE] = level
            weak[top : top + TILE, left : left + TILE] = min(
                level, max(WEAK * level, WEAK_FACTOR * noise)
            )
    return strong, weak


def background(image: np.ndarray) -> np.ndarray:
    """The wider background of each pixel: the median of block means over about
    ``BACKGROUND_BLOCK * BACKGROUND_SPAN`` pixels, which a line of text does not fill."""
    height, width = image.shape
    small = Image.fromarray(image).reduce(BACKGROUND_BLOCK)
    median = small.filter(ImageFilter.MedianFilter(BACKGROUND_SPAN))
    return np.asarray(median.resize((width, height), Image.Resampling.BILINEAR), np.float32)


def ink(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much each pixel of an 8-bit image stands out as part of a thin bright stroke,
    and as part of a thin dark one (0-255 each).

    Bright: the pixel over the image's opening across ``STROKE_SPAN`` (a grey top-hat),
    counted only as far as the pixel is also above its wider background; dark the same
    way down. The second test keeps the gaps between bright letters (dark next to them,
    but no darker than the background) out of the dark strokes, and the other way.
    """
    values = image.astype(np.int16)
    opened = _rank(_rank(values, STROKE_SPAN, np.minimum), STROKE_SPAN, np.maximum)
    closed = _rank(_rank(values, STROKE_SPAN, np.maximum), STROKE_SPAN, np.minimum)
    above = values.astype(np.float32) - background(image)
    bright = np.minimum(values - opened, 2 * np.maximum(above, 0))
    dark = np.minimum(closed - values, 2 * np.maximum(-above, 0))
    return bright.astype(np.float32), dark.astype(np.float32)


def stroke_masks(bright: np.ndarray, dark: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bright and the dark stroke pixels, from their ``ink``: those over the level
    the noise around them sets (measured on both inks together), and the weaker ones
    joined to them."""
    strong, weak = _tile_levels(np.maximum(bright, dark))
    return keep_touching(bright >= weak, bright >= strong), keep_touching(
        dark >= weak, dark >= strong
    )


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The runs of set pixels along rows (row, start, end exclusive) and, for each, the
    number of its 8-connected component (0, 1, ...; in order of first run).

    Runs in adjacent rows that touch are joined, and each run takes the smallest run
    number reachable (spread along the joins, with pointer jumping), in numpy passes.
    """
    width = mask.shape[1]
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # same row-major order as the starts
    count = len(starts)
    if not count:
        return rows, starts, ends, np.zeros(0, np.int64)
    # run b in row r+1 touches run a in row r when b.start <= a.end and a.start <= b.end
    # (ends exclusive: diagonal neighbours touch). Keys order runs by row, then column.
    stride = width + 2
    below = (rows + 1) * stride
    first = np.searchsorted(rows * stride + ends, below + starts, side="left")
    last = np.searchsorted(rows * stride + starts, below + ends, side="right")
    spans = np.maximum(last - first, 0)
    a = np.repeat(np.arange(count), spans)
    offsets = np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
    b = np.repeat(first, spans) + offsets
    label = np.arange(count)
    while True:
        previous = label.copy()
        low = np.minimum(label[a], label[b])
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        while True:  # pointer jumping: each run takes its label's label
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        if np.array_equal(label, previous):
            break
    _, group = np.unique(label, return_inverse=True)
    return rows, starts, ends, group


def keep_touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The components of ``mask`` that hold at least one ``seeds`` pixel."""
    rows, starts, ends, group = _runs(mask)
    out = np.zeros_like(mask)
    if not len(group):
        return out
    width = mask.shape[1]
    counted = np.concatenate(([0], np.cumsum(seeds.ravel(), dtype=np.int64)))
    seeded = counted[rows * width + ends] - counted[rows * width + starts]
    chosen = (np.bincount(group, weights=seeded) > 0)[group]
    rows, starts, lengths = rows[chosen], starts[chosen], (ends - starts)[chosen]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out.ravel()[np.repeat(rows * width + starts, lengths) + offsets] = True
    return out


def components(mask: np.ndarray) -> tuple[np.ndarray, list[Component]]:
    """The 8-connected components of ``mask``: a label image (0 where unset, k + 1 for
    the k-th component) and the components with their boxes and pixel counts."""
    height, width = mask.shape
    rows, starts, ends, group = _runs(mask)
    labels = np.zeros(mask.shape, np.int32)
    if not len(group):
        return labels, []
    lengths = ends - starts
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    labels.ravel()[np.repeat(rows * width + starts, lengths) + offsets] = np.repeat(
        group + 1, lengths
    )
    number = int(group.max()) + 1
    x0 = np.full(number, width)
    y0 = np.full(number, height)
    x1 = np.zeros(number, np.int64)
    y1 = np.zeros(number, np.int64)
    np.minimum.at(x0, group, starts)
    np.minimum.at(y0, group, rows)
    np.maximum.at(x1, group, ends)
    np.maximum.at(y1, group, rows + 1)
    sizes = np.bincount(group, weights=lengths, minlength=number).astype(np.int64)
    found = [
        Component(
            k + 1, int(x0[k]), int(y0[k]), int(x1[k] - x0[k]), int(y1[k] - y0[k]), int(sizes[k])
        )
        for k in range(number)
    ]
    return labels, found


def character_like(part: Component) -> bool:
    """A component of a character's height whose fill and shape a glyph (or a few
    glyphs run together) could have; specks, blobs and long edges are not."""
    low, high = CHAR_HEIGHT
    if not low <= part.height <= high:
        return False
    if part.width > 12 * part.height or part.width * 4 < part.height:
        return False
    fill = part.pixels / (part.width * part.height)
    return 0.08 <= fill <= 0.85


def _neighbours(a: Component, b: Component) -> bool:
    """Two marks that could be letters of one line: similar height, overlapping rows,
    a gap between them under about a letter and a half (a caret or a space)."""
    small, large = sorted((a.height, b.height))
    if large > 2.2 * small:
        return False
    overlap = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if overlap < 0.45 * small:
        return False
    gap = max(a.x, b.x) - min(a.x + a.width, b.x + b.width)
    return gap <= 1.6 * large


def _root(parent: list[int], k: int) -> int:
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


def group_lines(marks: list[Component]) -> list[Line]:
    """Chains of neighbouring marks, kept where they look like a line of text."""
    order = sorted(range(len(marks)), key=lambda k: marks[k].x)
    parent = list(range(len(marks)))
    reach = 1.6 * CHAR_HEIGHT[1]  # no mark's neighbour lies further right than this
    for position, k in enumerate(order):
        a = marks[k]
        for j in order[position + 1 :]:
            b = marks[j]
            if b.x > a.x + a.width + reach:
                break  # sorted by x: nothing further right can be close
            if _neighbours(a, b):
                parent[_root(parent, k)] = _root(parent, j)
    rows: dict[int, list[Component]] = {}
    for k in range(len(marks)):
        rows.setdefault(_root(parent, k), []).append(marks[k])
    lines = []
    for row in rows.values():
        height = float(np.median([m.height for m in row]))
        x0 = min(m.x for m in row)
        y0 = min(m.y for m in row)
        x1 = max(m.x + m.width for m in row)
        y1 = max(m.y + m.height for m in row)
        if len(row) < MIN_MARKS and (x1 - x0) < 3 * height:
            continue
        row.sort(key=lambda m: m.x)
        middle, slant = _axis(row)
        lines.append(Line(x0, y0, x1 - x0, y1 - y0, tuple(row), middle, slant))
    return lines


def _axis(row: list[Component]) -> tuple[tuple[float, float], float]:
    """The middle of the row's full-height marks and the slant of the line fitted
    through their centres (least squares; hyphens and carets sit off it, left out)."""
    tall = [m for m in row if m.height >= 0.7 * max(m.height for m in row)]
    xs = np.array([m.x + m.width / 2 for m in tall])
    ys = np.array([m.y + m.height / 2 for m in tall])
    middle = (float(xs.mean()), float(ys.mean()))
    if len(tall) < 2 or np.ptp(xs) < 1:
        return middle, 0.0
    return middle, float(np.arctan(np.polyfit(xs, ys, 1)[0]))


def line_page(
    strength: np.ndarray, labels: np.ndarray, parts: list[Component], line: Line
) -> Image.Image:
    """One candidate line as an OCR engine reads it best: its strokes (its marks, and
    smaller marks such as hyphens on its axis) dark by their ink on white (a letter far
    fainter than the rest by its own ink), nothing else of the image, padded and turned
    level (at the image's scale)."""
    rows, columns = strength.shape
    pad = max(3, round(PAD * line.height))
    top, left = max(0, line.y - pad), max(0, line.x - pad)
    bottom = min(rows, line.y + line.height + pad)
    right = min(columns, line.x + line.width + pad)
    size = line.mark_height
    keep = {m.label for m in line.marks}
    tangent = np.tan(line.slant)
    for label in np.unique(labels[top:bottom, left:right]):
        part = parts[label - 1] if label else None
        if part is None or label in keep or part.height > 1.3 * size or part.width > 2 * size:
            continue
        centre_x, centre_y = part.x + part.width / 2, part.y + part.height / 2
        on_axis = line.middle[1] + tangent * (centre_x - line.middle[0])
        if abs(centre_y - on_axis) <= 0.6 * size:
            keep.add(int(label))
    crop = strength[top:bottom, left:right]
    marks = labels[top:bottom, left:right]
    kept = np.isin(marks, list(keep))
    # a letter much fainter than its line (text that runs from air onto tissue stands
    # out less there) is dark by its own ink, else it comes out too pale to read
    # (bench/pixel_misses.py); specks and marks near the line's ink keep the line's scale
    line_full = max(1.0, float(np.percentile(crop[kept], 90)))
    full = np.full(crop.shape, line_full, np.float32)
    for mark in line.marks:
        inside = marks == mark.label
        if mark.height >= 0.7 * size and inside.any():
            own = float(np.percentile(crop[inside], 90))
            if own < FAINT_MARK * line_full:
                full[inside] = max(1.0, own)
    darkness = np.where(kept, np.clip(crop / full, 0, 1), 0)
    page = Image.new("L", (crop.shape[1] + 2 * pad, crop.shape[0] + 2 * pad), 255)
    page.paste(Image.fromarray((255 - 255 * darkness).astype(np.uint8)), (pad, pad))
    if abs(line.slant) > 0.02:  # about a degree: level it, as OCR expects
        page = page.rotate(
            np.degrees(line.slant), resample=Image.Resampling.BILINEAR, expand=True, fillcolor=255
        )
    return page


def text_lines(image: np.ndarray) -> list[tuple[Line, Image.Image]]:
    """Candidate lines of text in an 8-bit image, bright ones then dark ones, each with
    its page to read (``line_page``)."""
    found = []
    inks = ink(image)
    for strength, mask in zip(inks, stroke_masks(*inks), strict=True):
        labels, parts = components(mask)
        for line in group_lines([part for part in parts if character_like(part)]):
            found.append((line, line_page(strength, labels, parts, line)))
    return found
