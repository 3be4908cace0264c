"""Where one image's time goes before the network: ``semcat features``' per-image path, stage by stage.

Usage: ``python benchmarks/decode_stages.py [--n 48] [--rounds 7]`` (writes
``benchmarks/results/decode_stages.md``).

``--n`` synthetic 1024x768 8-bit TIFFs (``benchmarks/features.py``'s set), each stage timed on
its own input (the previous stage's output, prepared beforehand) with ``time.perf_counter``, each
image's best of ``--rounds`` (on a shared machine the best run is the one nothing else
interrupted), averaged over the images; one thread. The stages are the calls
``semcat.features.iter_features`` makes per image at the default backbone's size
(``max_side`` 448, the default view, 224 px: the ``center`` crop's preprocessing, then ``clean``'s clean-up). The contrast range is also timed with
``np.percentile``, the rule before the histogram (``_histogram_percentiles``), on the same images.

Then the whole path as a run meets it, in CPU time per image (all threads, median of
``--rounds``): every file once in turn on one thread (each image's bytes cold, not the same image
seven times over), and ``extract_features`` with its decode threads and a network that returns
zeros (``benchmarks/int8.py``'s ``ZeroRuntime``), the "decode only" row of int8_speed.md: what the
stage sum leaves out (cold caches, thread hand-offs, batching) is the difference.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import header, write_results  # benchmarks/_results.py
from features import make_images  # benchmarks/features.py

from semcat._io import sha256_bytes
from semcat.backbones import get_backbone
from semcat.contrast import HIGH_PCT as _HIGH_PCT, LOW_PCT as _LOW_PCT, robust_range as _robust_range
from semcat.features import DEFAULT_VIEW, _preprocess_gray
from semcat.runtime import model_input
from semcat.view_transforms import TRANSFORMS
from semcat.images import _downscale, _tiff_pixels, detect_databar, read_file_bytes, read_image_bytes, to_gray_float
from semcat.semmeta import parse_tiff_tags

OUT = Path(__file__).resolve().parent / "results" / "decode_stages.md"


def _best_ms(fn, inputs: list, rounds: int) -> float:
    best = np.full(len(inputs), np.inf)
    for _ in range(rounds):
        for i, x in enumerate(inputs):
            t = time.perf_counter()
            fn(x)
            best[i] = min(best[i], time.perf_counter() - t)
    return float(best.mean() * 1e3)


def _parse(data: bytes) -> None:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        parse_tiff_tags(tif, full=False)  # as extraction reads them: only what decides the crop


def _pixels(data: bytes) -> np.ndarray:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        return _tiff_pixels(tif.pages.first, data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="1024x768 8-bit TIFFs (default 48)")
    ap.add_argument("--rounds", type=int, default=7, help="timed runs per image; the best counts (default 7)")
    args = ap.parse_args()
    spec = get_backbone("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_images(Path(tmp), args.n)
        data = [read_file_bytes(p) for p in files]
        ms = _measure(files, data, spec, args.rounds)
        seq, pool = _run_cpu_ms(files, spec, args.rounds)
    total = ms[0][1] + ms[1][1] + ms[7][1] + ms[10][1] + ms[11][1] + ms[12][1]
    write_results(OUT, [
        *header("Decode path, stage by stage: one 1024x768 8-bit TIFF before the network"),
        f"- timing: shared machine, each image's best of {args.rounds} runs",
        f"- images: {args.n} synthetic SEM images (10 categories), uncompressed; one Python thread; the calls "
        f"`semcat features` makes per image for {spec.name} (max_side {2 * spec.input_size}, `{DEFAULT_VIEW}` view, "
        f"{spec.input_size} px)", "",
        "| stage | ms per image |", "|---|---:|",
        *(f"| {name} | {v:.3f} |" for name, v in ms),
        f"| **per image before the network** (read + SHA-256 + read_image + preprocessing + clean-up + input) | {total:.3f} |",
        "",
        f"CPU time per image of the same path as a run meets it (all threads, median of {args.rounds} rounds): "
        f"every file once in turn, one thread: {seq:.2f} ms; `extract_features` with its decode threads and a "
        f"network that returns zeros: {pool:.2f} ms.",
        "",
    ])


def _run_cpu_ms(files: list[Path], spec, rounds: int) -> tuple[float, float]:
    """CPU ms per image of the per-image path over ``files`` in turn (one thread), and of
    ``extract_features`` with a network that returns zeros; medians of ``rounds``."""
    from int8 import ZeroRuntime  # benchmarks/int8.py

    from semcat.features import extract_features

    size, side = spec.input_size, 2 * spec.input_size

    def in_turn() -> None:
        for p in files:
            b = read_file_bytes(p)
            sha256_bytes(b)
            img = read_image_bytes(b, p, max_side=side, metadata=False)[0]
            model_input(_preprocess_gray(img, size, spec.interpolation, DEFAULT_VIEW), spec)

    zero = ZeroRuntime(spec)
    runs = {"seq": in_turn, "pool": lambda: extract_features(files, spec, runtime=zero, store=None, progress=False)}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, fn in runs.items():
            c = time.process_time()
            fn()
            cpu[k].append(1e3 * (time.process_time() - c) / len(files))
    return float(np.median(cpu["seq"])), float(np.median(cpu["pool"]))


def _measure(files: list[Path], data: list[bytes], spec, rounds: int) -> list[tuple[str, float]]:
    """(stage, best ms per image averaged over the images), each stage on its prepared input."""
    size, side = spec.input_size, 2 * spec.input_size
    raw = [_pixels(d) for d in data]
    small = [_downscale(r, side) for r in raw]
    imgs = [read_image_bytes(d, p, max_side=side, metadata=False)[0] for d, p in zip(data, files)]
    center = [_preprocess_gray(g, size, spec.interpolation, "center") for g in imgs]
    gray = [_preprocess_gray(g, size, spec.interpolation, DEFAULT_VIEW) for g in imgs]
    stages = [
        ("read the file's bytes", lambda p: read_file_bytes(p), files),
        ("SHA-256 of the bytes (the cache key)", sha256_bytes, data),
        ("TIFF header and vendor tags (only what decides the crop)", _parse, data),
        ("pixel decode (TIFF header parsed again)", _pixels, data),
        (f"downscale to {side} px (uint8, INTER_AREA x2 then bilinear)", lambda r: _downscale(r, side), raw),
        ("data-bar detection", detect_databar, small),
        ("to float32 in [0, 1]", to_gray_float, small),
        ("**all of read_image** (header, decode, downscale, bar, float: the rows above; sidecar lookup, crop)",
         lambda dp: read_image_bytes(dp[0], dp[1], max_side=side, metadata=False), list(zip(data, files))),
        ("contrast range: histogram (today)", _robust_range, imgs),
        ("contrast range: np.percentile (before)", lambda g: np.percentile(g, (_LOW_PCT, _HIGH_PCT)), imgs),
        (f"**all of preprocessing**: range, centre crop, resize to {size}, stretch",
         lambda g: _preprocess_gray(g, size, spec.interpolation, "center"), imgs),
        (f"clean-up of the `{DEFAULT_VIEW}` view (background subtracted, stretched again, 5x5 median; on the crop)",
         lambda c: TRANSFORMS[DEFAULT_VIEW](c[0]), center),
        ("gray → 3-channel normalised network input", lambda g: model_input(g, spec), gray),
    ]
    return [(name, _best_ms(fn, inputs, rounds)) for name, fn, inputs in stages]


if __name__ == "__main__":
    main()
