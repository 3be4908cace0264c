"""Head training time and accuracy: semcat's L-BFGS and Adam solvers vs scikit-learn, same run.

Usage: ``python benchmarks/head.py [N] [--dim 1280] [--classes 10]``. Builds N bottleneck-like
feature vectors (non-negative, ReLU-pooled clusters with heavy overlap, like EfficientNet
features of SEM images) plus N/5 held-out vectors, then trains in the same process:
``SoftmaxHead(solver="lbfgs")``, ``SoftmaxHead(solver="adam")`` and the baseline
``sklearn.linear_model.LogisticRegression(lbfgs)`` on standardised features. The issue's target
is N=20,000 x 1280 in < 10 s on 2 cores. Results go to ``benchmarks/results/head.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from semcat._io import atomic_write_text
from semcat.head import SoftmaxHead

OUT = Path(__file__).resolve().parent / "results" / "head.md"


def make_features(n: int, dim: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping clusters after a ReLU: sparse, non-negative, like pooled CNN features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=0.08, size=(k, dim)).astype(np.float32)
    y = rng.integers(0, k, n)
    X = np.maximum(centres[y] + rng.normal(size=(n, dim)).astype(np.float32), 0.0)
    return X, y


def _time(fit) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    est = fit()
    return time.perf_counter() - t, est


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=20_000, help="training vectors")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    X, y = make_features(args.n + args.n // 5, args.dim, args.classes)
    Xtr, ytr, Xte, yte = X[: args.n], y[: args.n], X[args.n:], y[args.n:]
    rows = []
    SoftmaxHead(epochs=2).fit(Xtr[:200], ytr[:200])  # warm-up: torch's first-call overhead
    for name, make in (("semcat lbfgs (default)", lambda: SoftmaxHead(solver="lbfgs")),
                       ("semcat adam (60 epochs)", lambda: SoftmaxHead(solver="adam"))):
        s, head = _time(lambda: make().fit(Xtr, ytr))
        rows.append((name, s, float((head.predict(Xte) == yte).mean()), head.n_iter_))
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(Xtr)
    C = 1.0 / (1e-3 * len(Xtr))  # the same L2 strength as SoftmaxHead(weight_decay=1e-3)
    s, lr = _time(lambda: LogisticRegression(C=C, max_iter=300).fit(scaler.transform(Xtr), ytr))
    base = s
    rows.append(("scikit-learn LogisticRegression (baseline)", s, float(lr.score(scaler.transform(Xte), yte)), int(lr.n_iter_[0])))
    lines = [
        f"# Head training: {args.n:,} x {args.dim} features, {args.classes} classes",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · Python {platform.python_version()}",
        f"- held-out vectors: {len(Xte):,}; target: < 10 s for 20,000 x 1280 on 2 cores",
        "",
        "| solver | seconds | held-out accuracy | iterations/epochs | time vs baseline |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s, acc, it in rows:
        lines.append(f"| {name} | {s:.2f} | {100 * acc:.1f}% | {it} | {s / base:.2f}x |")
    atomic_write_text(OUT, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
