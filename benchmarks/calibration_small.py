"""Small labelled sets: cross-fitted calibration against the validation-split calibration it replaced.

Usage: ``python benchmarks/calibration_small.py [--sizes 20,50,200] [--draws 3] [--view center]
[--backbone efficientnet_lite0] [--test-per-class 100] [--target 0.95]``.

Writes, once, synthetic sets (``semcat.synth``, 176 px, data bars): one draw per seed 71, 72, ...
of 200 images per category (the 20- and 50-per-class sets of a draw are its first images, as
``semcat synth --per-class`` would write them) and an untouched test set of ``--test-per-class``
images per category from seed 79. Features go through the default FeatureStore, so every draw
and configuration runs on cached features (a rerun only regenerates the images).

For each draw and size, the draw's images outside its content-hash test split (as ``semcat train``
splits) are the labelled set, and each configuration trains and calibrates through the library:

- **val split (before)**: head fitted on the train split with early stopping on val, temperature,
  thresholds and the unknown threshold from the val split (``train --split val``, ``calibrate
  --split val``: the protocol before issue 17);
- **cross-fitted random folds**: head fitted on train + val with the L2 penalty chosen by 5-fold
  cross-validation, calibration from out-of-fold predictions, folds drawn image by image (the
  default of issue 17's first version);
- **cross-fitted (series folds)**: the same with folds that keep each file-name series together
  (``semcat.crossfit.series_groups``: ``calibrate``'s default); here the series are exactly the
  samples (``--group-by '^([^_]+_[^_]+)_'`` gives the same folds), so the 2-6 shots of one sample
  never sit on both sides of a fold;
- each cross-fitted row again **+ guarantee**: ``t_auto`` from the lower end of the 95% interval
  (``--guarantee``; the same fit, only the threshold differs, so it is computed from its score table).

A second table compares the auto bands at equal realised precision: per draw, each calibration's
largest auto band on the test set whose precision reaches the val split's realised precision (the
threshold swept over the test scores), and its precision over as many images as the val split's band.

Measured on the untouched test set: the share of known images decided ``unknown`` (target 3%,
bar 2-6%), whether ``t_auto`` exists, the auto band's share and realised precision (bar at 200
per class: >= target - 1 point), suggest and manual shares, accuracy, and the seconds to train +
calibrate. Results: ``benchmarks/results/calibration_small[-VIEW][-BACKBONE].md``, rewritten after each
draw (a stopped run keeps the draws it finished; the header says how many).
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from semcat.calibration import (
    STATS_TENSOR,
    auto_threshold,
    band_report,
    calibrate_crossfit,
    calibrate_model,
    clopper_pearson,
    expected_calibration_error,
    score_cases,
)
from semcat.crossfit import fold_ids, select_weight_decay, series_groups
from semcat.head import SoftmaxHead
from semcat.featurespec import FeatureSpec
from semcat.model import SemcatModel

from _results import header, write_results

RESULTS = Path(__file__).resolve().parent / "results"
GROUP_BY = "^([^_]+_[^_]+)_"  # the synthetic archive's <user>_<sample>_<nnn> names
SIZE, TEST_SEED, POOL = 176, 79, 200


@dataclass
class Labelled:
    """Features, labels, sample groups, content-hash split and per-class index of a draw's images."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    split: np.ndarray
    nnn: np.ndarray
    names: np.ndarray


def load(root: Path, seed: int, per_class: int, backbone: str, view: str, first: int | None = None) -> Labelled:
    """Write (if missing) and featurise one synthetic set, or its ``first`` images per category; rows in scan order."""
    from semcat.dataset import scan_dataset
    from semcat.synth import write_dataset

    write_dataset(root, per_class=per_class, size=SIZE, seed=seed, databar=True)
    ds = scan_dataset(root, group_by=GROUP_BY)
    samples = [s for s in ds.samples if first is None or _nnn(s.path) < first]
    paths = [str(s.path) for s in samples]
    res = FeatureSpec.resolve(backbone, view=view).extract(paths, store="default")
    ok, X, errors = res.paths, res.features, res.errors
    if errors:
        raise RuntimeError(f"feature extraction failed: {errors[:3]}")
    assert ok == paths
    return Labelled(X, np.array([s.label for s in samples]), np.array([s.group for s in samples]),
                    np.array([s.split for s in samples]), np.array([_nnn(s.path) for s in samples]),
                    np.array([s.path.name for s in samples]))


def _nnn(path: Path) -> int:
    """Index of an image within its category (file names end in _NNN)."""
    return int(path.stem.rsplit("_", 1)[1])


def _model(head: SoftmaxHead, backbone: str, view: str) -> SemcatModel:
    return SemcatModel(FeatureSpec.resolve(backbone, view=view), head)


def val_split(d: Labelled, classes: list[str], target: float, *, backbone: str, view: str,
              grouped: bool) -> SemcatModel:
    """The protocol before issue 17: fit on train, early-stop on val, calibrate on val."""
    tr, va = d.split == "train", d.split == "val"
    head = SoftmaxHead(classes=classes).fit(d.X[tr], d.y[tr], d.X[va], d.y[va])
    model = _model(head, backbone, view)
    calibrate_model(model, d.X[va], d.y[va].tolist(), d.X[tr], y_train=d.y[tr].tolist(), target_precision=target)
    return model


def crossfit(d: Labelled, classes: list[str], target: float, *, backbone: str, view: str,
             grouped: bool) -> SemcatModel:
    """The default after issue 17: penalty by 5-fold CV on train + val, final head on all, out-of-fold calibration."""
    pool = d.split != "test"
    X, y = d.X[pool], d.y[pool]
    groups = series_groups(d.names[pool].tolist(), y.tolist())[0] if grouped else None
    folds, _ = fold_ids(y, groups)
    wd, _, _ = select_weight_decay(X, y, folds, classes, lambda wd: SoftmaxHead(classes=classes, weight_decay=wd))
    model = _model(SoftmaxHead(classes=classes, weight_decay=wd).fit(X, y), backbone, view)
    calibrate_crossfit(model, X, y.tolist(), groups=groups, target_precision=target)
    return model


CONFIGS: list[tuple[str, Callable[..., SemcatModel], bool]] = [
    ("val split (before)", val_split, False),
    ("cross-fitted random folds", crossfit, False),
    ("cross-fitted (series folds)", crossfit, True),
]


def guaranteed(model: SemcatModel) -> dict[str, float]:
    """The calibration ``--guarantee`` gives for the same fit: only t_auto changes, read from the score table."""
    cal = dict(model.calibration or {})
    stats = model.extra_tensors[STATS_TENSOR].astype(np.float64)
    cal["t_auto"] = auto_threshold(stats[:, 1], stats[:, 2] == 0, cal["target_precision"],
                                   cal["params"]["min_support"], guarantee=True)
    cal["t_suggest"] = min(cal["t_suggest"], cal["t_auto"])
    return cal


def evaluate(model: SemcatModel, X: np.ndarray, y: np.ndarray, cal: dict[str, float] | None = None) -> dict[str, float]:
    """Decisions on the untouched test set, as ``decide`` makes them."""
    cal = cal or model.calibration or {}
    index = {c: i for i, c in enumerate(model.classes)}
    yi = np.array([index[c] for c in y])
    proba = model.predict_features(X).astype(np.float64)
    top, case = score_cases(proba, yi)
    unknown = model.ood_scores(X) > cal["ood"]["threshold"]
    bands = band_report(top, case, cal["t_auto"], cal["t_suggest"], unknown)
    auto = bands["auto"]
    return {"outcome": (top, case == 0, unknown), "t_auto_exists": float(cal["t_auto"] <= 1.0), "unknown": bands["unknown"]["share"],
            "auto": auto["share"], "auto_n": auto["count"], "auto_hits": round((auto["precision"] or 0) * auto["count"]),
            "suggest": bands["suggest"]["share"], "manual": bands["manual"]["share"],
            "accuracy": float((case == 0).mean()), "t_auto": cal["t_auto"], "t_suggest": cal["t_suggest"],
            "ece_raw": expected_calibration_error(softmax(model.logits(X).astype(np.float64), axis=1), yi),
            "ece": expected_calibration_error(proba, yi)}


def swept_band(outcome: tuple[np.ndarray, np.ndarray, np.ndarray], precision: float) -> int:
    """The largest auto band (images not unknown, top score >= a threshold swept over the test scores)
    whose realised precision is >= ``precision``; thresholds only between distinct scores."""
    top, correct, unknown = outcome
    order = np.argsort(-top[~unknown], kind="stable")
    score, hit = top[~unknown][order], correct[~unknown][order]
    k = np.arange(1, len(score) + 1)
    ends = np.r_[score[1:] < score[:-1], True]  # a threshold cannot split tied scores
    ok = ends & (np.cumsum(hit) >= precision * k - 1e-9)
    return int(k[ok].max()) if ok.any() else 0


def top_k_precision(outcome: tuple[np.ndarray, np.ndarray, np.ndarray], k: int) -> float | None:
    """Realised precision of the ``k`` most confident images not decided unknown (None for k = 0)."""
    top, correct, unknown = outcome
    if k == 0:
        return None
    order = np.argsort(-top[~unknown], kind="stable")
    return float(correct[~unknown][order][:k].mean())


def equal_precision(out: dict[tuple[int, str], list[dict]]) -> list[str]:
    """Auto band of each calibration at the val split's realised precision, and precision at its band size, per draw."""
    base_name = CONFIGS[0][0]
    lines = ["", "## Auto band at equal realised precision (threshold swept on the test set)", "",
             ("Per draw, on the untouched test set: the val split's realised auto precision p and auto count k at its "
              "t_auto; each calibration's largest auto band whose realised precision is >= p when its threshold is "
              "swept over its own test scores (images decided unknown stay out), and the realised precision of its k "
              "most confident images. It compares score rankings and unknown flags at equal precision, apart from "
              "where each calibration put t_auto; mean over draws, min-max in brackets."), "",
             "| per class | calibration | auto share at its t_auto | auto share at the val split's precision p (swept) "
             "| precision of its k most confident (val split: k at t_auto) | draws |",
             "|---:|---|---:|---:|---:|---:|"]
    for (n, name), rs in sorted(out.items(), key=lambda item: item[0][0]):
        bases = out.get((n, base_name), [])
        pairs = [(r, b) for r, b in zip(rs, bases) if b["auto_n"]]
        if not pairs:
            continue
        total = len(pairs[0][0]["outcome"][0])
        shares = np.array([swept_band(r["outcome"], b["auto_hits"] / b["auto_n"]) / total for r, b in pairs])
        precs = np.array([p for r, b in pairs if (p := top_k_precision(r["outcome"], b["auto_n"])) is not None])
        own = np.array([r["auto"] for r, _ in pairs])

        def mm(v: np.ndarray) -> str:
            return f"{100 * v.mean():.1f}% [{100 * v.min():.1f}-{100 * v.max():.1f}]" if len(v) else "–"

        lines.append(f"| {n} | {name} | {mm(own)} | {mm(shares)} | {mm(precs)} | {len(pairs)} |")
    return lines


def run(args: argparse.Namespace, root: Path,
        done: Callable[[dict[tuple[int, str], list[dict[str, float]]], int], None]) -> None:
    """Every draw, size and configuration; ``done(results, draws_completed)`` after each configuration."""
    test = load(root / "test", TEST_SEED, args.test_per_class, args.backbone, args.view)
    classes = sorted(set(test.y.tolist()))
    out: dict[tuple[int, str], list[dict[str, float]]] = {}
    for draw in range(args.draws):
        full = load(root / f"s{args.seed + draw}", args.seed + draw, POOL, args.backbone, args.view, max(args.sizes))
        for n in args.sizes:
            keep = full.nnn < n
            d = Labelled(full.X[keep], full.y[keep], full.groups[keep], full.split[keep], full.nnn[keep], full.names[keep])
            for name, fn, grouped in (c for c in CONFIGS if c[0] in args.configs.split(",")):
                t0 = time.perf_counter()
                model = fn(d, classes, args.target, backbone=args.backbone, view=args.view, grouped=grouped)
                seconds = time.perf_counter() - t0
                rows = [(name, evaluate(model, test.X, test.y))]
                if fn is crossfit:
                    rows.append((name + " + guarantee", evaluate(model, test.X, test.y, guaranteed(model))))
                for label, res in rows:
                    out.setdefault((n, label), []).append(res | {"seconds": seconds})
                    print(f"draw {draw} n={n} {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items() if k != "outcome")
                          + f", seconds {seconds:.1f}", flush=True)
                done(out, draw)  # after every configuration: a stopped run keeps what it measured
        done(out, draw + 1)


def markdown(out: dict[tuple[int, str], list[dict[str, float]]], args: argparse.Namespace, started: float,
             draws_done: int) -> list[str]:
    lines = header(f"Small labelled sets: cross-fitted vs val-split calibration ({args.backbone}, view {args.view})",
                   started=started) + [
        (f"- data: synthetic, 10 categories, {SIZE} px with data bars; draws = seeds {args.seed}-{args.seed + args.draws - 1} "
         f"({draws_done} of {args.draws} draws completed, rows of the next one as far as they got: see each row's count; a size's images are the first N per category of its draw, of which the ~90% "
         f"outside the content-hash test split are labelled); untouched test set: {args.test_per_class} per "
         f"category, seed {TEST_SEED}"),
        (f"- BLAS threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (unset lets NumPy oversubscribe a busy "
         "machine: the unknown detector's eigendecompositions ran ~7x slower); test ECE: mean over draws, 15 bins"),
        ("- seconds: wall time of fitting the head(s) and calibrating on cached features, in the same run as the "
         "val-split baseline, on a machine shared with other jobs (ratios mean more than seconds)"),
        (f"- target precision {args.target:.2f}, unknown quantile 0.97 (target 3% of known images unknown; bar 2-6%); "
         "mean over draws, min-max in brackets; auto precision pooled over the draws with its 95% Clopper-Pearson interval"),
        "",
        ("| per class | calibration | t_auto found | known test decided unknown | auto share | auto precision "
         "| suggest share | manual share | test accuracy | test ECE raw → calibrated | train + calibrate (s) | time vs val split |"),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def mm(rs: list[dict[str, float]], k: str) -> str:
        v = np.array([r[k] for r in rs])
        return f"{100 * v.mean():.1f}% [{100 * v.min():.1f}-{100 * v.max():.1f}]"

    for (n, name), rs in sorted(out.items(), key=lambda item: item[0][0]):
        base = np.mean([r["seconds"] for r in out.get((n, CONFIGS[0][0]), rs)])
        hits, count = sum(r["auto_hits"] for r in rs), sum(r["auto_n"] for r in rs)
        lo, hi = clopper_pearson(hits, count) if count else (0.0, 1.0)
        prec = f"{100 * hits / count:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (n={count})" if count else "– (n=0)"
        lines.append(
            f"| {n} | {name} | {int(sum(r['t_auto_exists'] for r in rs))}/{len(rs)} draws | {mm(rs, 'unknown')} | {mm(rs, 'auto')} | "
            f"{prec} | {mm(rs, 'suggest')} | {mm(rs, 'manual')} | {mm(rs, 'accuracy')} | "
            f"{np.mean([r['ece_raw'] for r in rs]):.3f} → {np.mean([r['ece'] for r in rs]):.3f} | "
            f"{np.mean([r['seconds'] for r in rs]):.1f} | {np.mean([r['seconds'] for r in rs]) / base:.1f}x |")
    return lines + equal_precision(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20,50,200", help="labelled images per category (each <= 200)")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=71, help="seed of the first draw; draw i uses seed + i")
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--view", default="center")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--out", help="results file name in benchmarks/results (default: calibration_small[-VIEW][-BACKBONE].md)")
    ap.add_argument("--configs", default=",".join(name for name, _, _ in CONFIGS),
                    help="comma-separated calibration rows to run (default: all)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/semcat-calibration-small"),
                    help="folder for the synthetic images (kept, so reruns skip writing them)")
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if max(args.sizes) > POOL:
        ap.error(f"--sizes must be <= {POOL} per class")
    strange = set(args.configs.split(",")) - {name for name, _, _ in CONFIGS}
    if strange:
        ap.error(f"unknown --configs {sorted(strange)}; choose from {[name for name, _, _ in CONFIGS]}")
    start = time.perf_counter()
    suffix = "".join(f"-{v}" for v, d in ((args.view, "center"), (args.backbone, "efficientnet_lite0")) if v != d)

    def done(out: dict[tuple[int, str], list[dict[str, float]]], draws: int) -> None:
        lines = markdown(out, args, start, draws)
        write_results(RESULTS / (args.out or f"calibration_small{suffix}.md"), lines)  # a stopped run keeps its draws

    run(args, args.data, done)


if __name__ == "__main__":
    main()
