"""Synthetic data and dataset-scan benchmark.

1. ``semcat.synth.generate_image`` time per category (one thread) at ``--size`` and 768x1024,
   against the baseline of encoding + atomically writing the same image as a TIFF.
2. ``semcat.dataset.scan_dataset`` (thread-pool hashing) against a plain sequential
   ``sha256_file`` loop over the same files, and the extra cost of ``check_images=True``.

    python benchmarks/data.py --size 512 --n 10 --files 2000

Writes ``benchmarks/results/data.md``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import header, write_results

ROOT = Path(__file__).resolve().parents[1]




def time_synth(size: int, n: int, work: Path) -> list[tuple[str, float, float, float]]:
    """(category, ms per size x size image, ms per 768x1024 image, ms to encode+write one TIFF)."""
    import cv2

    from semcat import CATEGORIES
    from semcat._io import atomic_write_bytes
    from semcat.synth import generate_image
    from semcat.synth.writers import _encode

    cv2.setNumThreads(1)
    rows = []
    for ci, cat in enumerate(CATEGORIES):
        generate_image(cat, np.random.default_rng(0), 64)  # warm-up
        t0 = time.perf_counter()
        imgs = [generate_image(cat, np.random.default_rng([ci, i]), size) for i in range(n)]
        t_square = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for i in range(max(1, n // 2)):
            generate_image(cat, np.random.default_rng([ci, i]), shape=(768, 1024))
        t_wide = (time.perf_counter() - t0) / max(1, n // 2)
        t0 = time.perf_counter()
        for i, img in enumerate(imgs):
            atomic_write_bytes(work / f"{cat}_{i}.tif", _encode(img, "tif"))
        t_write = (time.perf_counter() - t0) / n
        rows.append((cat, 1e3 * t_square, 1e3 * t_wide, 1e3 * t_write))
    return rows


def time_scan(files: int, work: Path) -> dict[str, float]:
    """Seconds for a sequential hash loop (baseline), scan_dataset, and scan_dataset with checks."""
    from semcat._io import iter_image_files, sha256_file
    from semcat.dataset import scan_dataset
    from semcat.synth import write_dataset

    root = work / "scan"
    write_dataset(root, per_class=max(1, files // 10), size=256, seed=0)
    paths = list(iter_image_files([root]))
    t0 = time.perf_counter()
    for p in paths:
        sha256_file(p)
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = scan_dataset(root, near_duplicates=False)  # hashing only, as before issue 22
    scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    scan_dataset(root, check_images=True, near_duplicates=False)
    check = time.perf_counter() - t0
    return {"files": len(ds.samples), "baseline": baseline, "scan": scan, "check": check}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="side of the square synthetic images")
    ap.add_argument("--n", type=int, default=10, help="images per category for the generator timing")
    ap.add_argument("--files", type=int, default=2000, help="files (256 px TIFFs) for the scan timing")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/data.md")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        synth_rows = time_synth(args.size, args.n, Path(tmp))
        scan = time_scan(args.files, Path(tmp))

    mean_sq = float(np.mean([r[1] for r in synth_rows]))
    mean_wide = float(np.mean([r[2] for r in synth_rows]))
    mean_write = float(np.mean([r[3] for r in synth_rows]))
    lines = header("Synthetic data generation and dataset scan", argv=argv) + [
        "",
        f"## `generate_image` (one thread, {args.n} images per category)",
        "",
        "Baseline: encoding the same image as TIFF and writing it atomically (what `write_dataset` "
        "does after generating).",
        "",
        f"| category | ms per {args.size}² image | ms per 768x1024 image | TIFF write ms | generate / write |",
        "|---|---:|---:|---:|---:|",
    ]
    for cat, sq, wide, write in synth_rows:
        lines.append(f"| {cat} | {sq:.1f} | {wide:.1f} | {write:.2f} | {sq / write:.1f}x |")
    lines.append(f"| **mean** | **{mean_sq:.1f}** | **{mean_wide:.1f}** | **{mean_write:.2f}** | "
                 f"**{mean_sq / mean_write:.1f}x** |")
    lines += [
        "",
        f"## `scan_dataset` on {scan['files']} files (256 px TIFFs)",
        "",
        "| method | seconds | files/s | vs baseline |",
        "|---|---:|---:|---:|",
        f"| baseline: sequential `sha256_file` loop | {scan['baseline']:.2f} | {scan['files'] / scan['baseline']:.0f} | 1.00x |",
        f"| `scan_dataset` (thread-pool hashing, splits, warnings) | {scan['scan']:.2f} | "
        f"{scan['files'] / scan['scan']:.0f} | {scan['baseline'] / scan['scan']:.2f}x |",
        f"| `scan_dataset(check_images=True)` (also decodes) | {scan['check']:.2f} | "
        f"{scan['files'] / scan['check']:.0f} | {scan['baseline'] / scan['check']:.2f}x |",
        "",
        "Files were just written, so they are in the page cache: this measures CPU cost, not disk.",
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
