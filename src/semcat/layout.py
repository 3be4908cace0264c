"""A 2-D layout of the catalog's feature vectors, for the map page.

Why: clusters of unlabelled images are the obvious place to start labelling, and one lasso over
a cluster labels many images at once. Up to ``TSNE_MAX`` images the layout is t-SNE (scikit-learn,
after PCA to ``PCA_DIMS``), which keeps neighbourhoods; above it, PCA to 2-D, which takes seconds
at 100,000 images where t-SNE would take many minutes. The layout is computed once and cached per
feature key and set of images (``semcat_home()/maps``), so the page opens fast next time.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from semcat.catalog.similar import _normalise

__all__ = ["PCA_DIMS", "TSNE_MAX", "catalog_layout", "layout"]

TSNE_MAX = 1000
"""Largest number of images laid out by t-SNE; above it, PCA (t-SNE's time grows fast: see
``benchmarks/results/map.md``; the first map request waits for it)."""
PCA_DIMS = 50


def layout(features: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N, 2) float32 positions in [0, 1] for feature rows (cosine geometry: rows are normalised);
    the longer extent fills [0, 1], the shorter one is centred."""
    x = _normalise(np.asarray(features, dtype=np.float32))
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), np.float32)
    if n < 3:
        xy = np.zeros((n, 2), np.float32)
        xy[:, 0] = np.arange(n)
    else:
        from sklearn.decomposition import PCA

        reduced = PCA(n_components=min(PCA_DIMS, n - 1, x.shape[1]), random_state=seed).fit_transform(x)
        if 50 <= n <= TSNE_MAX:
            from sklearn.manifold import TSNE

            xy = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed,
                      learning_rate="auto").fit_transform(reduced)
        else:
            xy = reduced[:, :2] if reduced.shape[1] >= 2 else np.c_[reduced, np.zeros(n)]
    xy = np.asarray(xy, dtype=np.float32)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    scale = max(float((hi - lo).max()), 1e-12)  # one scale for both axes: distances keep their meaning
    return (xy - lo) / scale + (1 - (hi - lo) / scale) / 2


def catalog_layout(cat: Any, cache_dir: Path | None = None) -> tuple[list[str], np.ndarray]:
    """(hashes, positions) of every catalogued image with stored features, sorted by hash.

    Cached on disk per catalog and feature set (key, count and last row id of the vectors), so
    a warm call reads one small file instead of every vector.
    """
    from semcat._io import atomic_write_bytes
    from semcat.config import semcat_home

    summary = cat.feature_summary()
    if summary is None:
        return [], np.zeros((0, 2), np.float32)
    tag = hashlib.sha256(f"{cat.url}|{summary}".encode()).hexdigest()[:24]
    path = (cache_dir or semcat_home() / "maps") / f"{tag}.npz"
    if path.exists():
        with np.load(path) as cached:
            return [s.decode() for s in cached["shas"]], cached["xy"]
    shas, feats = cat.features()
    order = np.argsort(shas)
    shas = [shas[i] for i in order]
    xy = layout(feats[order])
    buf = io.BytesIO()
    np.savez(buf, shas=np.array([s.encode() for s in shas], dtype="S64"), xy=xy)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return shas, xy
