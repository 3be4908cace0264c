"""Scale normalisation with the pixel size: every image seen over the same physical field.

Why (issue 20): labs image one kind of sample at different magnifications, so the same structure
spans different numbers of pixels on different microscopes, and a CNN's features change with
apparent size. When the file records its pixel size (vendor TIFF tags or a sidecar,
:mod:`semcat.semmeta`), the centre crop is taken over a fixed *physical* width,
``input_size x scale_nm`` nanometres, so the network input's pixel size is ``scale_nm`` whatever
the magnification. Categories imaged at very different scales (powders at 100 µm, particles at
2 µm) cannot all share one pixel size, so the crop stays inside a band around the image:
between :data:`BAND` [0] and [1] times its shorter side (a larger field is mirrored at the edges).
Outside the band the crop is clamped, which leaves those images at a fixed ratio of today's view.

Images without a pixel size take today's centre crop; extraction lists them
(``FeatureResult.unscaled``) so commands can say how many. A head trained on scaled crops only
misses on today's crop, so :data:`SCALE_AUGMENTATIONS` add training rows of the same images
unscaled (``noscale``: files without a pixel size then meet a crop the head has seen) or at
:data:`JITTER` times the target either way (``scalejitter``: a category whose size varies).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from semcat.featurespec import FeatureSpec

__all__ = ["BAND", "JITTER", "SCALE_AUGMENTATIONS", "auto_scale_nm", "has_pixel_size", "parse_scale", "scale_crop", "scale_variants", "survey",
           "with_scale"]

BAND = (1 / 3, 1.5)
"""The physical crop's side, as a fraction of the image's shorter side: at most 3x upsampling,
and at most half the field mirrored on each side."""

SCALE_AUGMENTATIONS = ("aug-noscale", "aug-scalejitter")
"""Training-row augmentations of a scale-normalised model (``semcat train --scale ... --augment``)."""
JITTER = 2 ** 0.5
"""``scalejitter``'s factor: rows at target / JITTER and target x JITTER (a 2x band around it)."""


def scale_crop(img: np.ndarray, pixel_nm: float, scale_nm: float, size: int) -> np.ndarray:
    """The centred square of ``img`` (pixel size ``pixel_nm``) that is ``size x scale_nm`` nm wide.

    Its side is clamped into :data:`BAND` of the shorter side; a side beyond the image is filled
    by mirroring (the structures keep their scale). The caller resizes it to ``size``.
    """
    if not (pixel_nm > 0 and scale_nm > 0):
        raise ValueError(f"pixel and target sizes must be > 0; got {pixel_nm!r} and {scale_nm!r} nm")
    rows, cols = img.shape
    short = min(rows, cols)
    side = int(round(np.clip(size * scale_nm / pixel_nm, BAND[0] * short, BAND[1] * short)))
    side = max(side, 1)
    if side <= short:
        r0, c0 = (rows - side) // 2, (cols - side) // 2
        return img[r0: r0 + side, c0: c0 + side]
    pr, pc = side - rows, side - cols
    if pr > 0 or pc > 0:
        img = cv2.copyMakeBorder(np.ascontiguousarray(img), max(pr, 0) // 2, max(pr, 0) - max(pr, 0) // 2,
                                 max(pc, 0) // 2, max(pc, 0) - max(pc, 0) // 2, cv2.BORDER_REFLECT_101)
    rows, cols = img.shape
    r0, c0 = (rows - side) // 2, (cols - side) // 2
    return img[r0: r0 + side, c0: c0 + side]


def has_pixel_size(data: bytes, name: str | Path) -> bool:
    """Whether the file (or its sidecar) records a pixel size (for images whose features are cached)."""
    from semcat.errors import ImageReadError
    from semcat.images import read_image_bytes

    try:
        return bool(read_image_bytes(data, name, crop_databar=False, max_side=64)[1].pixel_size_m)
    except ImageReadError:
        return False


def auto_scale_nm(pixel_nm: Sequence[float | None], short_side: Sequence[int], size: int) -> float | None:
    """The ``auto`` target: the median network-input pixel size today's centre crop gives the
    training images (pixel size x shorter side / ``size``); None when none records a pixel size."""
    vals = [p * s / size for p, s in zip(pixel_nm, short_side) if p]
    return float(np.median(vals)) if vals else None


def survey(files: Sequence[str | Path], size: int, crop_databar: bool = True) -> tuple[float | None, list[str]]:
    """(:func:`auto_scale_nm` of image files, the files without a pixel size). Each file is
    decoded small; unreadable files are left out of both (extraction reports them)."""
    from semcat.errors import ImageReadError
    from semcat.images import read_image

    pixel, short, missing = [], [], []
    for f in files:
        try:
            img, info = read_image(f, crop_databar=crop_databar, max_side=2 * size)
        except ImageReadError:
            continue
        if info.pixel_size_m:
            pixel.append(info.pixel_size_m * 1e9 * info.shape[1] / img.shape[1])
            short.append(min(img.shape))
        else:
            missing.append(str(f))
    return auto_scale_nm(pixel, short, size), missing


def with_scale(spec: FeatureSpec, choice: float | str | None, files: Sequence[str | Path]) -> tuple[FeatureSpec, list[str]]:
    """``spec`` scale-normalised at ``choice`` (nm, ``"auto"`` = :func:`auto_scale_nm` of ``files``,
    None = off) and the ``files`` without a pixel size (they keep today's crop)."""
    if choice is None:
        return spec, []
    auto, missing = survey(files, spec.backbones[0].input_size, spec.crop_databar)
    target = auto if choice == "auto" else float(choice)
    if target is None:
        raise ValueError("--scale auto: none of the images records a pixel size (vendor TIFF tags or a sidecar); "
                         "give --scale PIXEL_NM or leave it off.")
    return replace(spec, scale_nm=target), missing


def scale_variants(name: str, scale_nm: float | None) -> list[float | None]:
    """The scale targets (None = unscaled) whose features a scale augmentation adds to training."""
    if name not in SCALE_AUGMENTATIONS:
        raise ValueError(f"not a scale augmentation: {name!r}; known: {', '.join(SCALE_AUGMENTATIONS)}")
    if scale_nm is None:
        raise ValueError(f"augmentation {name.removeprefix('aug-')} needs scale normalisation (--scale)")
    return [None] if name == "aug-noscale" else [scale_nm / JITTER, scale_nm * JITTER]


def parse_scale(text: str | None) -> float | str | None:
    """``--scale`` text → nm per network-input pixel, ``"auto"``, or None (off)."""
    if text is None or text.strip().lower() in ("", "off", "none"):
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--scale must be a pixel size in nm, auto or off; got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"--scale must be a positive pixel size in nm; got {text!r}")
    return value
