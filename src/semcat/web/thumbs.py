"""Browser-friendly PNG renderings of catalogued images, made on demand and cached on disk.

Browsers cannot show 16-bit TIFFs, and a 100-megapixel original is too big for a grid, so the web
app shows PNGs: thumbnails with the data bar cropped, and a larger "view" with the bar kept (it
carries the scale). Files are keyed by content hash + size, written atomically, never edited;
they are rendered only from bytes whose hash matched (see ``semcat.web.files``).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from semcat.config import semcat_home

THUMB_SIZES: tuple[int, ...] = (128, 256, 512)
"""Allowed thumbnail sizes; other requests are rounded up, so the cache cannot be flooded."""
VIEW_SIZE = 1600
"""Longer side of the full-view rendering."""


def default_thumb_dir() -> Path:
    return semcat_home() / "thumbs"


def snap_size(size: int) -> int:
    """The smallest allowed thumbnail size ≥ ``size`` (the largest when ``size`` is bigger)."""
    return next((s for s in THUMB_SIZES if s >= size), THUMB_SIZES[-1])


def cache_path(sha256: str, kind: str, root: Path | None = None) -> Path:
    """Where a rendering lives: ``<root>/<sha[:2]>/<sha>-<kind>.png``."""
    return (root or default_thumb_dir()) / sha256[:2] / f"{sha256}-{kind}.png"


def display_png(img: np.ndarray, max_side: int) -> bytes:
    """Encode a gray float image in [0, 1] as an 8-bit PNG, contrast-stretched, longer side ≤ ``max_side``."""
    rows, cols = img.shape
    scale = max_side / max(rows, cols)
    if scale < 1:
        img = cv2.resize(img, (max(1, round(cols * scale)), max(1, round(rows * scale))),
                         interpolation=cv2.INTER_AREA)
    return encode_png(stretched(img, *stretch_limits(img)))


def stretch_limits(img: np.ndarray) -> tuple[float, float]:
    """The contrast stretch of an image: its 0.5th and 99.5th percentiles, shown black and white,
    so dim 16-bit or low-contrast images stay visible (the viewer's tiles share one pair per image)."""
    lo, hi = np.percentile(img, (0.5, 99.5))
    return float(lo), float(hi)


def stretched(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """8-bit gray of ``img`` with ``lo``..``hi`` mapped to black..white; a flat image (``hi`` ≈ ``lo``)
    is mid-gray rather than amplified noise."""
    if hi - lo < 1e-6 * max(1.0, abs(hi)):
        return np.full(img.shape, 128, np.uint8)
    return (np.clip((img - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def encode_png(gray8: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", gray8)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {gray8.shape}")
    return buf.tobytes()


def rendering_key(size: int | None) -> tuple[str, int, bool]:
    """(cache kind, longer side, crop the data bar?) of a thumbnail (``size`` given) or the full view."""
    if size is None:
        return f"view{VIEW_SIZE}", VIEW_SIZE, False
    side = snap_size(size)
    return f"{side}", side, True


def render_png(data: bytes, name: str, size: int | None, *, max_decode_bytes: int) -> bytes:
    """PNG of an image's bytes: a thumbnail (``size`` given, data bar cropped) or the full view.

    Raises ``semcat.errors.ImageReadError`` when the bytes cannot be decoded within the budget.
    """
    from semcat.images import read_image_bytes

    _, side, crop = rendering_key(size)
    img, _ = read_image_bytes(data, name, crop_databar=crop, max_side=2 * side, max_decode_bytes=max_decode_bytes,
                              metadata=False)  # the pixels only: no vendor tags beyond what decides the crop
    return display_png(img, side)
