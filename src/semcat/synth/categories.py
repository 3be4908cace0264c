"""One height/material-map generator per NFFA category, and the name → generator table.

Why: each function states what a specimen of its class looks like (pores, lattices, spheres,
grains, wires ...) as a height map and a material (SE yield) map; :mod:`._render` turns any of
them into an SEM image, so categories differ by structure only.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from semcat import CATEGORIES
from semcat.synth._render import Maps, Shape, _Look, _noise
from semcat.synth._shapes import _dome, _fractal, _grid, _rotation, _sphere, _wire_set
from semcat.synth.nanowires import _nanowire_maps


def _porous_sponge(rng: np.random.Generator, look: _Look, shape: Shape) -> Maps:
    """Foam: irregular pores (Voronoi cells of random seeds) behind thin walls with bright rims."""
    rows, cols = shape
    ref = min(shape) * look.zoom
    mean_r = ref * rng.uniform(0.025, 0.07)
    n = int(np.clip(rows * cols / (math.pi * mean_r**2), 8, 6000))
    seeds = np.ones(shape, np.uint8)
    seeds[rng.integers(0, rows, n), rng.integers(0, cols, n)] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
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
        for _ in range(n):
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


def _check_category(category: str) -> str:
    """``category`` unchanged when known, else an error listing the categories and close matches."""
    if category not in _GENERATORS:
        import difflib

        close = difflib.get_close_matches(category, CATEGORIES, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"category must be one of semcat.CATEGORIES ({', '.join(CATEGORIES)}), got {category!r}{hint}"
        )
    return category
