"""Labels needed to reach 95 % of the full-data accuracy: active-learning strategies vs random.

Synthetic data (``semcat.synth.write_dataset``, data bars on: Zeiss-, FEI- and JEOL-like bars;
per-sample looks vary detector shading, tilt/edge contrast, brightness, noise and zoom) is
split by sample (70 % pool, 30 % test). Features are extracted once (cached), then each run
simulates a reviewer: start from ``--start`` random labels, train the softmax head
(``semcat.head.SoftmaxHead``), let ``semcat.active.order_queue`` pick the next ``--batch``
images of the pool, label them (the truth), repeat. The full-data accuracy is the head trained
on the whole pool. Seeds vary the first labels and the random order.

    python benchmarks/active_learning.py --per-class 60 --seeds 0,1,2

Writes ``benchmarks/results/active_learning.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import header, write_results  # noqa: E402

STRATEGIES = ("random", "uncertainty", "diversity", "hybrid")


def load(per_class: int, size: int, seed: int, work: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, is_test) of a fresh synthetic set, split by sample."""
    from semcat.dataset import scan_dataset
    from semcat.features import extract_features
    from semcat.synth import write_dataset

    root = work / "data"
    write_dataset(root, per_class=per_class, size=size, seed=seed, databar=True)
    ds = scan_dataset(root, fractions=(0.7, 0.0, 0.3), group_by=r"^([^_]+_[^_]+)_", near_duplicates=False)
    res = extract_features([s.path for s in ds.samples], progress=False)
    label = {str(s.path): s.label for s in ds.samples}
    split = {str(s.path): s.split for s in ds.samples}
    y = np.array([label[str(p)] for p in res.paths])
    test = np.array([split[str(p)] == "test" for p in res.paths])
    return res.features, y, test


def accuracy(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, classes: list[str]) -> tuple[float, np.ndarray | None]:
    from semcat.head import SoftmaxHead

    head = SoftmaxHead(classes=classes, seed=0).fit(x, y)
    return float((head.predict(xt) == yt).mean()), head


def simulate(strategy: str, x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, classes: list[str],
             target: float, start: int, batch: int, seed: int, budget: int) -> tuple[int | None, list[tuple[int, float]]]:
    """Labels used when the test accuracy first reaches ``target`` (None within ``budget``), and the curve."""
    from semcat.active import margin_uncertainty, order_queue

    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(len(x), start, replace=False))
    curve = []
    while True:
        if len(set(y[labelled])) >= 2:
            acc, head = accuracy(x[labelled], y[labelled], xt, yt, classes)
        else:
            acc, head = 0.0, None
        curve.append((len(labelled), acc))
        if acc >= target:
            return len(labelled), curve
        if len(labelled) >= min(budget, len(x)):
            return None, curve
        rest = np.setdiff1d(np.arange(len(x)), labelled)
        proba = head.predict_proba(x[rest]) if head is not None else np.full((len(rest), len(classes)), 1 / len(classes))
        pick = order_queue(strategy, batch, uncertainty=margin_uncertainty(proba), predicted=proba.argmax(1),
                           features=x[rest], labelled=x[labelled], seed=seed * 1000 + len(labelled))
        labelled += [int(rest[i]) for i in pick]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=60, help="synthetic images per category")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    ap.add_argument("--data-seed", type=int, default=11, help="seed of the synthetic set")
    ap.add_argument("--start", type=int, default=10, help="random labels to start from")
    ap.add_argument("--batch", type=int, default=10, help="labels per round")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/active_learning.md")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEMCAT_HOME"] = str(Path(tmp) / "home")
        feats, y, test = load(args.per_class, args.size, args.data_seed, Path(tmp))
    classes = sorted(set(y))
    x, xt, yl, yt = feats[~test], feats[test], y[~test], y[test]
    full, _ = accuracy(x, yl, xt, yt, classes)
    target = 0.95 * full
    needed: dict[str, list[int | None]] = {s: [] for s in STRATEGIES}
    curves: dict[str, list[list[tuple[int, float]]]] = {s: [] for s in STRATEGIES}
    for strategy in STRATEGIES:
        for seed in seeds:
            n, curve = simulate(strategy, x, yl, xt, yt, classes, target, args.start, args.batch, seed, len(x))
            needed[strategy].append(n)
            curves[strategy].append(curve)
            print(strategy, seed, n, flush=True)

    def mean(v: list[int | None]) -> str:
        return f"{np.mean(v):.0f}" if all(n is not None for n in v) else "not reached"

    rand = np.mean([n for n in needed["random"] if n is not None] or [np.nan])
    lines = header(f"Active learning: labels to reach 95 % of the full-data accuracy ({args.per_class} images per "
                   f"category, seeds {args.seeds})", started=started, argv=argv) + [
        f"- data: {len(y)} synthetic images, 10 categories, data bars on; pool {len(x)}, test {len(xt)} "
        "(split by sample)",
        f"- full-data accuracy (head on the whole pool): {full:.3f}; target 95 % of it: {target:.3f}",
        f"- each run: {args.start} random labels, then {args.batch} per round chosen by the strategy; margin of the "
        "head's softmax (no calibration inside the loop)",
        "",
        "| strategy | labels needed, per seed | mean | share of the pool | vs random |",
        "|---|---|---:|---:|---:|",
    ]
    for s in STRATEGIES:
        v = needed[s]
        ok = all(n is not None for n in v)
        m = np.mean(v) if ok else np.nan
        lines.append(f"| {s} | {', '.join(str(n) if n is not None else '-' for n in v)} | {mean(v)} | "
                     f"{m / len(x):.0%} | {m / rand:.2f}x |" if ok else
                     f"| {s} | {', '.join(str(n) if n is not None else '-' for n in v)} | not reached | - | - |")
    budgets = sorted({n for n, _ in curves["random"][0]} & set(range(args.start, len(x) + 1, args.batch * 3)))[:8]
    lines += ["", "Mean test accuracy by labels used:", "",
              "| labels | " + " | ".join(STRATEGIES) + " |", "|---:|" + "---:|" * len(STRATEGIES)]
    for b in budgets:
        cells = []
        for s in STRATEGIES:
            accs = [dict(c).get(b) for c in curves[s]]
            cells.append(f"{np.mean(accs):.3f}" if all(a is not None for a in accs) else "(reached)")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
