"""Nanowire images with a known orientation order, and the ground-truth order parameter.

Why: :mod:`semcat.alignment` is checked against images whose nematic order ``S`` is measured
on the wires actually drawn (length inside the image), not on the nominal spread.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from semcat.synth._render import Maps, Shape, _check_shape, _draw_look, _Look, _noise, _quantise, _render
from semcat.synth._shapes import _wire_set


def _nanowire_maps(
    rng: np.random.Generator, look: _Look, shape: Shape, order: float | None
) -> tuple[Maps, float, float]:
    """Height/material maps of wires with orientation ``order`` (None = drawn at random); also (S, mean angle)."""
    ref = min(shape) * look.zoom
    n = int(np.clip(rng.uniform(30, 160) / look.zoom, 15, 400))
    mean = rng.uniform(-math.pi / 2, math.pi / 2)
    if order is None:
        order = float(rng.choice([0.0, rng.uniform(0, 1), 1.0 - rng.uniform(0, 0.2)]))
    spread = (1.0 - float(order)) * math.pi / 2
    angles = mean + rng.uniform(-spread, spread, n)
    lengths = ref * rng.uniform(0.25, 0.9, n)
    widths = np.maximum(ref * rng.uniform(0.006, 0.015) * rng.lognormal(0, 0.2, n), 1.2)
    h, pts = _wire_set(rng, shape, angles, lengths, widths, curve=rng.uniform(0, 0.08))
    s, angle = _order_parameter(pts, shape)
    sub = rng.uniform(0.25, 0.5)
    mat = np.where(h > 0, 1.0, sub).astype(np.float32)
    h += 0.2 * _noise(rng, shape, ref * 0.02)
    return (h, mat), s, angle


def _order_parameter(pts: Sequence[np.ndarray], shape: Shape) -> tuple[float, float]:
    """Length-weighted nematic order S = |<exp(2iθ)>| and mean angle of the visible segments."""
    rows, cols = shape
    total = 0j
    weight = 0.0
    for p in pts:
        for a, b in zip(p[:-1], p[1:]):
            dx, dy = b[0] - a[0], -(b[1] - a[1])
            seg = _visible_length(a, b, rows, cols)
            if seg <= 0:
                continue
            theta = math.atan2(dy, dx)
            total += seg * complex(math.cos(2 * theta), math.sin(2 * theta))
            weight += seg
    if weight == 0:
        return 0.0, 0.0
    z = total / weight
    return float(abs(z)), float(math.degrees(0.5 * math.atan2(z.imag, z.real)))


def _visible_length(a: np.ndarray, b: np.ndarray, rows: int, cols: int) -> float:
    """Length of segment a-b (x, y) inside the image rectangle (Liang-Barsky clipping)."""
    x0, y0 = float(a[0]), float(a[1])
    dx, dy = float(b[0]) - x0, float(b[1]) - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0), (dx, cols - 1 - x0), (-dy, y0), (dy, rows - 1 - y0)):
        if p == 0:
            if q < 0:
                return 0.0
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
    return max(t1 - t0, 0.0) * math.hypot(dx, dy)


def _nanowire_image(order: float, rng: np.random.Generator, shape: Shape) -> tuple[np.ndarray, float, float]:
    """Rendered float image, S and mean angle: the writer needs the angle, the public API does not."""
    if not 0.0 <= order <= 1.0:
        raise ValueError(f"order must be in [0, 1] (1 = aligned, 0 = isotropic), got {order!r}")
    look = _draw_look(rng)
    (h, mat), s, angle = _nanowire_maps(rng, look, shape, order)
    return _render(h, mat, look, rng), s, angle


def generate_nanowires(
    order: float, rng: np.random.Generator, size: int = 512, *, shape: Shape | None = None
) -> tuple[np.ndarray, float]:
    """Nanowires whose orientation spread is set by ``order`` (1 = aligned, 0 = isotropic).

    Angles are drawn uniformly within ``±(1 - order)·90°`` of a random mean. Returns the ``uint8``
    image and the ground truth nematic order parameter ``S = |<exp(2iθ)>|`` of the wires actually
    drawn, weighted by their length inside the image.
    """
    img, s, _ = _nanowire_image(order, rng, _check_shape(size, shape))
    return _quantise(img, 8), s
