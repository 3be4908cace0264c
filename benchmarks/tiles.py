"""The image viewer's tiles on a big image: first view and full-resolution level, against a whole decode.

For each format, one ``--side`` x ``--side`` 16-bit gray image (a smooth pattern plus detector
noise) is written, then three stages run, each in a fresh process whose peak resident memory is
read from ``/proc`` (``VmHWM``, reset after the imports and the file read):

1. baseline, in the same run: ``read_image_bytes`` decoding the whole image (float32, no crop),
   what rendering tiles from a whole decode would cost per level;
2. first view: ``make_pyramid`` (the stretch level, its tiles and every coarser level's);
3. zoom to full resolution: ``render_level`` of the last level (every tile of it, cached).

    python benchmarks/tiles.py --side 8192 --formats tiff,tiff-lzw,png

Writes ``benchmarks/results/tiles.md``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import header, write_results

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 256 * 2**20  # semcat serve's default --max-decode-mb
SHA = "ab" * 32


def write_image(path: Path, side: int, fmt: str) -> None:
    import cv2
    import tifffile

    rng = np.random.default_rng(0)
    across = np.sin(np.arange(side, dtype=np.float32) / 37)
    down = np.cos(np.arange(side, dtype=np.float32) / 23)
    img = 20000 + 8000 * down[:, None] * across[None, :]
    img += rng.normal(0, 1500, (side, side)).astype(np.float32)
    img = np.clip(img, 0, 65535).astype(np.uint16)
    if fmt == "png":
        cv2.imwrite(str(path), img)
    else:
        tifffile.imwrite(path, img, compression="lzw" if fmt == "tiff-lzw" else None, rowsperstrip=64)


def _kib(field: str) -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])


def child(stage: str, file: Path, root: Path) -> dict:
    """One stage in this (fresh) process: wall and CPU seconds, peak memory growth in MiB."""
    from semcat.images import read_image_bytes
    from semcat.web.pyramid import load_pyramid, make_pyramid, render_level

    data = file.read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM restarts from here
    before = _kib("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    tiles = 0
    if stage == "whole":
        read_image_bytes(data, file.name, crop_databar=False, max_decode_bytes=2**32)
    elif stage == "pyramid":
        make_pyramid(data, file.name, SHA, max_decode_bytes=BUDGET, root=root)
        tiles = len(list(root.rglob("*.png")))
    else:
        pyramid = load_pyramid(SHA, root)
        render_level(data, file.name, SHA, pyramid, pyramid.levels - 1, max_decode_bytes=BUDGET, want=(0, 0),
                     root=root)
        nx, ny = pyramid.grid(pyramid.levels - 1)
        tiles = nx * ny
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "peak_mb": (_kib("VmHWM") - before) / 1024, "tiles": tiles}


def run_stage(stage: str, file: Path, root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", stage, "--file", str(file), "--root", str(root)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=8192, help="side of the square test image in pixels")
    ap.add_argument("--formats", default="tiff,tiff-lzw,png", help="comma-separated: tiff, tiff-lzw, png")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tiles.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.file, args.root)))
        return 0
    started = time.perf_counter()
    rows = []
    for fmt in args.formats.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / f"big.{'png' if fmt == 'png' else 'tif'}"
            write_image(file, args.side, fmt)
            got = {stage: run_stage(stage, file, Path(tmp) / "cache") for stage in ("whole", "pyramid", "level")}
            rows.append((fmt, file.stat().st_size / 2**20, got))
    lines = header(f"Viewer tiles of a {args.side} x {args.side} 16-bit image", started=started)
    lines += ["", "Each stage in a fresh process; memory is the growth of peak resident memory (VmHWM) over the "
              "process after its imports and the file read (the file's bytes are held by every stage). "
              "Whole decode: the baseline of this run, `read_image_bytes` of the whole image as float32.", "",
              "| format | file MiB | whole decode s / MiB | first view: pyramid s / MiB / tiles "
              "| full resolution: level s / MiB / tiles | ms per full-res tile |",
              "|---|---:|---:|---:|---:|---:|"]
    for fmt, mb, g in rows:
        w, p, lv = g["whole"], g["pyramid"], g["level"]
        lines.append(f"| {fmt} | {mb:.0f} | {w['wall']:.2f} / {w['peak_mb']:.0f} | {p['wall']:.2f} / {p['peak_mb']:.0f} "
                     f"/ {p['tiles']} | {lv['wall']:.2f} / {lv['peak_mb']:.0f} / {lv['tiles']} "
                     f"| {1000 * lv['wall'] / lv['tiles']:.1f} |")
    lines += ["", "Peak memory of the tile stages as a share of the whole decode's: "
              + ", ".join(f"{fmt} {max(g['pyramid']['peak_mb'], g['level']['peak_mb']) / g['whole']['peak_mb']:.2f}"
                          for fmt, _, g in rows) + "."]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
