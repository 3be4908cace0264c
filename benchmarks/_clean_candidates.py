"""Issue 20's rejected clean-up candidates: views measured against ``clean`` and left out of semcat.

Why here: ``benchmarks/cross_instrument.py`` reruns every method it reports, and these views lost
to ``clean`` (the default view, :mod:`semcat.view_transforms`), so they live with the benchmark,
not in the product. Importing this module registers each as a view of the centre crop (name
prefixed ``x-``) and as a method ``semcat+x-NAME`` of :data:`semcat.crossval.METHODS`.

- ``median3`` / ``median5``: a 3x3 / 5x5 median of the contrast-stretched 224 px crop;
- ``destripe``: each row's median subtracted (scan-line offsets; also flattens real horizontal
  structure: a cross-section's layers, a grating along the scan);
- ``rdestripe``: only each row's offset from the running median of 9 row medians (keeps steps);
- ``flatten``: the background (Gaussian of 1/8 the side) subtracted, contrast stretched again;
- ``nlm``: OpenCV non-local means, strength twice the noise estimated from the crop (Immerkaer);
- ``gauss-adapt``: a Gaussian blur whose width grows with the estimated noise;
- ``gammanorm``: the gamma that maps the crop's median to 0.5;
- ``bilateral``: an edge-keeping bilateral filter (range 3x the estimated noise);
- ``+``-joined names apply left to right (``destripe+median5``: destripe, then the median).
"""
from __future__ import annotations

from functools import partial

import cv2
import numpy as np

from semcat import features
from semcat.crossval import METHODS, Method, fit_semcat
from semcat.view_transforms import TRANSFORMS


def _noise_sigma(c: np.ndarray) -> float:
    """Immerkaer's noise estimate, made robust with the median absolute response."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    return float(np.median(np.abs(cv2.filter2D(c, -1, k)[1:-1, 1:-1])) * 1.4826 / 6.0)


def _stretch(c: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(c, (0.5, 99.5))
    return np.clip((c - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _median(c: np.ndarray, k: int) -> np.ndarray:
    return cv2.medianBlur(np.ascontiguousarray(c, np.float32), k)


def _destripe(c: np.ndarray) -> np.ndarray:
    rows = np.median(c, axis=1, keepdims=True)
    return np.clip(c - rows + np.median(rows), 0, 1)


def _rdestripe(c: np.ndarray, k: int = 9) -> np.ndarray:
    rows = np.median(c, axis=1).astype(np.float32)
    trend = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(rows, k // 2, mode="edge"), k), axis=1)
    return np.clip(c - (rows - trend)[:, None], 0, 1)


def _flatten(c: np.ndarray) -> np.ndarray:
    return _stretch(c - cv2.GaussianBlur(c, (0, 0), c.shape[0] / 8))


def _nlm(c: np.ndarray) -> np.ndarray:
    u8 = np.round(np.clip(c, 0, 1) * 255).astype(np.uint8)
    h = max(1.0, 2.0 * 255 * _noise_sigma(c))
    return cv2.fastNlMeansDenoising(u8, None, h=h, templateWindowSize=7, searchWindowSize=21).astype(np.float32) / 255


def _gauss_adapt(c: np.ndarray, target: float = 0.02) -> np.ndarray:
    s = _noise_sigma(c)
    return c if s <= target else cv2.GaussianBlur(c, (0, 0), max(0.3, min(4.0, s / target / (2 * np.sqrt(np.pi)))))


def _gammanorm(c: np.ndarray) -> np.ndarray:
    m = float(np.median(c))
    return c if not 0.01 < m < 0.99 else np.clip(c, 0, 1) ** float(np.clip(np.log(0.5) / np.log(m), 1 / 3, 3))


def _bilateral(c: np.ndarray) -> np.ndarray:
    return cv2.bilateralFilter(c, 9, max(0.05, 3 * _noise_sigma(c)), 3)


STEPS = {"median3": partial(_median, k=3), "median5": partial(_median, k=5), "destripe": _destripe,
         "rdestripe": _rdestripe, "flatten": _flatten, "nlm": _nlm, "gauss-adapt": _gauss_adapt,
         "gammanorm": _gammanorm, "bilateral": _bilateral}
CANDIDATES = ("median3", "median5", "destripe", "rdestripe", "flatten", "nlm", "gauss-adapt", "gammanorm", "bilateral",
              "destripe+median5", "rdestripe+median5", "flatten+median5")
"""``flatten+median5`` is ``clean`` as first measured (a full-size blur and an 8-bit median)."""


def _chain(names: list[str], c: np.ndarray) -> np.ndarray:
    for name in names:
        c = STEPS[name](c)
    return np.asarray(c, np.float32)[None]


for _name in CANDIDATES:
    TRANSFORMS[f"x-{_name}"] = partial(_chain, _name.split("+"))
    METHODS[f"semcat+x-{_name}"] = Method(f"semcat+x-{_name}", fit_semcat, view=f"x-{_name}")
features.VIEWS = (*features.VIEWS, *(f"x-{n}" for n in CANDIDATES))
