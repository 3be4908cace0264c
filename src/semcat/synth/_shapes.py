"""Height-map drawing primitives shared by the category generators (spheres, strands, domes, grids).

Why separate: categories, nanowires and fibres draw with the same few vectorised numpy/OpenCV
building blocks; keeping them here keeps each category function about its specimen only.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from semcat.synth._render import Shape, _noise


def _fractal(rng: np.random.Generator, shape: Shape, scale: float, octaves: int = 3) -> np.ndarray:
    """Multi-scale noise (``octaves`` halvings of ``scale``): rough, natural-looking surfaces."""
    out = np.zeros(shape, np.float32)
    amp = 1.0
    for _ in range(octaves):
        out += amp * _noise(rng, shape, scale)
        scale /= 2.0
        amp *= 0.5
    return out


def _grid(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Open (broadcastable) row and column coordinate arrays, float32."""
    rows, cols = shape
    return np.arange(rows, dtype=np.float32)[:, None], np.arange(cols, dtype=np.float32)[None, :]


def _rotation(shape: Shape, angle: float, center: tuple[float, float] | None = None):
    """Coordinates (u along ``angle``, v across) for every pixel; angle in radians, CCW on screen."""
    r, c = _grid(shape)
    cy, cx = center if center is not None else ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    dx, dy = c - cx, cy - r
    ca, sa = math.cos(angle), math.sin(angle)
    return dx * ca + dy * sa, -dx * sa + dy * ca


def _sphere(h: np.ndarray, cy: float, cx: float, radius: float, base: float = 0.0) -> None:
    """Raise ``h`` to a sphere cap of ``radius`` at (cy, cx), in place."""
    rows, cols = h.shape
    r0, r1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, rows)
    c0, c1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, cols)
    if r0 >= r1 or c0 >= c1:
        return
    yy = (np.arange(r0, r1, dtype=np.float32) - cy)[:, None]
    xx = (np.arange(c0, c1, dtype=np.float32) - cx)[None, :]
    cap = np.sqrt(np.maximum(radius * radius - yy * yy - xx * xx, 0.0)) + base
    cap[cap <= base] = 0.0
    np.maximum(h[r0:r1, c0:c1], cap, out=h[r0:r1, c0:c1])


def _lines(
    h: np.ndarray,
    pts: Iterable[np.ndarray],
    widths: Iterable[float],
    *,
    step: float = 0.0,
    steps: int = 3,
) -> None:
    """Draw round-capped strands (wires, fibres) as stepped cylinders, later ones on top.

    Each strand is drawn ``steps`` times with shrinking width and rising height, giving a rounded
    profile once the renderer blurs; ``step`` stacks strands so crossings look layered.
    """
    level = 0.0
    for p, w in zip(pts, widths):
        p = np.round(p * 16).astype(np.int32).reshape(-1, 1, 2)
        level += step
        for k in range(steps):
            frac = 1.0 - k / steps
            thick = max(1, int(round(w * frac)))
            value = level + w * 0.5 * math.sqrt(max(1.0 - frac * frac, 0.0) + 0.15)
            cv2.polylines(h, [p], False, float(value), thick, cv2.LINE_AA, shift=4)


def _dome(mask: np.ndarray, height: float) -> np.ndarray:
    """Rounded bump over a binary mask (cells, blobs): height grows with distance to the border."""
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    peak = max(float(dist.max()), 1.0)
    return (np.sqrt(dist / peak) * height).astype(np.float32)


def _wire_set(
    rng: np.random.Generator,
    shape: Shape,
    angles: np.ndarray,
    lengths: np.ndarray,
    widths: np.ndarray,
    *,
    curve: float,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Strands at given angles (CCW on screen), random centres, slightly curved; returns h, points."""
    rows, cols = shape
    n = len(angles)
    cy, cx = rng.uniform(-0.05, 1.05, n) * rows, rng.uniform(-0.05, 1.05, n) * cols
    t = np.linspace(-0.5, 0.5, 9, dtype=np.float32)[None, :, None]
    direction = np.stack([np.cos(angles), -np.sin(angles)], 1)[:, None, :]
    normal = np.stack([np.sin(angles), np.cos(angles)], 1)[:, None, :]
    bend = (rng.normal(0, curve, n) * lengths)[:, None, None] * (0.25 - t * t)
    pts = np.stack([cx, cy], 1)[:, None, :] + t * lengths[:, None, None] * direction + bend * normal
    h = np.zeros(shape, np.float32)
    _lines(h, pts, widths, step=float(np.median(widths)) * 0.4)
    return h, list(pts)
