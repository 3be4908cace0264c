"""The scale bar of the image viewer: a round length (1, 2 or 5 x 10^n m) and its on-screen width.

The viewer (``web/static/viewer.js``) gets :func:`steps` with the page and applies the same rule
as :func:`scale_bar` at every zoom, so the bar's length and label come from one place.
"""
from __future__ import annotations

import math

from semcat import units

__all__ = ["MAX_BAR_PX", "scale_bar", "steps"]

MAX_BAR_PX = 160.0
"""Widest the bar may be drawn, in screen pixels; it is the longest round length that fits."""
_MANTISSAS = (1, 2, 5)
_DECADES = range(-10, 0)  # 0.1 nm .. 500 mm: every SEM field of view


def steps() -> list[tuple[float, str]]:
    """Every round length the bar can show, shortest first: (metres, label in nm/µm/mm)."""
    return [(m * 10.0 ** n, units.length(m * 10.0 ** n)) for n in _DECADES for m in _MANTISSAS]


def scale_bar(metres_per_px: float | None, max_px: float = MAX_BAR_PX) -> tuple[float, str, float] | None:
    """(metres, label, width in screen pixels) of the longest round length no wider than ``max_px``
    at ``metres_per_px`` (the image's pixel size divided by the zoom, in screen pixels per image
    pixel); None when the pixel size is unknown or the zoom leaves no round length on screen."""
    if metres_per_px is None or not math.isfinite(metres_per_px) or metres_per_px <= 0:
        return None
    longest = metres_per_px * max_px * (1 + 1e-9)
    fits = [(m, label) for m, label in steps() if m <= longest]
    if not fits:
        return None
    metres, label = fits[-1]
    return metres, label, metres / metres_per_px
