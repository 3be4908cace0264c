"""Procedural SEM-like images for the 10 NFFA categories, deterministic by seed.

Why: tests, demos and benchmarks need labelled SEM data that anyone can regenerate on a fresh
machine (real archives cannot be shipped). Each category builds a *height map* and a *material*
(yield) map; one shared renderer then applies what a secondary-electron detector does: yield rising
with local tilt (edge brightening), shading from the detector side, occasional charging glow, slight
beam blur, shot noise and scan-line jitter, random contrast/brightness. Images of one sample (one
``look``) share magnification, contrast and variant, like shots of one specimen in a real session.

Everything is vectorised numpy + OpenCV drawing: a 512 px image takes some tens of milliseconds.
Each image in :func:`write_dataset` is seeded from ``(seed, category, index)`` so adding images
never changes existing ones. TIFFs carry vendor acquisition metadata (Zeiss ``CZ_SEM`` or
FEI/Thermo tags, alternating by sample) consistent with the image: pixel size = field width /
columns, magnification against :data:`semcat.semmeta.DISPLAY_WIDTH_M`, so catalogue filters on
magnification and pixel size have something real to work on.
"""
from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timedelta
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from semcat import CATEGORIES
from semcat._io import atomic_write, atomic_write_bytes
from semcat.semmeta import DISPLAY_WIDTH_M, fei_tag_payload, zeiss_tag_payload

__all__ = [
    "blend",
    "generate_image",
    "generate_nanowires",
    "render_databar",
    "write_alignment_set",
    "write_blend_set",
    "write_dataset",
]

Shape = tuple[int, int]
Maps = tuple[np.ndarray, np.ndarray]  # (height in pixel units, material yield ~1)


@dataclass(frozen=True)
class _Look:
    """Per-sample acquisition settings: shots of one sample share them."""

    zoom: float        # >1 = higher magnification (bigger features)
    variant: float     # picks a category sub-type (e.g. rods vs cells), in [0, 1)
    light: float       # detector direction, radians
    shade: float       # strength of detector-side shading (Everhart-Thornley-like)
    tilt: float        # strength of the tilt (edge) contrast (In-lens-like when high)
    edge: float        # strength of the edge effect
    contrast: float
    brightness: float
    black: float       # black level: detectors rarely map anything to exactly 0
    gamma: float
    dose: float        # electrons per pixel: shot noise ~ 1/sqrt(dose)
    blur: float        # beam blur sigma, pixels
    jitter: float      # scan-line jitter, pixels
    glow: float        # charging glow amplitude (0 = none)


def _draw_look(rng: np.random.Generator) -> _Look:
    return _Look(
        zoom=float(np.exp(rng.uniform(math.log(0.65), math.log(1.6)))),
        variant=float(rng.random()),
        light=float(rng.uniform(0, 2 * math.pi)),
        shade=float(rng.uniform(0.15, 0.8)),
        tilt=float(rng.uniform(0.35, 1.0)),
        edge=float(rng.uniform(0.5, 1.5)),
        contrast=float(rng.uniform(0.75, 1.2)),
        brightness=float(rng.uniform(-0.08, 0.08)),
        black=float(rng.uniform(0.0, 0.12)),
        gamma=float(np.exp(rng.uniform(-0.3, 0.3))),
        dose=float(np.exp(rng.uniform(math.log(25), math.log(400)))),
        blur=float(rng.uniform(0.4, 1.3)),
        jitter=float(rng.uniform(0.0, 0.8)),
        glow=float(rng.uniform(0.15, 0.5)) if rng.random() < 0.2 else 0.0,
    )


# ---------------------------------------------------------------- small helpers


def _noise(rng: np.random.Generator, shape: Shape, scale: float) -> np.ndarray:
    """Smooth Gaussian noise with features ~``scale`` px (std ~1), by upsampling a coarse grid.

    Cubic to a quarter of the size, then linear: smooth, and ~10x cheaper than cubic all the way.
    """
    rows, cols = shape
    scale = max(scale, 1.0)
    small = rng.standard_normal((int(rows / scale) + 2, int(cols / scale) + 2), dtype=np.float32)
    if scale >= 8:
        small = cv2.resize(small, (max(cols // 4, 2), max(rows // 4, 2)), interpolation=cv2.INTER_CUBIC)
        out = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)
    else:
        out = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_CUBIC)
    return out * np.float32(1 / 0.75)


def _wide_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large sigma, computed at a quarter of the resolution."""
    rows, cols = img.shape
    small = cv2.resize(img, (max(cols // 4, 1), max(rows // 4, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(sigma / 4, 0.5))
    return cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)


def _fractal(rng: np.random.Generator, shape: Shape, scale: float, octaves: int = 3) -> np.ndarray:
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


# ---------------------------------------------------------------- the 10 categories


def _porous_sponge(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Foam: irregular pores (Voronoi cells of random seeds) behind thin walls with bright rims."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    mean_r = ref * rng.uniform(0.025, 0.07)
    n = int(np.clip(rows * cols / (math.pi * mean_r**2), 8, 6000))
    seeds = np.ones(shape, np.uint8)
    seeds[rng.integers(0, rows, n), rng.integers(0, cols, n)] = 0
    dist, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # distance to the nearest cell boundary = distance to where the label changes
    border = np.ones(shape, np.uint8)
    border[:, 1:][labels[:, 1:] != labels[:, :-1]] = 0
    border[1:, :][labels[1:, :] != labels[:-1, :]] = 0
    to_wall = cv2.distanceTransform(border, cv2.DIST_L2, 3)
    wall = mean_r * rng.uniform(0.12, 0.35) * (1 + 0.4 * _noise(rng, shape, mean_r * 0.8))
    closed = rng.uniform(0.0, 0.4)  # share of cells that are not open pores
    open_cell = np.concatenate([[False], rng.random(n) > closed])
    depth = np.clip((to_wall - wall) / (mean_r * 0.5), 0, 1) * open_cell[labels]
    h = (mean_r * 0.6 * (1 - depth) - mean_r * 1.5 * depth).astype(np.float32)
    h += 0.08 * mean_r * _noise(rng, shape, mean_r * 0.3)
    mat = (1.0 - 0.8 * depth * rng.uniform(0.7, 1.0)).astype(np.float32)
    return h, mat


def _patterned_surface(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Regular lattice (pillars, holes, gratings, squares) seen with some tilt/perspective."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    pitch = ref * rng.uniform(0.06, 0.16)
    r, c = _grid(shape)
    # homography: rotation + tilt (rows farther away look compressed)
    ang = rng.uniform(0, math.pi)
    tilt = rng.uniform(0.0, 0.7) / max(rows, cols)
    ca, sa = math.cos(ang), math.sin(ang)
    x, y = c - cols / 2, r - rows / 2
    wgt = 1.0 + tilt * y
    u = (ca * x - sa * y) / wgt / pitch
    v = (sa * x + ca * y) / wgt / pitch
    kind = int(look.variant * 4)
    if kind == 3:  # hexagonal rows
        v_row = np.floor(v)
        u = u + 0.5 * (v_row % 2)
    fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
    fill = rng.uniform(0.25, 0.4)
    height = pitch * rng.uniform(0.15, 0.4)
    soft = 1.5 / pitch
    if kind == 2:  # lines
        prof = np.clip((fill - np.abs(fu)) / soft, 0, 1)
    elif kind == 1:  # squares
        prof = np.clip((fill - np.maximum(np.abs(fu), np.abs(fv))) / soft, 0, 1)
    else:
        prof = np.clip((fill - np.sqrt(fu * fu + fv * fv)) / soft, 0, 1)
    holes = rng.random() < 0.4 and kind != 2
    h = (height * (1 - prof) if holes else height * prof).astype(np.float32)
    mat = (1.0 - (0.6 * prof if holes else -0.15 * prof)).astype(np.float32)
    h += 0.02 * height * _noise(rng, shape, pitch * 0.2)
    return h, mat


def _particles(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Spheres, dispersed or clustered, mono- or polydisperse, casting shadows on the substrate."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    r_mean = ref * rng.uniform(0.015, 0.06)
    sigma = rng.uniform(0.05, 0.45)
    cover = rng.uniform(0.08, 0.4)
    n = int(np.clip(cover * rows * cols / (math.pi * r_mean**2), 5, 600))
    if look.variant < 0.5:
        ys, xs = rng.uniform(0, rows, n), rng.uniform(0, cols, n)
    else:
        k = int(rng.integers(2, 8))
        cy, cx = rng.uniform(0, rows, k), rng.uniform(0, cols, k)
        which = rng.integers(0, k, n)
        spread = r_mean * rng.uniform(2.0, 6.0) * np.sqrt(n / k) / 2
        ys = cy[which] + rng.normal(0, spread, n)
        xs = cx[which] + rng.normal(0, spread, n)
    radii = r_mean * rng.lognormal(0, sigma, n)
    h = np.zeros(shape, np.float32)
    for y, x, rad in zip(ys, xs, radii):
        _sphere(h, y, x, rad)
    mask = (h > 0).astype(np.float32)
    # shadow away from the detector on the substrate
    off = r_mean * 0.8
    m = np.float32([[1, 0, -off * math.cos(look.light)], [0, 1, off * math.sin(look.light)]])
    shadow = cv2.GaussianBlur(cv2.warpAffine(mask, m, (cols, rows)), (0, 0), max(r_mean * 0.4, 0.8))
    sub = rng.uniform(0.45, 0.8)
    mat = np.where(mask > 0, rng.uniform(0.9, 1.3), sub * (1 - 0.5 * shadow)).astype(np.float32)
    h += 0.3 * _noise(rng, shape, r_mean * 0.5)
    return h, mat


def _films(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Smooth or granular coating, sometimes with a crack or a film edge onto the substrate."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    grain = ref * rng.uniform(0.006, 0.03)
    h = 0.6 * grain * _fractal(rng, shape, grain * 2.0, 3)
    mat = (1.0 + 0.05 * _noise(rng, shape, ref * 0.2)).astype(np.float32)
    if look.variant < 0.4:  # polycrystalline grains with grooves
        seeds = np.ones(shape, np.uint8)
        n = int(np.clip(rows * cols / (grain * 3) ** 2, 10, 20000))
        seeds[rng.integers(0, rows, n), rng.integers(0, cols, n)] = 0
        dist, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
        tone = rng.uniform(0.85, 1.15, n + 1).astype(np.float32)
        mat *= tone[labels]
        h += np.sqrt(dist) * grain * 0.25
    extra = rng.random()
    if extra < 0.35:  # crack: random walk
        n_pts = 40
        ang = rng.uniform(0, math.pi) + np.cumsum(rng.normal(0, 0.25, n_pts))
        step = max(rows, cols) * 1.6 / n_pts
        start = np.array([rng.uniform(0, cols), rng.uniform(0, rows)]) - step * n_pts / 2 * np.array(
            [math.cos(ang[0]), math.sin(ang[0])]
        )
        pts = start + np.cumsum(step * np.stack([np.cos(ang), np.sin(ang)], 1), 0)
        crack = np.zeros(shape, np.float32)
        cv2.polylines(crack, [np.round(pts).astype(np.int32)], False, 1.0, max(1, int(grain * 0.7)), cv2.LINE_AA)
        h -= crack * grain * 4
        mat *= 1 - 0.7 * crack
    elif extra < 0.65:  # film edge
        u, _ = _rotation(shape, rng.uniform(0, 2 * math.pi))
        edge = np.clip((u - rng.uniform(-0.3, 0.3) * ref + 4 * grain * _noise(rng, shape, ref * 0.1)) / 2.0, 0, 1)
        h = h * edge + grain * 3 * edge
        mat = mat * edge + rng.uniform(0.4, 0.7) * (1 - edge)
    return h.astype(np.float32), mat.astype(np.float32)


def _powder(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Dense heap of angular grains of many sizes: convex faceted pyramids piled on each other."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    g_mean = ref * rng.uniform(0.03, 0.08)
    n = int(np.clip(1.6 * rows * cols / (math.pi * g_mean**2), 20, 250))
    sizes = np.sort(g_mean * rng.lognormal(0, 0.5, n))[::-1]
    h = np.zeros(shape, np.float32)
    for s in sizes:
        cy, cx = rng.uniform(-0.5 * s, rows + 0.5 * s), rng.uniform(-0.5 * s, cols + 0.5 * s)
        nv = int(rng.integers(4, 8))
        phi = np.sort(rng.uniform(0, 2 * math.pi, nv)) + np.arange(nv) * (2 * math.pi / nv)
        slope = rng.uniform(0.6, 2.0, nv).astype(np.float32)
        top = s * rng.uniform(0.5, 1.0)
        reach = top / float(slope.min()) * 0.8  # corners beyond this are cut (gives angular outlines)
        r0, r1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, rows)
        c0, c1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, cols)
        if r0 >= r1 or c0 >= c1:
            continue
        yy = (np.arange(r0, r1, dtype=np.float32) - cy)[:, None]
        xx = (np.arange(c0, c1, dtype=np.float32) - cx)[None, :]
        grain = np.full((r1 - r0, c1 - c0), top, np.float32)
        for a, b in zip(np.cos(phi) * slope, np.sin(phi) * slope):  # convex: min over facet planes
            np.minimum(grain, top - (xx * np.float32(a) + yy * np.float32(b)), out=grain)
        base = h[r0:r1, c0:c1]
        lift = float(h[min(max(int(cy), 0), rows - 1), min(max(int(cx), 0), cols - 1)]) + rng.uniform(0, 0.3 * s)
        grain[grain <= 0] = -np.inf
        np.maximum(base, grain + np.float32(lift), out=base)
    mat = (1.0 + 0.15 * _noise(rng, shape, g_mean * 0.5)).astype(np.float32)
    mat[h <= 0] = rng.uniform(0.2, 0.4)
    return h, mat


def _tips(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """One sharp probe (cone, etched wire or pyramid on a cantilever) against a dark background."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    ang = rng.uniform(0, 2 * math.pi)
    apex = (rng.uniform(0.25, 0.75) * rows, rng.uniform(0.25, 0.75) * cols)
    u, v = _rotation(shape, ang, apex)  # u grows from the apex backwards along the tip
    kind = int(look.variant * 3)
    if kind == 0:  # straight cone
        half = np.maximum(u, 0) * math.tan(rng.uniform(0.12, 0.4))
    elif kind == 1:  # etched wire: sharp end, widening then constant
        w0 = ref * rng.uniform(0.05, 0.12)
        half = w0 * (1 - np.exp(-np.maximum(u, 0) / (ref * rng.uniform(0.08, 0.25))))
    else:  # pyramid tip on a cantilever (top view)
        w0 = ref * rng.uniform(0.1, 0.2)
        half = np.minimum(np.maximum(u, 0) * 0.6, w0)
    half = half * (u > 0)
    h = np.sqrt(np.maximum(half * half - v * v, 0)).astype(np.float32)
    if kind == 2:
        lever = (u > 0) & (np.abs(v) < w0 * rng.uniform(1.3, 2.0))
        h = np.maximum(h * 1.5, lever * w0 * 0.3).astype(np.float32)
    body = (h > 0).astype(np.float32)
    mat = (rng.uniform(0.08, 0.25) + body * rng.uniform(0.8, 1.1)).astype(np.float32)
    h += 0.5 * _noise(rng, shape, ref * 0.05)
    return h, mat


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


def _nanowire_maps(rng: np.random.Generator, look: _Look, shape: Shape, order: float | None) -> tuple[Maps, float, float]:
    rows, cols = shape
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


def _nanowires(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Many thin long wires, random or aligned."""
    maps, _, _ = _nanowire_maps(rng, look, shape, None)
    return maps


def _biological(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Rod bacteria, cocci chains, large cells or diatoms, with filaments on a soft substrate."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    mask = np.zeros(shape, np.uint8)
    kind = int(look.variant * 4)
    if kind == 0:  # rod-shaped bacteria in colonies
        w = ref * rng.uniform(0.025, 0.05)
        n = int(np.clip(rng.uniform(0.1, 0.35) * rows * cols / (w * w * 5), 5, 300))
        k = int(rng.integers(1, 5))
        cy, cx = rng.uniform(0, rows, k), rng.uniform(0, cols, k)
        which = rng.integers(0, k, n)
        ys = cy[which] + rng.normal(0, ref * 0.2, n)
        xs = cx[which] + rng.normal(0, ref * 0.2, n)
        for y, x in zip(ys, xs):
            a, ln = rng.uniform(0, math.pi), w * rng.uniform(1.5, 4.0)
            p0 = (int(x - ln * math.cos(a)), int(y - ln * math.sin(a)))
            p1 = (int(x + ln * math.cos(a)), int(y + ln * math.sin(a)))
            cv2.line(mask, p0, p1, 1, max(2, int(w * rng.uniform(0.8, 1.2))), cv2.LINE_8)
        height = w * 0.8
    elif kind == 1:  # cocci in chains and clumps
        rad = ref * rng.uniform(0.015, 0.035)
        n_chain = int(rng.integers(5, 40))
        for _ in range(n_chain):
            y, x = rng.uniform(0, rows), rng.uniform(0, cols)
            a = rng.uniform(0, 2 * math.pi)
            for _ in range(int(rng.integers(2, 10))):
                cv2.circle(mask, (int(x), int(y)), max(2, int(rad * rng.uniform(0.85, 1.1))), 1, -1)
                a += rng.normal(0, 0.5)
                x, y = x + 1.8 * rad * math.cos(a), y + 1.8 * rad * math.sin(a)
        height = rad
    elif kind == 2:  # large cells with wrinkled membranes
        n = int(rng.integers(1, 6))
        yy, xx = _grid(shape)
        field = np.full(shape, -1.0, np.float32)
        for _ in range(n):
            cy, cx = rng.uniform(0.1, 0.9) * rows, rng.uniform(0.1, 0.9) * cols
            ry, rx = ref * rng.uniform(0.1, 0.3), ref * rng.uniform(0.1, 0.3)
            field = np.maximum(field, 1 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2)
        field += 0.35 * _noise(rng, shape, ref * 0.08)
        mask = (field > 0).astype(np.uint8)
        height = ref * 0.1
    else:  # diatoms: elliptical frustules with rows of pores
        n = int(rng.integers(1, 5))
        for _ in range(n):
            cy, cx = rng.uniform(0.15, 0.85) * rows, rng.uniform(0.15, 0.85) * cols
            axes = (int(ref * rng.uniform(0.12, 0.35)), int(ref * rng.uniform(0.05, 0.12)))
            cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        height = ref * 0.05
    h = _dome(mask, height)
    mat = (0.4 + 0.6 * mask).astype(np.float32) * rng.uniform(0.8, 1.1)
    if kind == 3:  # pore rows on the frustules
        u, v = _rotation(shape, rng.uniform(0, math.pi))
        pitch = ref * rng.uniform(0.015, 0.03)
        pores = (np.sin(u * (2 * math.pi / pitch)) * np.sin(v * (2 * math.pi / pitch)) > 0.6) & (mask > 0)
        h -= pores * height * 0.3
        mat *= 1 - 0.5 * pores
    if kind == 2:
        h += height * 0.08 * _noise(rng, shape, ref * 0.02) * mask
    # extracellular filaments
    nf = int(rng.integers(0, 25))
    if nf:
        fil = np.zeros(shape, np.float32)
        for _ in range(nf):
            x0, y0 = rng.uniform(0, cols), rng.uniform(0, rows)
            a = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.35, 12))
            step = ref * rng.uniform(0.02, 0.06)
            pts = np.stack([x0 + np.cumsum(step * np.cos(a)), y0 + np.cumsum(step * np.sin(a))], 1)
            cv2.polylines(fil, [np.round(pts).astype(np.int32)], False, 1.0, 1, cv2.LINE_AA)
        h = np.maximum(h, fil * ref * 0.01)
        mat = np.maximum(mat, fil * 0.9)
    h += 0.4 * _noise(rng, shape, ref * 0.03)
    return h.astype(np.float32), mat.astype(np.float32)


def _mems(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Rectilinear devices on a few levels: comb drives, pads, traces, interdigitated electrodes."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    ang = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.05)
    ca, sa = math.cos(ang), math.sin(ang)
    center = np.array([cols / 2, rows / 2])
    h = np.zeros(shape, np.float32)
    mat = np.full(shape, rng.uniform(0.3, 0.5), np.float32)
    levels = ref * np.array([0.02, 0.04, 0.06])
    tones = rng.uniform(0.6, 1.3, 3)

    def rect(x0: float, y0: float, x1: float, y1: float, lvl: int) -> None:
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) - center
        rot = corners @ np.array([[ca, sa], [-sa, ca]]) + center
        pts = np.round(rot * 16).astype(np.int32)
        cv2.fillConvexPoly(h, pts, float(levels[lvl]), cv2.LINE_AA, shift=4)
        cv2.fillConvexPoly(mat, pts, float(tones[lvl]), cv2.LINE_AA, shift=4)

    span = max(rows, cols) * 1.5
    lo = -span / 4
    kind = int(look.variant * 3)
    if kind == 0:  # comb drive
        pitch = ref * rng.uniform(0.04, 0.09)
        fw = pitch * rng.uniform(0.25, 0.4)
        y_top, y_bot = rows * rng.uniform(0.1, 0.3), rows * rng.uniform(0.7, 0.9)
        overlap = (y_bot - y_top) * rng.uniform(0.2, 0.5)
        rect(lo, y_top - pitch * 2, cols - lo, y_top, 1)
        rect(lo, y_bot, cols - lo, y_bot + pitch * 2, 1)
        x = lo
        while x < cols - lo:
            rect(x, y_top, x + fw, y_bot - overlap * 0.3 - (y_bot - y_top - overlap) / 2, 1)
            rect(x + pitch / 2, y_top + overlap * 0.3 + (y_bot - y_top - overlap) / 2, x + pitch / 2 + fw, y_bot, 1)
            x += pitch
    elif kind == 1:  # bond pads with traces
        n = int(rng.integers(2, 7))
        size = ref * rng.uniform(0.12, 0.25)
        for i in range(n):
            x0, y0 = rng.uniform(0, cols - size), rng.uniform(0, rows - size)
            tw = size * rng.uniform(0.08, 0.2)
            if rng.random() < 0.5:
                rect(x0 + size / 2 - tw / 2, y0 + size / 2, x0 + size / 2 + tw / 2, rows - lo, 0)
            else:
                rect(x0 + size / 2, y0 + size / 2 - tw / 2, cols - lo, y0 + size / 2 + tw / 2, 0)
            rect(x0, y0, x0 + size, y0 + size, 1)
            m = size * 0.15
            rect(x0 + m, y0 + m, x0 + size - m, y0 + size - m, 2)
    else:  # interdigitated electrodes with etch-hole plate
        pitch = ref * rng.uniform(0.03, 0.08)
        w = pitch * rng.uniform(0.3, 0.45)
        y = lo
        i = 0
        while y < rows - lo:
            if i % 2:
                rect(lo, y, cols * 0.85, y + w, 1)
            else:
                rect(cols * 0.15, y, cols - lo, y + w, 1)
            y += pitch
            i += 1
        rect(lo, lo, cols * 0.15, rows - lo, 2)
        rect(cols * 0.85, lo, cols - lo, rows - lo, 2)
    h += 0.05 * _noise(rng, shape, ref * 0.05)
    return h, mat


def _fibres(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Thick long fibres: non-woven mats (random, crossing) or woven yarns (over-under)."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    if look.variant < 0.7:
        n = int(np.clip(rng.uniform(6, 30) / look.zoom, 4, 60))
        angles = rng.uniform(0, math.pi, n)
        lengths = np.full(n, 2.5 * max(rows, cols), np.float32)
        widths = ref * rng.uniform(0.03, 0.08) * rng.lognormal(0, 0.25, n)
        h, _ = _wire_set(rng, shape, angles, lengths, widths, curve=rng.uniform(0.0, 0.15))
        mat = np.where(h > 0, 1.0, rng.uniform(0.1, 0.3)).astype(np.float32)
        h += 0.3 * _noise(rng, shape, ref * 0.01)
        return h, mat
    # woven: two perpendicular yarn families with sinusoidal over/under crimp
    u, v = _rotation(shape, rng.uniform(0, math.pi))
    pitch = ref * rng.uniform(0.08, 0.2)
    fu, fv = np.floor(u / pitch), np.floor(v / pitch)
    du = (u / pitch - fu - 0.5) * 2
    dv = (v / pitch - fv - 0.5) * 2
    crimp = pitch * 0.25
    warp = np.sqrt(np.maximum(1 - dv * dv * 1.2, 0)) * pitch * 0.4 + crimp * np.cos(math.pi * (u / pitch + fv))
    weft = np.sqrt(np.maximum(1 - du * du * 1.2, 0)) * pitch * 0.4 - crimp * np.cos(math.pi * (v / pitch + fu))
    h = np.maximum(warp, weft).astype(np.float32)
    # filament striations along each yarn
    strands = np.where(warp > weft, np.sin(v * (2 * math.pi / (pitch / 6))), np.sin(u * (2 * math.pi / (pitch / 6))))
    h += (strands * pitch * 0.02).astype(np.float32)
    mat = np.where(np.maximum(warp, weft) > 0, 1.0, 0.2).astype(np.float32)
    return h, mat


_GENERATORS: dict[str, Callable[[np.random.Generator, _Look, Shape], Maps]] = {
    "Porous_Sponge": _porous_sponge,
    "Patterned_surface": _patterned_surface,
    "Particles": _particles,
    "Films_Coated_Surface": _films,
    "Powder": _powder,
    "Tips": _tips,
    "Nanowires": _nanowires,
    "Biological": _biological,
    "MEMS_devices_and_electrodes": _mems,
    "Fibres": _fibres,
}


# ---------------------------------------------------------------- the SEM renderer


def _render(h: np.ndarray, mat: np.ndarray, look: _Look, rng: np.random.Generator) -> np.ndarray:
    """Secondary-electron image of a height/material map: float32 in [0, 1]."""
    rows, cols = h.shape
    h = cv2.GaussianBlur(h, (0, 0), 0.8)
    gx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    norm = cv2.sqrt(cv2.add(cv2.magnitude(gx, gy) ** 2, 1.0))
    facing = cv2.divide(cv2.addWeighted(gx, -math.cos(look.light) * look.shade, gy,
                                        math.sin(look.light) * look.shade, 0.0), norm)
    facing += 1.0
    # SE yield ~ 1/cos(local tilt): steep walls and edges glow; slopes facing the detector are brighter
    tilt = cv2.addWeighted(cv2.min(norm, 4.0), look.tilt, norm, 0.0, 1.0 - look.tilt)
    img = cv2.multiply(cv2.multiply(mat, tilt), facing)
    edge = cv2.Laplacian(h, cv2.CV_32F, ksize=3, scale=-0.12 * look.edge)
    img += cv2.min(cv2.max(edge, 0.0), 0.5 * look.edge)
    if look.glow:  # charging: a soft halo around raised, bright parts
        lift = np.clip(img - np.median(img[::4, ::4]), 0, None)
        img += look.glow * _wide_blur(lift, min(rows, cols) * 0.04)
    img *= 1.0 + 0.12 * _noise(rng, (rows, cols), min(rows, cols) * 0.7)  # uneven illumination
    lo, hi = np.percentile(img[::3, ::3], (0.5, 99.7))
    scale = look.contrast / max(float(hi - lo), 1e-6)
    img = np.clip(img * scale + (0.5 + look.brightness - 0.5 * look.contrast - lo * scale), 0, 1)
    img = img * (1.0 - look.black) + look.black
    img = cv2.GaussianBlur(cv2.pow(img.astype(np.float32), look.gamma), (0, 0), look.blur)
    if look.jitter:
        shift = cv2.GaussianBlur(rng.normal(0, look.jitter, (rows, 1)).astype(np.float32), (1, 0), 1.5)
        map_c = np.arange(cols, dtype=np.float32)[None, :] + shift
        map_r = np.broadcast_to(np.arange(rows, dtype=np.float32)[:, None], (rows, cols)).copy()
        img = cv2.remap(img, map_c, map_r, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    sigma = cv2.sqrt(img * np.float32(1.0 / look.dose) + np.float32(4e-4))
    img += sigma * rng.standard_normal((rows, cols), dtype=np.float32)
    img += rng.normal(0, 0.01, (rows, 1)).astype(np.float32)  # line-to-line gain noise
    return np.clip(img, 0, 1, out=img)


# ---------------------------------------------------------------- data bar

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def render_databar(cols: int, rows: int, rng: np.random.Generator, *, style: str | None = None) -> np.ndarray:
    """An instrument info strip (float32 ``(rows, cols)`` in [0, 1]) like those SEMs burn in.

    Styles: ``"zeiss"`` (black band, white "EHT = ... Mag = ..." text, scale bar), ``"fei"``
    (black table with cell separators), ``"white"`` (light band, dark JEOL-like text).
    """
    style = style or str(rng.choice(["zeiss", "fei", "white"], p=[0.5, 0.3, 0.2]))
    if style not in ("zeiss", "fei", "white"):
        raise ValueError(f"data bar style must be 'zeiss', 'fei' or 'white', got {style!r}")
    bg, fg = (int(rng.integers(215, 250)), int(rng.integers(0, 30))) if style == "white" else (
        int(rng.integers(0, 12)), int(rng.integers(225, 256)))
    bar = np.full((rows, cols), bg, np.uint8)
    kv = float(rng.choice([1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0]))
    wd = rng.uniform(3.0, 12.0)
    mag = float(rng.choice([1, 2.5, 5, 10, 25, 50, 100, 200])) * rng.uniform(0.8, 1.3)
    day = f"{int(rng.integers(1, 29))} {_MONTHS[int(rng.integers(0, 12))]} {int(rng.integers(2008, 2025))}"
    length = float(rng.choice([100, 200, 500, 1, 2, 5, 10]))
    unit = "nm" if length >= 100 else "um"
    if style == "zeiss":
        det = rng.choice(["InLens", "SE2", "ESB"])
        lines = [f"EHT = {kv:.2f} kV   WD = {wd:.1f} mm   Mag = {mag:.2f} K X",
                 f"Signal A = {det}   Date :{day}"]
    elif style == "fei":
        det = rng.choice(["TLD", "ETD", "CBS"])
        lines = [f"HV {kv:.2f} kV | mag {mag * 1000:,.0f} x | WD {wd:.1f} mm | det {det} | {day}"]
    else:
        lines = [f"SEI {kv:.0f}kV  WD{wd:.0f}mm  SS30  x{mag * 1000:,.0f}  {length:g}{unit}  {day}"]
    if rows < 28:
        lines = ["   ".join(lines)]
    text_x0 = int(cols * 0.28)
    _put_lines(bar, lines, text_x0, cols - 2, fg)
    # scale bar with its label, left part of the band
    bar_len = int(cols * rng.uniform(0.08, 0.18))
    x0 = max(2, int(cols * 0.03))
    y = int(rows * 0.72)
    cv2.line(bar, (x0, y), (x0 + bar_len, y), fg, max(1, rows // 12))
    _put_lines(bar[: max(y - 1, 2)], [f"{length:g} {unit}"], x0, x0 + max(bar_len, int(cols * 0.2)), fg)
    if style == "fei":
        for x in np.linspace(text_x0, cols, 6)[1:-1]:  # table cells and a line above the table
            cv2.line(bar, (int(x), 2), (int(x), rows - 3), fg, 1)
        cv2.line(bar, (0, 0), (cols - 1, 0), fg, 1)
    return bar.astype(np.float32) / 255.0


def _put_lines(canvas: np.ndarray, lines: Sequence[str], x0: int, x1: int, color: int) -> None:
    """Write text lines scaled to fit the box ``[x0, x1]`` x canvas height."""
    rows = canvas.shape[0]
    font = cv2.FONT_HERSHEY_SIMPLEX
    line_h = rows / len(lines)
    for k, text in enumerate(lines):
        (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
        scale = min(line_h * 0.62 / th, max(x1 - x0, 8) / tw)
        thick = max(1, int(round(scale * 1.5)))
        base = int((k + 0.5) * line_h + th * scale / 2)
        cv2.putText(canvas, text, (x0, base), font, scale, color, thick, cv2.LINE_AA)


# ---------------------------------------------------------------- public generators


def _check_category(category: str) -> str:
    if category not in _GENERATORS:
        import difflib

        close = difflib.get_close_matches(category, CATEGORIES, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"category must be one of semcat.CATEGORIES ({', '.join(CATEGORIES)}), got {category!r}{hint}"
        )
    return category


def _check_shape(size: int, shape: Shape | None) -> Shape:
    rows, cols = (int(shape[0]), int(shape[1])) if shape is not None else (int(size), int(size))
    if rows < 32 or cols < 32:
        raise ValueError(f"image size must be at least 32x32 pixels, got {rows}x{cols}; pass a larger size")
    return rows, cols


def _quantise(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float [0, 1] → uint8 or uint16 (full range)."""
    if bit_depth == 8:
        return (img * 255.0 + 0.5).astype(np.uint8)
    if bit_depth == 16:
        return (img * 65535.0 + 0.5).astype(np.uint16)
    raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")


def _with_databar(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows, cols = img.shape
    return np.vstack([img, render_databar(cols, max(10, int(round(rows * 0.08))), rng)])


def generate_image(
    category: str,
    rng: np.random.Generator,
    size: int = 512,
    *,
    databar: bool = False,
    shape: Shape | None = None,
    bit_depth: int = 8,
    sample: np.random.Generator | None = None,
) -> np.ndarray:
    """One SEM-like image of ``category``.

    Parameters
    ----------
    category : one of ``semcat.CATEGORIES``.
    rng : the image's random generator (layout, noise).
    size : side of a square image; ``shape=(rows, cols)`` overrides it (e.g. ``(768, 1024)``).
    databar : append an instrument data bar (~8 % of the height) below the image.
    bit_depth : 8 → ``uint8``, 16 → ``uint16`` (full range).
    sample : generator for the per-sample look (magnification, contrast, variant); images drawn
        with generators seeded alike resemble shots of one specimen. Defaults to ``rng``.

    Returns
    -------
    ndarray of shape (rows, cols), or (rows + bar, cols) with a data bar.
    """
    shape = _check_shape(size, shape)
    look = _draw_look(sample if sample is not None else rng)
    h, mat = _GENERATORS[_check_category(category)](rng, look, shape)
    img = _render(h, mat, look, rng)
    return _quantise(_with_databar(img, rng) if databar else img, bit_depth)


def _nanowire_image(order: float, rng: np.random.Generator, shape: Shape) -> tuple[np.ndarray, float, float]:
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


def blend(
    a_cat: str,
    b_cat: str,
    weight: float,
    rng: np.random.Generator,
    size: int = 512,
    *,
    mode: str | None = None,
) -> np.ndarray:
    """An ambiguous ``uint8`` image between two categories, ``weight`` = share of ``b_cat``.

    ``mode="region"`` puts ``b_cat`` in a smooth region covering ``weight`` of the area (e.g.
    particles on part of a patterned surface); ``mode="mix"`` adds the two topographies weighted
    (e.g. wires lying on a porous film). Both are rendered once, so the result looks like one shot.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1] (share of {b_cat!r}), got {weight!r}")
    mode = mode or str(rng.choice(["region", "mix"]))
    if mode not in ("region", "mix"):
        raise ValueError(f"mode must be 'region' or 'mix', got {mode!r}")
    shape = _check_shape(size, None)
    look = _draw_look(rng)
    ha, ma = _GENERATORS[_check_category(a_cat)](rng, look, shape)
    hb, mb = _GENERATORS[_check_category(b_cat)](rng, look, shape)
    if mode == "region":
        field = _noise(rng, shape, min(shape) * 0.3)
        cut = np.quantile(field[::4, ::4], 1.0 - weight) if 0 < weight < 1 else (np.inf if weight == 0 else -np.inf)
        alpha = np.clip((field - cut) * 4 + 0.5, 0, 1)
    else:
        alpha = np.float32(weight)
    h = (1 - alpha) * ha + alpha * hb
    mat = (1 - alpha) * ma + alpha * mb
    return _quantise(_render(h.astype(np.float32), mat.astype(np.float32), look, rng), 8)


# ---------------------------------------------------------------- writing sets to disk

_USERS = ("jdoe", "mrossi", "akim", "lchen", "pmueller", "sgarcia", "tnguyen", "ebrown")
_SAMPLE_CODES: dict[str, tuple[str, ...]] = {
    "Porous_Sponge": ("foam", "aerogel", "PSi"),
    "Patterned_surface": ("litho", "NIL", "PMMAgrid"),
    "Particles": ("AuNP", "SiO2", "latex"),
    "Films_Coated_Surface": ("TiN", "ALD", "coat"),
    "Powder": ("powder", "Al2O3", "catal"),
    "Tips": ("AFMtip", "STM", "probe"),
    "Nanowires": ("ZnO", "SiNW", "AgNW"),
    "Biological": ("ecoli", "diatom", "cells"),
    "MEMS_devices_and_electrodes": ("mems", "IDE", "chip"),
    "Fibres": ("PAN", "fabric", "CF"),
}
_FORMATS = {"tif": ".tif", "tiff": ".tif", "png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}


def _encode(img: np.ndarray, fmt: str, tag: tuple[int, str] | None = None) -> bytes:
    """File bytes of ``img`` in ``fmt`` (tif via tifffile, png/jpg via OpenCV).

    ``tag`` = (TIFF tag number, text) of vendor metadata; TIFF only (PNG/JPEG have no such tags).
    """
    if fmt in ("tif", "tiff"):
        import tifffile

        buf = io.BytesIO()
        extra = [(tag[0], "s", 0, tag[1], True)] if tag else []
        tifffile.imwrite(buf, img, photometric="minisblack", extratags=extra)
        return buf.getvalue()
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if fmt in ("jpg", "jpeg") else []
    ok, data = cv2.imencode(_FORMATS[fmt], img, params)
    if not ok:  # pragma: no cover - OpenCV refuses only unsupported dtypes, checked earlier
        raise ValueError(f"OpenCV could not encode a {img.dtype} image as {fmt}")
    return data.tobytes()


# Horizontal field width (m) each kind of sample is usually imaged at, for a look with zoom 1:
# powders and devices at tens of x, particles and films at tens of thousands of x.
_FIELD_WIDTH_M: dict[str, tuple[float, float]] = {
    "Porous_Sponge": (1e-6, 30e-6),
    "Patterned_surface": (2e-6, 50e-6),
    "Particles": (0.5e-6, 10e-6),
    "Films_Coated_Surface": (0.5e-6, 20e-6),
    "Powder": (20e-6, 1e-3),
    "Tips": (2e-6, 100e-6),
    "Nanowires": (2e-6, 40e-6),
    "Biological": (3e-6, 200e-6),
    "MEMS_devices_and_electrodes": (20e-6, 2e-3),
    "Fibres": (10e-6, 1e-3),
}
_ZEISS_TAG, _FEI_TAG = 34118, 34682
_ZEISS_SERIALS = ("4142-52-13", "6102-31-07", "4310-88-21")
_ZEISS_DETECTORS = ("InLens", "SE2", "ESB")
_FEI_SYSTEMS = ("Quanta 250 FEG", "Helios NanoLab 660", "Nova NanoSEM 450")
_FEI_DETECTORS = (("ETD", "SE"), ("TLD", "SE"), ("CBS", "BSE"))
_KV = (1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0)


@dataclass(frozen=True)
class _Session:
    """One sample's acquisition settings on one instrument: its shots share them."""

    zeiss: bool
    field_width_m: float
    high_voltage_v: float
    working_distance_m: float
    detector: int
    instrument: int
    start: datetime


def _draw_session(rng: np.random.Generator, category: str, zoom: float, zeiss: bool) -> _Session:
    lo, hi = _FIELD_WIDTH_M[category]
    return _Session(
        zeiss=zeiss,
        field_width_m=float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) / zoom,
        high_voltage_v=float(rng.choice(_KV)) * 1e3,
        working_distance_m=round(float(rng.uniform(3.0, 12.0)), 2) * 1e-3,
        detector=int(rng.integers(0, 3)),
        instrument=int(rng.integers(0, 3)),
        start=datetime(2012, 1, 2, 8) + timedelta(days=int(rng.integers(0, 13 * 365)),
                                                   seconds=int(rng.integers(0, 9 * 3600))),
    )


def _metadata_tag(session: _Session, shot: int, shape: Shape) -> tuple[int, str]:
    """(TIFF tag, vendor text) of shot number ``shot`` of a session, for a ``shape`` scan."""
    rows, cols = shape
    pixel = session.field_width_m / cols
    when = session.start + timedelta(seconds=97 * shot)  # a shot every minute and a half
    if session.zeiss:
        return _ZEISS_TAG, zeiss_tag_payload(
            pixel_size_m=pixel, magnification=DISPLAY_WIDTH_M / session.field_width_m,
            high_voltage_v=session.high_voltage_v, working_distance_m=session.working_distance_m,
            detector=_ZEISS_DETECTORS[session.detector], acquired=when,
            serial_number=_ZEISS_SERIALS[session.instrument])
    name, mode = _FEI_DETECTORS[session.detector]
    return _FEI_TAG, fei_tag_payload(
        pixel_size_m=pixel, columns=cols, scan_rows=rows, high_voltage_v=session.high_voltage_v,
        working_distance_m=session.working_distance_m, detector=name, mode=mode, acquired=when,
        system_type=_FEI_SYSTEMS[session.instrument])


def _check_format(fmt: str, bit_depth: int) -> str:
    fmt = fmt.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of tif, png, jpg, got {fmt!r}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and fmt in ("jpg", "jpeg"):
        raise ValueError("JPEG cannot hold 16-bit images: use fmt='tif' or 'png', or bit_depth=8")
    return fmt


def _groups(seed: int, cat_index: int, category: str, count: int) -> list[tuple[int, str]]:
    """(group number, file stem prefix) per image index: 2-6 shots per sample, fixed by seed."""
    rng = np.random.default_rng([seed, cat_index, 2])
    out: list[tuple[int, str]] = []
    group = 0
    while len(out) < count:
        shots = int(rng.integers(2, 7))
        user = _USERS[int(rng.integers(0, len(_USERS)))]
        code = _SAMPLE_CODES[category][int(rng.integers(0, 3))]
        out.extend([(group, f"{user}_{code}{group + 1:02d}")] * shots)
        group += 1
    return out[:count]


def _progress_bar(enabled: bool, what: str):
    """A rich progress bar on stderr (disabled = no output) for long writes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from semcat.commands._common import err_console

    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, disable=not enabled, transient=True)


def write_dataset(
    out_dir: str | Path,
    *,
    per_class: int = 20,
    size: int = 512,
    seed: int = 0,
    databar: bool = False,
    categories: Sequence[str] = CATEGORIES,
    fmt: str = "tif",
    shape: Shape | None = None,
    bit_depth: int = 8,
    metadata: bool = True,
    progress: bool = False,
) -> dict[str, int]:
    """Write ``per_class`` images per category into ``out_dir/<category>/``.

    Files are named like a facility archive, ``<user>_<sample>_<nnn>.<ext>`` (2-6 shots per
    sample, shots of one sample share their look), so ``group_by='^([^_]+_[^_]+)_'`` finds
    samples. Image ``nnn`` of a category depends only on ``(seed, category, nnn)``: raising
    ``per_class`` adds files and leaves the others byte-identical. Existing files are skipped
    (an interrupted run resumes); writes are atomic.

    ``metadata`` (TIFF only): embed vendor acquisition tags, Zeiss and FEI/Thermo alternating by
    sample. Shots of a sample share magnification, beam and detector and were taken minutes
    apart; the field width follows the category's usual scale and the sample's zoom.

    Returns the number of files newly written per category.
    """
    fmt = _check_format(fmt, bit_depth)
    shape = _check_shape(size, shape)
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    cats = [_check_category(c) for c in categories]
    out = Path(out_dir)
    written = {c: 0 for c in cats}
    with _progress_bar(progress, "synth") as bar:
        task = bar.add_task("synth", total=per_class * len(cats))
        for cat in cats:
            ci = CATEGORIES.index(cat)
            shots: dict[int, int] = {}
            for index, (group, stem) in enumerate(_groups(seed, ci, cat, per_class)):
                shot = shots[group] = shots.get(group, -1) + 1
                path = out / cat / f"{stem}_{index:03d}{_FORMATS[fmt]}"
                if not path.exists():
                    sample = [seed, ci, 1, group]
                    img = generate_image(
                        cat, np.random.default_rng([seed, ci, 0, index]), size, databar=databar,
                        shape=shape, bit_depth=bit_depth, sample=np.random.default_rng(sample),
                    )
                    tag = None
                    if metadata and fmt in ("tif", "tiff"):
                        zoom = _draw_look(np.random.default_rng(sample)).zoom  # the look generate_image drew
                        session = _draw_session(np.random.default_rng([seed, ci, 3, group]), cat, zoom,
                                                zeiss=(group + ci) % 2 == 0)
                        tag = _metadata_tag(session, shot, shape)
                    atomic_write_bytes(path, _encode(img, fmt, tag))
                    written[cat] += 1
                bar.advance(task)
    return written


def write_alignment_set(out_dir: str | Path, *, n: int = 100, size: int = 512, seed: int = 0,
                        metadata: bool = True) -> Path:
    """Nanowire images with nominal order spanning 0..1 plus ``truth.csv`` (file, order, angle_deg).

    ``order`` is the measured nematic order parameter of the drawn wires, ``angle_deg`` their
    mean direction in degrees counter-clockwise from the column axis as seen on screen, in (-90, 90].
    ``metadata``: embed vendor tags as :func:`write_dataset` does. Returns the path of ``truth.csv``.
    """
    out = Path(out_dir)
    rows = []
    for i, nominal in enumerate(np.linspace(0.0, 1.0, n)):
        img, s, angle = _nanowire_image(float(nominal), np.random.default_rng([seed, 100, i]), (size, size))
        name = f"nanowires_{i:04d}.tif"
        if not (out / name).exists():
            zoom = _draw_look(np.random.default_rng([seed, 100, i])).zoom  # the look _nanowire_image drew
            tag = _set_tag(metadata, [seed, 100, i, 1], "Nanowires", zoom, i, (size, size))
            atomic_write_bytes(out / name, _encode(_quantise(img, 8), "tif", tag))
        rows.append((name, f"{s:.4f}", f"{angle:.2f}"))
    return _write_truth(out / "truth.csv", ("file", "order", "angle_deg"), rows)


def write_blend_set(
    out_dir: str | Path,
    *,
    n: int = 50,
    size: int = 512,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] | None = None,
    weights: tuple[float, float] = (0.2, 0.8),
    metadata: bool = True,
) -> Path:
    """Ambiguous images between two categories plus ``truth.csv`` (file, class_a, class_b, weight).

    ``pairs`` defaults to random distinct pairs; ``weight`` (share of ``class_b``) is drawn
    uniformly in ``weights``. ``metadata``: embed vendor tags (at ``class_a``'s usual scale).
    Returns the path of ``truth.csv``.
    """
    out = Path(out_dir)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, 101, i])
        if pairs:
            a, b = pairs[i % len(pairs)]
        else:
            a, b = (str(c) for c in rng.choice(CATEGORIES, 2, replace=False))
        w = float(rng.uniform(*weights))
        name = f"blend_{i:04d}.tif"
        img = blend(a, b, w, rng, size)
        if not (out / name).exists():
            tag = _set_tag(metadata, [seed, 101, i, 1], a, 1.0, i, (size, size))
            atomic_write_bytes(out / name, _encode(img, "tif", tag))
        rows.append((name, a, b, f"{w:.3f}"))
    return _write_truth(out / "truth.csv", ("file", "class_a", "class_b", "weight"), rows)


def _set_tag(metadata: bool, key: list[int], category: str, zoom: float, i: int,
             shape: Shape) -> tuple[int, str] | None:
    """Vendor tag of image ``i`` of an alignment/blend set: one session per image, vendors alternate."""
    if not metadata:
        return None
    return _metadata_tag(_draw_session(np.random.default_rng(key), category, zoom, zeiss=i % 2 == 0), 0, shape)


def _write_truth(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
