"""int8 vs fp32 speed only: network and end to end from 1024x768 TIFFs, in one run.

Usage: ``python benchmarks/int8_speed.py [--speed-n 384] [--rounds 3] [--n-baseline 16] [--images DIR]``
(writes ``benchmarks/results/int8_speed.md``).

The speed half of ``benchmarks/int8.py`` (same functions, same images), for re-measuring after a
change to decoding or preprocessing that leaves the features bit-identical, so the parity half of
``int8.md`` still holds: on a loaded shared machine the parity half alone takes most of an hour.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


OUT = Path(__file__).resolve().parent / "results" / "int8_speed.md"


def percentile_check(files: list[Path], spec) -> tuple[int, float, float]:
    """(images, min cosine, max |difference|) of fp32 features with the contrast range from
    np.percentile, the rule before the histogram shortcut, against today's pipeline."""
    import numpy as np

    import semcat.features as sf

    def percentile_range(img: np.ndarray) -> tuple[float, float]:
        step = max(1, int(np.sqrt(img.size / sf._PCT_SAMPLES)))
        sample = img[::step, ::step]
        lo, hi = np.percentile(sample[np.isfinite(sample)], (sf._LOW_PCT, sf._HIGH_PCT))
        return float(lo), float(hi)

    now = sf.extract_features(files, spec, runtime="openvino", store=None, progress=False).features
    today = sf._robust_range
    sf._robust_range = percentile_range
    try:
        before = sf.extract_features(files, spec, runtime="openvino", store=None, progress=False).features
    finally:
        sf._robust_range = today
    cos = (now * before).sum(1) / (np.linalg.norm(now, axis=1) * np.linalg.norm(before, axis=1))
    return len(files), float(cos.min()), float(np.abs(now - before).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed-n", type=int, default=384, help="1024x768 TIFFs for the speed runs")
    ap.add_argument("--rounds", type=int, default=3, help="alternating fp32/int8 speed rounds")
    ap.add_argument("--n-baseline", type=int, default=16, help="images for the Inception-v3 baseline")
    ap.add_argument("--images", type=Path, help="keep the generated images here and reuse them")
    args = ap.parse_args()

    from semcat.backbones import get_backbone
    from semcat.quantize import quantize_backbone

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _results import header, write_results  # benchmarks/_results.py
    from features import make_images  # benchmarks/features.py
    from int8 import speed, speed_lines  # benchmarks/int8.py

    fp32 = get_backbone("efficientnet_lite0")
    t = time.perf_counter()
    q = quantize_backbone(fp32)
    q_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        root = args.images or Path(tmp)
        files = make_images(root / "speed", args.speed_n)
        check = percentile_check(files[:64], fp32)
        sp = speed(files, fp32, replace(fp32, precision="int8"), args.rounds, args.n_baseline)
    load = os.getloadavg()
    info = q.info
    text = "\n".join([
        *header("int8 features vs fp32: speed after the decode-path changes"),
        f"- contention: shared machine, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at "
        "the end; absolute rates are low and noisy, the fp32/int8 ratios within a round are the figures to trust",
        f"- int8 model: {info['recipe']}, calibrated on {info['calibration']['synthetic']} synthetic + "
        f"{info['calibration']['user']} user images, NNCF {info['nncf']}, OpenVINO {info['openvino'].split('-')[0]}; "
        f"{'built' if q.built else 're-used'} in {q_s:.0f} s",
        "- parity: int8.md and int8_recipes.md measure the int8 recipe named above; the decode-path changes "
        "leave fp32 features unchanged: the contrast range from a histogram against np.percentile on "
        f"{check[0]} of these images: fp32 feature cosine min {check[1]:.7f}, "
        f"largest difference {check[2]:.1e}; libdeflate/zstd strips give the pixels libtiff gives "
        "(tests/test_tiff_codecs.py)",
        "", *speed_lines(sp, args.speed_n, args.rounds, args.n_baseline),
        "Goal (issue 21): int8 end to end ≥ 2.5x fp32 on a VNNI/AMX CPU (≥ 200 img/s on 2 cores), ≥ 1.3x on AVX2-only.",
        "",
    ])
    write_results(OUT, text.splitlines())


if __name__ == "__main__":
    main()
