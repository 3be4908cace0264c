"""The shared SEM renderer: a height + material map in, a secondary-electron-looking image out.

Why one renderer: every category (and the nanowire and blend images) gets the same detector
physics, so what separates classes is the specimen, never a rendering shortcut. It applies yield
rising with local tilt (edge brightening), detector-side shading, occasional charging glow, beam
blur, scan-line jitter, shot noise and random contrast/brightness, all set by one per-sample
:class:`_Look`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

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
    """Random acquisition settings, ranges wide enough to cover what real instruments produce."""
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


def _check_shape(size: int, shape: Shape | None) -> Shape:
    """``(rows, cols)`` from ``shape`` or a square ``size``; refuses images too small to draw on."""
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
