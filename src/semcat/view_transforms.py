"""Extra views of the centre crop: intensity normalisations, test-time augmentation, augmentations.

Why (issue 20): a category shot on a microscope the model never saw differs in detector
contrast, gamma, noise and focus. These views are measured against the default centre crop by
``benchmarks/cross_instrument.py`` on both protocols (leave one instrument out, within one
instrument); each is a view name, so its features are cached under their own key.

Every function takes the contrast-stretched centre crop (S, S) in [0, 1] and returns views
(V, S, S) in [0, 1]; the features of the V views are averaged.

- ``clean`` (the default view since issue 20): the crop's slowly varying background subtracted
  (a Gaussian of 1/8 the side, as a rolling-ball background; then the contrast stretched again)
  and a 5x5 median filter. Why: what differs most between microscopes at the network's 224
  pixels is noise (dose, scan speed) and uneven background (detector position, charging,
  illumination), and a category's structure is neither. Both are isotropic: no scan direction
  is assumed, so a real horizontal structure (a cross-section's layers, a grating) is kept.
  Augmentations of a ``clean`` model are taken of the cleaned crop (``clean+aug-flip``, ...).
- ``clahe``: contrast-limited adaptive histogram equalisation (OpenCV, 8x8 tiles, clip 2).
- ``histeq``: global histogram equalisation (each pixel replaced by its mid-rank).
- ``tta4``: the four 90° rotations, features averaged (test-time augmentation).
- ``tta2``: the crop and its mirror image, features averaged: half ``tta4``'s classify cost.
- ``ms3``: multi-scale crops, features averaged: the crop and its central 71% and 50% (each
  resized back): for images without a pixel size, whose magnification is unknown
  (:mod:`semcat.physical_scale` handles those with one).
- ``aug-*``: one augmented view each, for training the head on features of augmented images
  (``semcat train --augment``): a flip, a 90° rotation, a darker and a brighter gamma, shot
  noise, defocus blur. Noise is seeded from the image itself, so features stay cacheable.
- the rest of the dihedral group (:data:`DIHEDRAL`: the other rotations, the vertical flip, the
  two transposes): an SEM image has no "up" (the scan rotation, the stage and the sample's
  mounting are arbitrary), so every rotation and mirror image of a micrograph is another
  micrograph of the same category.
- ``aug-invert``: contrast inverted. Why: the same structure's polarity flips between detectors
  and settings (a light element's grain is dark in backscatter and bright in secondary
  electrons; edges glow in SE and in-lens but not in BSE; charging can invert a region).
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from semcat.contrast import robust_range

__all__ = ["ALL", "AUGMENTATIONS", "AUGMENTED_BASES", "AUGMENTED_VIEWS", "DIHEDRAL", "TRANSFORMS", "VERSIONS", "augmented_view",
           "parse_augment"]

VERSIONS = {"histeq": 2}
"""Part of a view's cache key: bump a view's version when its output changes (histeq 2: mid-ranks)."""


_BACKGROUND_SHARE = 1 / 8
"""``clean``: the background is the crop blurred by a Gaussian of this share of its side."""
_MEDIAN = 5
"""``clean``: the median filter's side in network-input pixels (OpenCV's 16-bit median takes 3 or 5)."""


def _clean(c: np.ndarray) -> np.ndarray:
    size = c.shape[0]
    small = max(8, size // 4)  # the background is smooth: blur a quarter-size copy, 16x cheaper
    bg = cv2.resize(cv2.GaussianBlur(cv2.resize(c, (small, small), interpolation=cv2.INTER_AREA), (0, 0),
                                     _BACKGROUND_SHARE * small), (size, size), interpolation=cv2.INTER_LINEAR)
    flat = (c - bg + 1) * 0.5  # in [0, 1], as the stretch's histogram rule needs (np.percentile: 5x slower)
    lo, hi = robust_range(flat)
    if not hi > lo:  # a blank frame stays mid-grey, as the centre crop's stretch leaves it
        return np.full((1, *c.shape), 0.5, np.float32)
    flat = np.clip((flat - lo) / (hi - lo), 0, 1)
    u16 = np.round(flat * 65535).astype(np.uint16)  # OpenCV's 16-bit median is 4x its float one
    return (cv2.medianBlur(u16, _MEDIAN).astype(np.float32) * np.float32(1 / 65535))[None]


def _clahe(c: np.ndarray) -> np.ndarray:
    u8 = np.round(np.clip(c, 0, 1) * 255).astype(np.uint8)
    return (cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(u8).astype(np.float32) / 255)[None]


def _histeq(c: np.ndarray) -> np.ndarray:
    # tied pixels share their mid-rank: a flat frame stays flat (0.5), clipped pixels stay equal
    _, inverse, counts = np.unique(c, return_inverse=True, return_counts=True)
    mid = (np.cumsum(counts) - counts / 2) / c.size
    return mid[inverse].reshape(c.shape).astype(np.float32)[None]


def _rotations(c: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([np.rot90(c, k) for k in range(4)]))


def _mirrored(c: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([c, c[:, ::-1]]))


def _multiscale(c: np.ndarray) -> np.ndarray:
    size = c.shape[0]
    out = [c]
    for share in (2 ** -0.5, 0.5):
        side = max(1, int(round(share * size)))
        o = (size - side) // 2
        out.append(cv2.resize(np.ascontiguousarray(c[o: o + side, o: o + side]), (size, size),
                              interpolation=cv2.INTER_CUBIC))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def _noise(c: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(int(np.float64(c.sum()) * 1e3) & 0x7FFFFFFF)
    return np.clip(c + rng.normal(0, 0.08, c.shape).astype(np.float32), 0, 1)[None]


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": _clean,
    "clahe": _clahe,
    "histeq": _histeq,
    "tta4": _rotations,
    "tta2": _mirrored,
    "ms3": _multiscale,
    "aug-flip": lambda c: np.ascontiguousarray(c[:, ::-1])[None],
    "aug-rot90": lambda c: np.ascontiguousarray(np.rot90(c))[None],
    "aug-dark": lambda c: (c ** 1.8)[None],
    "aug-bright": lambda c: (c ** 0.55)[None],
    "aug-noise": _noise,
    "aug-blur": lambda c: cv2.GaussianBlur(c, (0, 0), 1.5)[None],
    "aug-rot180": lambda c: np.ascontiguousarray(np.rot90(c, 2))[None],
    "aug-rot270": lambda c: np.ascontiguousarray(np.rot90(c, 3))[None],
    "aug-flipud": lambda c: np.ascontiguousarray(c[::-1])[None],
    "aug-transpose": lambda c: np.ascontiguousarray(c.T)[None],
    "aug-transverse": lambda c: np.ascontiguousarray(np.rot90(c, 2).T)[None],
    "aug-invert": lambda c: (1 - c)[None],
}
AUGMENTATIONS = tuple(v for v in TRANSFORMS if v.startswith("aug-"))
ALL = ("aug-flip", "aug-rot90", "aug-dark", "aug-bright", "aug-noise", "aug-blur")
"""``--augment all``: the first six views (measured as ``semcat+aug-all``), kept as they were."""
DIHEDRAL = ("aug-flip", "aug-rot90", "aug-rot180", "aug-rot270", "aug-flipud", "aug-transpose", "aug-transverse")
"""The 7 rotations and mirror images of the crop other than itself (``--augment dihedral``)."""
AUGMENTED_BASES = ("center", "clean")
"""Views whose augmented copies can be training rows: ``aug-*`` of the centre crop, ``clean+aug-*`` of ``clean``."""


def _of_clean(aug: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The augmentation ``aug`` taken of the ``clean`` view of the crop."""
    return lambda c: aug(_clean(c)[0])


TRANSFORMS.update({f"clean+{aug}": _of_clean(TRANSFORMS[aug]) for aug in AUGMENTATIONS})
AUGMENTED_VIEWS = tuple(v for v in TRANSFORMS if "aug-" in v)
"""Every augmented view (training rows only: never a model's view)."""


def augmented_view(base: str, aug: str) -> str:
    """The view of augmentation ``aug`` (an :data:`AUGMENTATIONS` name) of a model whose view is ``base``."""
    if base not in AUGMENTED_BASES or aug not in AUGMENTATIONS:
        raise ValueError(f"augmentations are views of {' or '.join(AUGMENTED_BASES)}; got {aug!r} of view {base!r}.")
    return aug if base == "center" else f"{base}+{aug}"


def parse_augment(text: str | None) -> tuple[str, ...]:
    """``"flip,noise"``, ``"all"`` or ``"dihedral,noscale"`` (``semcat train --augment``) →
    augmentation names: views, or :data:`semcat.physical_scale.SCALE_AUGMENTATIONS`; ``all`` =
    :data:`ALL` (alone), ``dihedral`` = :data:`DIHEDRAL`; ``none`` = no augmentation."""
    from semcat.physical_scale import SCALE_AUGMENTATIONS

    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    if names == ["all"]:
        return ALL
    if names == ["none"]:
        return ()
    views = [v for n in names for v in (DIHEDRAL if n == "dihedral" else (f"aug-{n}",))]
    bad = [n for n in names if n != "dihedral" and f"aug-{n}" not in AUGMENTATIONS + SCALE_AUGMENTATIONS]
    if bad:
        known = ", ".join(a.removeprefix("aug-") for a in AUGMENTATIONS + SCALE_AUGMENTATIONS)
        raise ValueError(f"unknown augmentation {', '.join(map(repr, bad))}; known: {known}, dihedral, all or none.")
    return tuple(dict.fromkeys(views))
