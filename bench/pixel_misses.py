"""Which labelled images the pixel check misses, and why (issue 20's recall).

    python3 bench/pixel_misses.py [--images 320] [--seed 1] [--min-size 12] [--png DIR]

Draws the same images as bench/pixel_phi.py (its generator, the same random draws in
the same order), keeps the label's drawing parameters (size, angle, contrast, font,
text, box), and for each image with text of at least ``--min-size`` px runs the two
stages of the check apart: did ``xnatd.phi.textfind`` offer a line over the label
(found), and was it read as text (read). Prints the misses one a line, then counted by
background, size, angle and stage. ``--png`` saves each missed 8-bit image, with its
stroke masks beside it, for a look. ``--fast`` skips OCR and reports the first stage
only (seconds, not minutes, for tuning the finder).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pixel_phi  # noqa: E402

from xnatd.phi.pixels import text_regions, to_8bit  # noqa: E402
from xnatd.phi.textfind import ink, stroke_masks, text_lines  # noqa: E402


class Recorder:
    """A random generator that notes each draw, so the label's parameters are known
    without changing the generator that draws them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.draws: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.rng, name)

        def noted(*args: Any, **kwargs: Any) -> Any:
            value = method(*args, **kwargs)
            self.draws.append((name, value))
            return value

        return noted


def label_parameters(draws: list[tuple[str, Any]]) -> dict:
    """The font, angle and contrast of one label, from the draws ``draw_text`` made."""
    choices = [value for name, value in draws if name == "choice"]
    font = next(str(c) for c in choices if str(c).endswith(".ttf"))
    angle = float(choices[-1])
    contrast = float(next(value for name, value in draws if name == "uniform"))
    return {"font": Path(font).stem.replace("DejaVu", ""), "angle": angle, "contrast": contrast}


def overlaps(box: tuple[int, int, int, int], region: tuple[int, int, int, int]) -> bool:
    """Whether two (x, y, w, h) boxes share a pixel."""
    return pixel_phi.overlaps(box, region)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-size", type=int, default=12)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--fast", action="store_true", help="the finder only, no OCR")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.images):
            kind = pixel_phi.BACKGROUNDS[(number // 2) % len(pixel_phi.BACKGROUNDS)]
            pixels, window = pixel_phi.background(kind, rng)
            if number % 2:
                continue  # the text-free half: bench/pixel_phi.py counts those
            size = int(pixel_phi.SIZES[(number // 8) % len(pixel_phi.SIZES)])
            recorder = Recorder(rng)
            pixels, box = pixel_phi.draw_text(pixels, recorder, size)  # type: ignore[arg-type]
            if size < args.min_size:
                continue
            path = Path(folder) / f"{number}.dcm"
            pixel_phi.write(pixels, window, kind, path)
            dataset = pydicom.dcmread(path)
            image = to_8bit(dataset, dataset.pixel_array)
            lines = [line for line, _ in text_lines(image)]
            offered = any(overlaps(box, (ln.x, ln.y, ln.width, ln.height)) for ln in lines)
            read = None
            if not args.fast:
                read = any(overlaps(box, r[:4]) for r in text_regions(image))
            x, y, w, h = box
            rows.append(
                {"number": number, "kind": kind, "size": size, "box": box, "offered": offered,
                 "read": read, "text_level": float(np.median(image[y:y + h, x:x + w])),
                 **label_parameters(recorder.draws)}
            )  # fmt: skip
            missed = not offered if args.fast else not read
            if missed and args.png:
                args.png.mkdir(parents=True, exist_ok=True)
                bright, dark = stroke_masks(*ink(image))
                side = np.concatenate([image, 255 * bright, 255 * dark], axis=1)
                Image.fromarray(side.astype(np.uint8)).save(args.png / f"{args.seed}-{number}.png")
    key = "offered" if args.fast else "read"
    misses = [r for r in rows if not r[key]]
    print(f"seed {args.seed}: {len(rows) - len(misses)} of {len(rows)} found ({key})")
    for r in misses:
        print(
            f"  #{r['number']:3d} {r['kind']:>10} {r['size']:2d}px angle {r['angle']:+5.0f} "
            f"contrast {r['contrast']:.2f} {r['font']:>10} box {r['box']} "
            f"offered {r['offered']} level {r['text_level']:.0f}"
        )
    for field in ("kind", "size", "angle", "font", "offered"):
        counts = collections.Counter(r[field] for r in misses)
        totals = collections.Counter(r[field] for r in rows)
        print(
            f"misses by {field}: "
            + ", ".join(f"{k}: {counts[k]}/{totals[k]}" for k in sorted(totals))
        )


if __name__ == "__main__":
    main()
