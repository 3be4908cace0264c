"""In-memory images: one image of a category, or an ambiguous blend of two.

Why a separate module: it is the one place that ties a look, a category generator, the renderer,
the data bar and quantisation together; the writers only add file names and metadata.
"""
from __future__ import annotations

import numpy as np

from semcat.synth._render import Shape, _check_shape, _draw_look, _noise, _quantise, _render
from semcat.synth.categories import _GENERATORS, _check_category
from semcat.synth.databar import _with_databar


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
