"""The contrast stretch's range: robust low and high percentiles of an image's pixels.

Why its own module: the centre crop's stretch (:mod:`semcat.features`) and the ``clean`` view's
second stretch (:mod:`semcat.view_transforms`) use the same rule, one place for it.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["HIGH_PCT", "LOW_PCT", "PCT_SAMPLES", "robust_range"]

LOW_PCT, HIGH_PCT = 0.5, 99.5
"""The percentiles stretched to 0 and 1."""
PCT_SAMPLES = 1 << 18
"""Percentiles from at most ~262k pixels (a strided subsample)."""


def robust_range(img: np.ndarray) -> tuple[float, float]:
    """(low, high) percentiles of ``img``'s finite pixels; (0, 0) when none is finite."""
    step = max(1, int(np.sqrt(img.size / PCT_SAMPLES)))
    sample = img[::step, ::step]
    lo, hi = float(sample.min()), float(sample.max())  # NaN fails both tests below
    if 0.0 <= lo and hi <= 1.0:
        return _histogram_percentiles(sample)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(finite, (LOW_PCT, HIGH_PCT))
    return float(lo), float(hi)


def _histogram_percentiles(sample: np.ndarray) -> tuple[float, float]:
    """``np.percentile``'s (linear) low and high percentiles of values in [0, 1], 4x cheaper
    than its partial sort of every pixel: an 8-bit histogram of the rounded values finds the
    bins holding the wanted ranks (rounding keeps the order), and only those bins' values are
    searched, so the result is exact for any values, not only 8-bit levels."""
    sample = np.ascontiguousarray(sample)
    levels = cv2.convertScaleAbs(sample, alpha=255)  # round(255 x) as uint8, in one pass
    cum = np.cumsum(cv2.calcHist([levels], [0], None, [256], [0, 256]).ravel().astype(np.int64))
    n = int(cum[-1])
    bins: dict[int, np.ndarray] = {}

    def ranked(r: int) -> float:  # the value of rank r (0-based) among all values
        b = int(np.searchsorted(cum, r, side="right"))
        if b not in bins:
            bins[b] = sample[levels == b]
        vals, within = bins[b], r - (int(cum[b - 1]) if b else 0)
        lo, hi = vals.min(), vals.max()
        return float(lo if lo == hi else np.partition(vals, within)[within])

    out = []
    for pct in (LOW_PCT, HIGH_PCT):
        pos = (n - 1) * pct / 100
        k = int(pos)
        a, b = ranked(k), ranked(min(k + 1, n - 1))
        t = pos - k
        out.append(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t))  # numpy's lerp
    return out[0], out[1]
