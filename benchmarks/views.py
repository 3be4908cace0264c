"""Which view of the image pays: accuracy and seconds for views, data-bar crop and Lite0+Lite2.

Usage: ``python benchmarks/views.py [PER_CLASS] [--size 256] [--runs 3]``. Writes a synthetic
set (10 classes x PER_CLASS, with data bars) to a temp folder and runs ``semcat.training.compare``
without the feature cache (so every row pays its own extraction) for: efficientnet_lite0 with the
centre crop (the paper's view, the baseline), the full image, 5 tiles (global + 2x2, pooled), the
centre crop without data-bar crop, and efficientnet_lite0+efficientnet_lite2 concatenated.
Reports test accuracy (mean ± std over runs with re-splits), extraction and head seconds, and
accuracy gained per extra second relative to the baseline. Results: ``benchmarks/results/views.md``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _results import header, write_results
from semcat.synth import write_dataset
from semcat.training import Variant, compare

OUT = Path(__file__).resolve().parent / "results" / "views.md"
CASES = [
    ("efficientnet_lite0", Variant("center", True)),
    ("efficientnet_lite0", Variant("full", True)),
    ("efficientnet_lite0", Variant("tiles5", True)),
    ("efficientnet_lite0", Variant("center", False)),
    ("efficientnet_lite0+efficientnet_lite2", Variant("center", True)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("per_class", nargs="?", type=int, default=60)
    ap.add_argument("--size", type=int, default=256, help="synthetic image side in pixels")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, per_class=args.per_class, size=args.size, seed=7, databar=True)
        rows = []
        for backbone, variant in CASES:
            rows += compare(tmp, [backbone], args.runs, [variant], store=None, progress=False)
    base = rows[0]
    lines = header(f"Views and backbones: 10 classes x {args.per_class} synthetic {args.size}-px images, {args.runs} runs",
                   started=started) + [
        "- features computed fresh for every row (no cache); baseline = efficientnet_lite0, centre crop, data bar cropped",
        "",
        "| backbone | view | data-bar crop | test accuracy (%) | features (s) | head (s) | time vs baseline | accuracy points per extra second |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        total = r["time_features_s"] + r["time_head_s"]
        btotal = base["time_features_s"] + base["time_head_s"]
        gain = 100 * (r["accuracy_mean"] - base["accuracy_mean"])
        per_s = "–" if r is base or total <= btotal else f"{gain / (total - btotal):+.2f}"
        lines.append(
            f"| {r['backbone']} | {r['view']} | {'on' if r['crop_databar'] else 'off'} | "
            f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} | {r['time_features_s']:.1f} | "
            f"{r['time_head_s']:.2f} | {total / btotal:.2f}x | {per_s} |")
    write_results(OUT, lines)


if __name__ == "__main__":
    main()
