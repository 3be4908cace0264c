"""Cross-fitted unknown threshold: which way of setting it holds for a new sample (issue 17).

Usage: ``python benchmarks/unknown_threshold.py [--sizes 20,50,200] [--draws 3] [--logo-sizes 20]``.

The unknown detector's threshold is the 97% quantile of out-of-fold scores of the labelled images,
so that ~3% of the images of a *new sample* of a known class are flagged. Measured here: the
share of the untouched test set (new samples of the known classes) above each candidate's
threshold, on the synthetic sets and cached features of ``calibration_small.py`` (same draws, same
labelled images; only the detector is fitted, the head does not change the share):

- **all images, random folds**: folds drawn image by image, the kept statistics fitted on every
  labelled image (issue 17's first version without ``--group-by``);
- **all images, sample folds**: the same with the samples as groups (first version with ``--group-by``);
- **all images, extrapolated**: sample folds, each image's raw scores extrapolated linearly in
  1 / (reference size) from two fold counts (5 and 2) to the full reference;
- **all images, leave one sample out**: a fit per sample (``--logo-sizes`` only: hundreds of fits);
- **largest fold fit, random folds** / **sample folds**: the kept statistics are those of the fold
  fit with the most images, so the threshold and the scores of new images come from references of
  one size (``UnknownDetector.fit`` since this benchmark: sample folds are ``calibrate``'s default
  through file-name series);
- **largest fold fit, sample folds lowered to the smallest class's sample count** (3 at 20 per class:
  ``fold_ids`` before it let a class have fewer samples than folds);
- **largest fold fit, sample folds, conformal rank**: the threshold as the ceil((n+1)·0.97)-th
  smallest of the n out-of-fold scores (split-conformal), instead of the interpolated quantile.

Also: how well feature-similarity clusters (``semcat.duplicates.feature_pairs`` at
``FEATURE_MIN_COSINE``, joined by union-find) recover the samples, the other default grouping
considered. Results: ``benchmarks/results/unknown_threshold.md``.
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from semcat.crossfit import fold_ids
from semcat.duplicates import FEATURE_MIN_COSINE, feature_pairs, group_pairs
from semcat.ood import UnknownDetector

from _results import header, write_results
from calibration_small import POOL, TEST_SEED, load

RESULTS = Path(__file__).resolve().parent / "results"
QUANTILE = 0.97
Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], UnknownDetector]


def _threshold(det: UnknownDetector, raw: np.ndarray, *, conformal: bool = False) -> UnknownDetector:
    """Scale and threshold ``det`` from out-of-fold raw scores, as ``UnknownDetector.fit`` does."""
    med = np.nanmedian(raw, axis=0)
    det.norm_ = np.stack([med, np.maximum(np.nanquantile(raw, 0.9, axis=0) - med, 1e-12)])
    fused = np.sort(det._fuse(raw))
    rank = min(math.ceil((len(fused) + 1) * QUANTILE), len(fused))
    det.threshold_ = float(fused[rank - 1] if conformal else np.quantile(fused, QUANTILE))
    return det


def _all_images(X: np.ndarray, y: np.ndarray, folds: np.ndarray) -> UnknownDetector:
    det = UnknownDetector(quantile=QUANTILE)
    raw = det._out_of_fold_raw(X, y, folds)
    det._fit_scores(X, y)
    return _threshold(det, raw)


def _extrapolated(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> UnknownDetector:
    det = UnknownDetector(quantile=QUANTILE)
    fa, fb = fold_ids(y, groups.tolist())[0], fold_ids(y, groups.tolist(), k=2, seed=1)[0]
    ra, rb = det._out_of_fold_raw(X, y, fa), det._out_of_fold_raw(X, y, fb)
    ia, ib = 1 / (len(X) - np.bincount(fa)[fa]), 1 / (len(X) - np.bincount(fb)[fb])
    det._fit_scores(X, y)
    return _threshold(det, ra + (ra - rb) * ((1 / len(X) - ia) / (ia - ib))[:, None])


def _largest_fold(X: np.ndarray, y: np.ndarray, folds: np.ndarray, *, conformal: bool = False) -> UnknownDetector:
    det = UnknownDetector(quantile=QUANTILE).fit(X, y_train=y, folds=folds)
    return _threshold(det, det._out_of_fold_raw(X, y, folds), conformal=True) if conformal else det


def _fewest_samples(y: np.ndarray, groups: np.ndarray, k: int = 5) -> int:
    return min(k, min(len(set(groups[y == c].tolist())) for c in set(y.tolist())))


CANDIDATES: list[tuple[str, Fit]] = [
    ("all images, random folds", lambda X, y, g: _all_images(X, y, fold_ids(y)[0])),
    ("all images, sample folds", lambda X, y, g: _all_images(X, y, fold_ids(y, g.tolist())[0])),
    ("all images, extrapolated from 5 and 2 sample folds", _extrapolated),
    ("all images, leave one sample out", lambda X, y, g: _all_images(X, y, np.unique(g, return_inverse=True)[1])),
    ("largest fold fit, random folds", lambda X, y, g: _largest_fold(X, y, fold_ids(y)[0])),
    ("largest fold fit, sample folds (adopted)", lambda X, y, g: _largest_fold(X, y, fold_ids(y, g.tolist())[0])),
    ("largest fold fit, sample folds lowered to the smallest class's samples",
     lambda X, y, g: _largest_fold(X, y, fold_ids(y, g.tolist(), k=_fewest_samples(y, g))[0])),
    ("largest fold fit, sample folds, conformal rank",
     lambda X, y, g: _largest_fold(X, y, fold_ids(y, g.tolist())[0], conformal=True)),
]


def cluster_purity(X: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Feature-similarity clusters against the true samples: count, largest, share of same-sample pairs."""
    clusters = group_pairs(len(X), feature_pairs(X, FEATURE_MIN_COSINE))
    same = [groups[a] == groups[b] for c in clusters for i, a in enumerate(c) for b in c[i + 1:]]
    return {"clusters": len(clusters), "largest": max((len(c) for c in clusters), default=0),
            "purity": float(np.mean(same)) if same else float("nan"), "samples": len(set(groups.tolist()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20,50,200", help="labelled images per category (each <= 200)")
    ap.add_argument("--logo-sizes", default="20", help="sizes at which leave-one-sample-out runs (a fit per sample)")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=71)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--data", type=Path, default=Path("/tmp/semcat-calibration-small"),
                    help="calibration_small.py's image folder (the same sets; features from the cache)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logo = {int(s) for s in args.logo_sizes.split(",") if s}
    started = time.perf_counter()
    test = load(args.data / "test", TEST_SEED, args.test_per_class, "efficientnet_lite0", "center")
    shares: dict[tuple[int, str], list[float]] = {}
    seconds: dict[tuple[int, str], float] = {}
    purity: dict[int, list[dict[str, float]]] = {}
    for draw in range(args.draws):
        full = load(args.data / f"s{args.seed + draw}", args.seed + draw, POOL, "efficientnet_lite0", "center", max(sizes))
        for n in sizes:
            keep = (full.nnn < n) & (full.split != "test")
            X, y, g = full.X[keep], full.y[keep], full.groups[keep]
            purity.setdefault(n, []).append(cluster_purity(X, g))
            for name, fit in CANDIDATES:
                if "leave one" in name and n not in logo:
                    continue
                t0 = time.perf_counter()
                det = fit(X, y, g)
                seconds[n, name] = seconds.get((n, name), 0.0) + time.perf_counter() - t0
                shares.setdefault((n, name), []).append(float(det.predict(test.X).mean()))
                print(f"draw {draw} n={n} {name}: {100 * shares[n, name][-1]:.1f}%", flush=True)
        lines = header("Cross-fitted unknown threshold: share of new known samples flagged (efficientnet_lite0, view center)",
                       started=started) + [
            (f"- data: calibration_small.py's synthetic draws, seeds {args.seed}-{args.seed + args.draws - 1} ({draw + 1} of "
             f"{args.draws} completed), the first N per category outside each draw's content-hash test split; untouched "
             f"test set: {args.test_per_class} per category, seed {TEST_SEED} (every image a new sample)"),
            (f"- detector: mahalanobis+maxlogit, quantile {QUANTILE} (target: 3% of the test set flagged, bar 2-6%); "
             "folds: 5, stratified, with the draw's samples as groups where named (fewer when a class has fewer samples)"),
            "- share: mean over draws, min-max in brackets; seconds: fitting the detector(s), summed over draws",
            "",
            "| per class | threshold from | known test flagged unknown | seconds |",
            "|---:|---|---:|---:|",
        ]
        for (n, name), v in shares.items():
            a = 100 * np.array(v)
            lines.append(f"| {n} | {name} | {a.mean():.1f}% [{a.min():.1f}-{a.max():.1f}] ({len(v)} draws) | {seconds[n, name]:.0f} |")
        lines += ["", f"Feature-similarity clusters (cosine >= {FEATURE_MIN_COSINE}, union-find) against the samples, mean over draws:", "",
                  "| per class | samples | clusters (2+ images) | largest cluster | same-sample share of pairs in a cluster |",
                  "|---:|---:|---:|---:|---:|"]
        for n, rs in purity.items():
            lines.append(f"| {n} | {np.mean([r['samples'] for r in rs]):.0f} | {np.mean([r['clusters'] for r in rs]):.0f} | "
                         f"{np.mean([r['largest'] for r in rs]):.0f} | {100 * np.nanmean([r['purity'] for r in rs]):.0f}% |")
        write_results(RESULTS / "unknown_threshold.md", lines)


if __name__ == "__main__":
    main()
