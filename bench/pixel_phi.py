"""How well the pixel check finds burned-in text (issue 20), on a labelled set it draws.

    python3 bench/pixel_phi.py [--images 360] [--seed 1]

Draws images with Pillow over four backgrounds (ultrasound-like speckle in a sector,
CT and MR slices, a screen capture), half of them with a name, a date or an ID burned
in (DejaVu fonts, 8 to 28 px, anywhere, contrast from faint to white, tilted up to 10
degrees), half the same backgrounds without text. Each is written as a DICOM file and
checked with ``xnatd.phi.pixels.check_file``, as a build does. Prints recall (text
found where it was drawn) by text height and background, false positives on the
text-free CT and MR slices, and seconds per image; JSON in bench/out/pixel_phi.json.
Goals: recall at least 95 % for text 12 px high or more; at most 2 % false positives.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xnatd.phi.pixels import check_file  # noqa: E402

FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
]
SURNAMES = ["GARCIA", "NAKAMURA", "OKONKWO", "SMITH", "JOHANSSON", "MULLER", "ROSSI", "KOWALSKI"]
GIVEN = ["MARIA", "HIROSHI", "CHIDI", "JOHN", "ASTRID", "LENA", "MARCO", "ANNA"]
BACKGROUNDS = ("ultrasound", "ct", "mr", "screen")
SIZES = (8, 10, 12, 14, 16, 20, 24, 28)


def background(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A 16-bit CT/MR slice with its window, or an 8-bit ultrasound frame or screen."""
    yy, xx = np.mgrid[0:512, 0:512]
    if kind == "ct":  # HU + 1024: air, a body ellipse, bone ring, noise
        body = ((xx - 256) / 200) ** 2 + ((yy - 260) / 160) ** 2 < 1
        bone = np.abs(np.hypot(xx - 256, yy - 260) - 120) < 6
        hu = np.where(body, 40, -1000) + np.where(bone, 900, 0)
        pixels = (hu + 1024 + rng.normal(0, 12, hu.shape)).clip(0, 4095).astype(np.uint16)
        return pixels, {"WindowCenter": 1064, "WindowWidth": 400}
    if kind == "mr":  # smooth tissue blobs with Rician-like noise
        head = ((xx - 256) / 180) ** 2 + ((yy - 256) / 210) ** 2 < 1
        tissue = 600 + 300 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
        pixels = np.where(head, tissue, 0) + np.abs(rng.normal(0, 25, head.shape))
        return pixels.clip(0, 4095).astype(np.uint16), {}
    if kind == "ultrasound":
        frame = rng.gamma(2.0, 18.0, (512, 512))
        frame[np.hypot(xx - 256, yy + 40) > 500] = 0
        return frame.clip(0, 255).astype(np.uint8), {}
    screen = np.full((512, 512), 210, np.uint8)  # a light window with dark panels
    screen[40:260, 30:480] = 30 + rng.integers(0, 40, (220, 450))
    return screen, {}


def draw_text(
    pixels: np.ndarray, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The image with one label burned in, and the label's box (x, y, w, h)."""
    kind = rng.integers(0, 3)
    if kind == 0:
        text = f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}"
    elif kind == 1:
        text = f"{rng.integers(1930, 2020)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    else:
        text = f"MRN {rng.integers(10**6, 10**8)}"
    font = ImageFont.truetype(str(rng.choice(FONTS)), size)
    high = float(pixels.max()) if pixels.dtype == np.uint16 else 255.0
    layer = Image.new("L", (pixels.shape[1], pixels.shape[0]), 0)
    pen = ImageDraw.Draw(layer)
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    x = int(rng.integers(5, max(6, pixels.shape[1] - (right - left) - 5)))
    y = int(rng.integers(5, max(6, pixels.shape[0] - (bottom - top) - 5)))
    pen.text((x, y), text, fill=255, font=font)
    angle = float(rng.choice([0, 0, 0, -4, 4, -10, 10]))
    if angle:
        layer = layer.rotate(angle, center=(x, y), resample=Image.Resampling.BILINEAR)
    mask = np.asarray(layer).astype(np.float32) / 255.0
    below = pixels[y : y + bottom - top, x : x + right - left]
    light = below.mean() > (high / 2)  # drawn to be read: dark on a light area
    contrast = float(rng.uniform(0.75, 1.0))
    ink = (1 - contrast) * high if light else contrast * high
    drawn = pixels.astype(np.float32) * (1 - mask) + ink * mask
    ys, xs = np.nonzero(mask > 0.3)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return drawn.astype(pixels.dtype), box


def write(pixels: np.ndarray, window: dict, kind: str, path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = {"ct": "CT", "mr": "MR", "ultrasound": "US", "screen": "OT"}[kind]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    for key, value in window.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def overlaps(box: tuple[int, int, int, int], region: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    rx, ry, rw, rh = region
    return rx < x + w and x < rx + rw and ry < y + h and y < ry + rh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=360, help="half with text, half without")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "pixel_phi.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = []
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.images):
            kind = BACKGROUNDS[(number // 2) % len(BACKGROUNDS)]
            pixels, window = background(kind, rng)
            with_text = number % 2 == 0
            size, box = 0, None
            if with_text:
                size = int(SIZES[(number // 8) % len(SIZES)])
                pixels, box = draw_text(pixels, rng, size)
            path = Path(folder) / f"{number}.dcm"
            write(pixels, window, kind, path)
            started = time.perf_counter()
            leaks = check_file(path, "bench")
            seconds.append(time.perf_counter() - started)
            regions = [(leak.x, leak.y, leak.width, leak.height) for leak in leaks]
            found = any(overlaps(box, r) for r in regions) if box else None
            results.append({"kind": kind, "text": with_text, "size": size, "found": found,
                            "regions": len(regions)})  # fmt: skip

    def recall(rows: list[dict]) -> str:
        return (
            f"{100 * sum(r['found'] for r in rows) / len(rows):5.1f} % of {len(rows)}"
            if rows
            else "-"
        )

    texts = [r for r in results if r["text"]]
    print(f"pixel check on {len(results)} images ({len(texts)} with text)")
    print(f"recall, text >= 12 px: {recall([r for r in texts if r['size'] >= 12])}")
    print(f"recall, text <  12 px: {recall([r for r in texts if r['size'] < 12])}")
    for size in SIZES:
        print(f"  {size:2d} px: {recall([r for r in texts if r['size'] == size])}")
    for kind in BACKGROUNDS:
        rows = [r for r in texts if r["kind"] == kind and r["size"] >= 12]
        print(f"  {kind:>10}: {recall(rows)}")
    clean = [r for r in results if not r["text"] and r["kind"] in ("ct", "mr")]
    false = sum(1 for r in clean if r["regions"])
    print(f"false positives on text-free CT and MR: {false} of {len(clean)}"
          f" ({100 * false / max(1, len(clean)):.1f} %)")  # fmt: skip
    others = [r for r in results if not r["text"] and r["kind"] not in ("ct", "mr")]
    print(f"  (text-free ultrasound and screens with a region: "
          f"{sum(1 for r in others if r['regions'])} of {len(others)})")  # fmt: skip
    print(f"seconds per image: median {statistics.median(seconds):.2f}, max {max(seconds):.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"results": results, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
