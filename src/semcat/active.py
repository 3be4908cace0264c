"""Which images to label next: the active-learning order of the review queue.

Why: a facility starts from an unlabelled archive, and people's time is the cost. Labels on
images the model already gets right teach it little; labels on a hundred near-identical hard
images teach it one thing. The strategies:

- ``uncertainty``: smallest margin between the two best calibrated probabilities first
  (ties broken by entropy);
- ``diversity``: k-center greedy in feature space (each next image is the one farthest from
  everything labelled or already picked), so the queue covers the archive;
- ``hybrid``: per-class quotas over the predicted classes, taken in turn; within a class the
  most uncertain candidates (``HYBRID_POOL`` times the quota) are thinned by k-center, so the
  picks are uncertain *and* spread out, and no class starves;
- ``random``: a seeded shuffle, the baseline.

``benchmarks/active_learning.py`` measures how many labels each needs to reach 95 % of the
full-data accuracy. The web review queue and ``semcat queue`` both call :func:`order_queue`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from semcat.catalog.similar import _normalise as _unit

__all__ = ["STRATEGIES", "entropy", "k_center", "margin_uncertainty", "order_queue", "review_order",
           "uncertainty_from_top"]

STRATEGIES = ("uncertainty", "diversity", "hybrid", "random")
HYBRID_POOL = 3
"""Hybrid: k-center picks each class's quota from this many times as many of its most uncertain."""
REVIEW_POOL = 2000
"""The review queue orders at most this many waiting images (the least confident first)."""


def margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    """1 - (p1 - p2) per row of class probabilities: 1 for a tie between the best two, 0 for a sure one."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"proba must be a 2-D array (images x classes); got shape {p.shape}")
    top2 = -np.sort(-p, axis=1)[:, :2]
    second = top2[:, 1] if p.shape[1] > 1 else np.zeros(len(p))
    return 1.0 - (top2[:, 0] - second)


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) per row of class probabilities."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def uncertainty_from_top(tops: Sequence[Sequence[tuple[str, float]] | None]) -> np.ndarray:
    """Margin uncertainty from stored top-k lists ``[(class, probability), ...]`` (best first);
    an image without a prediction counts as fully uncertain (1.0)."""
    out = np.ones(len(tops))
    for i, top in enumerate(tops):
        if top:
            out[i] = 1.0 - (float(top[0][1]) - (float(top[1][1]) if len(top) > 1 else 0.0))
    return out



def k_center(features: np.ndarray, n: int, *, centers: np.ndarray | None = None,
             candidates: Sequence[int] | None = None) -> list[int]:
    """Greedy k-center: ``n`` rows of ``features`` (among ``candidates``), each the farthest
    (cosine distance) from ``centers`` and the rows already picked. Without centers the first
    pick is the row nearest the mean (a typical image), then the farthest ones."""
    x = _unit(features)
    cand = np.arange(len(x)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    n = min(n, len(cand))
    if n <= 0:
        return []
    xc = x[cand]
    dist = 1.0 - (xc @ _unit(centers).T).max(axis=1) if centers is not None and len(centers) else None
    picked: list[int] = []
    for _ in range(n):
        k = int(np.argmax(xc @ _unit(xc.mean(0, keepdims=True))[0] if dist is None else dist))
        picked.append(int(cand[k]))
        d = 1.0 - xc @ xc[k]
        dist = d if dist is None else np.minimum(dist, d)
        dist[k] = -np.inf
    return picked


def order_queue(
    strategy: str,
    n: int,
    *,
    uncertainty: np.ndarray | None = None,
    predicted: Sequence[Any] | None = None,
    features: np.ndarray | None = None,
    labelled: np.ndarray | None = None,
    seed: int = 0,
) -> list[int]:
    """The first ``n`` images to label (indices), best first, by ``strategy`` (see module doc).

    Parameters
    ----------
    uncertainty : per image, higher = less sure (e.g. :func:`margin_uncertainty`); needed by
        ``uncertainty`` and ``hybrid``.
    predicted : per image, the predicted class (hybrid's quotas); all one class when None.
    features : per image feature vectors; needed by ``diversity``, optional for ``hybrid``
        (without them hybrid is uncertainty with per-class quotas).
    labelled : feature vectors of images already labelled (covered, for k-center).
    seed : the random strategy's shuffle.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    size = next((len(a) for a in (uncertainty, predicted, features) if a is not None), None)
    if size is None:
        if strategy != "random":
            raise ValueError(f"strategy {strategy!r} needs uncertainty or features")
        raise ValueError("random needs at least one per-image array to know how many images there are")
    n = min(n, size)
    if strategy == "random":
        return [int(i) for i in np.random.default_rng(seed).permutation(size)[:n]]
    if strategy == "diversity":
        if features is None:
            raise ValueError("strategy 'diversity' needs features (stored at ingest with --model)")
        return k_center(features, n, centers=labelled)
    if uncertainty is None:
        raise ValueError(f"strategy {strategy!r} needs uncertainty (the model's probabilities)")
    u = np.asarray(uncertainty, dtype=np.float64)
    by_uncertainty = np.argsort(-u, kind="stable")
    if strategy == "uncertainty":
        return [int(i) for i in by_uncertainty[:n]]
    return _hybrid(n, by_uncertainty, predicted, features, labelled)


def _hybrid(n: int, by_uncertainty: np.ndarray, predicted: Sequence[Any] | None,
            features: np.ndarray | None, labelled: np.ndarray | None) -> list[int]:
    """Round-robin over predicted classes; each class's quota is the k-center thinning of its
    ``HYBRID_POOL`` x quota most uncertain images."""
    classes = [None] * len(by_uncertainty) if predicted is None else list(predicted)
    per_class: dict[Any, list[int]] = {}
    for i in by_uncertainty:
        per_class.setdefault(classes[i], []).append(int(i))
    quota = -(-n // len(per_class))
    picks: dict[Any, list[int]] = {}
    for c, members in per_class.items():
        pool = members[:HYBRID_POOL * quota]
        if features is None:
            picks[c] = pool[:quota]
        else:
            picks[c] = k_center(features, quota, centers=labelled, candidates=pool)
    out: list[int] = []
    for k in range(quota):
        out += [p[k] for p in picks.values() if k < len(p)]
    return out[:n]


def review_order(cat: Any, strategy: str, n: int, *, seed: int = 0, pool: int = REVIEW_POOL) -> list[Any]:
    """The first ``n`` records of a catalog's review queue in ``strategy`` order.

    The pool is the ``pool`` least confident waiting images; uncertainty comes from their stored
    (calibrated) top-k probabilities, features from the catalog (for ``diversity`` and ``hybrid``
    images without stored features come after the others), and confirmed images count as covered.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    records = cat.review_queue(limit=pool)
    feats = labelled = None
    rest: list[Any] = []
    if strategy in ("diversity", "hybrid") and records:
        have, matrix = cat.features([r.sha256 for r in records])
        if not len(have) and strategy == "diversity":
            raise ValueError("strategy 'diversity' needs stored features: ingest with --model")
        if len(have):  # images without features go after the others
            row = {s: i for i, s in enumerate(have)}
            rest = [r for r in records if r.sha256 not in row]
            records = [r for r in records if r.sha256 in row]
            feats = matrix[[row[r.sha256] for r in records]]
            _, labelled = cat.features([r.sha256 for r in cat.search(confirmed=True, limit=pool)])
            labelled = labelled if len(labelled) else None
    if not records:
        return rest[:n]
    order = order_queue(strategy, n, uncertainty=uncertainty_from_top([r.top for r in records]),
                        predicted=[r.category for r in records], features=feats, labelled=labelled, seed=seed)
    return ([records[i] for i in order] + rest)[:n]
