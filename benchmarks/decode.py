"""Decode + downscale throughput of ``semcat.images.read_image`` vs a naive PIL baseline.

Usage: ``python benchmarks/decode.py [N] [--max-side 448]``. Writes N synthetic 1024x768 images
per format (8-bit TIFF, 16-bit TIFF, PNG, JPEG) to a temp folder, then times, in the same run,
``read_image(path, max_side=...)`` (data-bar detection on) against PIL
``open → convert("L"/"I;16") → resize(BOX)``. Results go to ``benchmarks/results/decode.md``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

from _results import header, write_results
from semcat.images import read_image

OUT = Path(__file__).resolve().parent / "results" / "decode.md"


def _make(folder: Path, n: int) -> dict[str, list[Path]]:
    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {k: [] for k in ("TIFF 8-bit", "TIFF 16-bit", "PNG", "JPEG")}
    for i in range(n):
        base = cv2.GaussianBlur(rng.normal(128, 50, (768, 1024)).astype(np.float32), (0, 0), 4)
        img = np.clip(base * 2 - 128 + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        img[-64:] = 0
        cv2.putText(img, f"EHT = 5.00 kV  WD = 8.5 mm  #{i}", (10, 730), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 1)
        paths = [folder / f"{i}_8.tif", folder / f"{i}_16.tif", folder / f"{i}.png", folder / f"{i}.jpg"]
        tifffile.imwrite(paths[0], img)
        tifffile.imwrite(paths[1], img.astype(np.uint16) * 257)
        cv2.imwrite(str(paths[2]), img)
        cv2.imwrite(str(paths[3]), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for key, p in zip(files, paths):
            files[key].append(p)
    return files


def _pil(path: Path, max_side: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("I;16" if im.mode.startswith("I;16") else "L")
        f = max_side / max(im.size)
        im = im.resize((round(im.size[0] * f), round(im.size[1] * f)), Image.Resampling.BOX)
        return np.asarray(im, dtype=np.float32) / (65535 if im.mode.startswith("I") else 255)


def _rate(fn, paths: list[Path], max_side: int) -> float:
    for p in paths[:2]:  # warm-up (page cache, lazy imports)
        fn(p, max_side)
    t = time.perf_counter()
    for p in paths:
        fn(p, max_side)
    return len(paths) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=200, help="images per format (default 200)")
    ap.add_argument("--max-side", type=int, default=448, help="downscale target (default 448)")
    args = ap.parse_args()

    def semcat(p: Path, m: int) -> np.ndarray:
        return read_image(p, max_side=m)[0]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = _make(Path(tmp), args.n)
        for fmt, paths in files.items():
            ours, base = _rate(semcat, paths, args.max_side), _rate(_pil, paths, args.max_side)
            rows.append(f"| {fmt} | {ours:,.0f} | {1e3 / ours:.2f} | {base:,.0f} | {ours / base:.2f}x |")
            print(rows[-1])
    write_results(OUT, header(
        f"Decode + downscale throughput (1024x768 → longer side {args.max_side}, one process, one thread)") + [
        f"- OpenCV {cv2.__version__}; images per format: {args.n}; semcat = `read_image(path, max_side={args.max_side})` "
        "(data-bar detection and crop on); baseline = PIL open + convert + BOX resize", "",
        "| format | semcat img/s | semcat ms/img | PIL img/s | speed-up |",
        "|---|---:|---:|---:|---:|", *rows,
    ])


if __name__ == "__main__":
    main()
