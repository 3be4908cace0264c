"""A gallery of instrument data-bar layouts on varied content, with the true bar height.

Why: data-bar detection runs on every image of every vendor, and a wrong crop removes the
sample; the test and ``benchmarks/databar.py`` measure recall and cut content on the same cases.
Each layout is modelled on an info bar as the vendor's software draws it (SmartSEM, xT, TESCAN
Essence/VegaTC, JEOL, Hitachi, Phenom): its background level, text colour, frame lines, table
cells or boxes, its height range and whether image or border rows remain below it. Parameters are
drawn from realistic ranges per image, never fitted to the detector.

``bar_rows`` is what a correct crop removes: from the bar's top row to the last row of the file
(rows of image or border below a bar are cut with it; they are too thin to keep).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from semcat.synth.categories import _GENERATORS
from semcat.synth.databar import _MONTHS, _put_lines
from semcat.synth.generate import generate_image

__all__ = ["BAR_FREE_KINDS", "CONTENT_KINDS", "LAYOUTS", "GalleryCase", "bar_outcome", "content_image", "gallery",
           "render_layout"]


@dataclass(frozen=True)
class _Layout:
    """How one vendor's info bar looks (grey levels 0-255; ranges are drawn per image)."""

    height: tuple[float, float]          # bar height, fraction of the final image height
    bg: tuple[int, int]                  # bar background level
    fg: tuple[int, int]                  # text / scale-bar level
    lines: int = 2                       # text lines
    frame: tuple[int, int] | None = None  # level of a frame line drawn round the bar
    cells: int = 0                       # table cells with vertical separators (xT, TESCAN)
    boxes: tuple[tuple[int, int], ...] = ()  # extra flat boxes of other levels (logo, scale box)
    below: tuple[float, float] = (0.0, 0.0)  # rows under the bar, fraction of the image height
    below_border: bool = False           # those rows are a flat border (else image content)
    inset: int = 0                       # image columns left and right of the bar (overlay zones)
    ruler: bool = False                  # Hitachi/JEOL scale bar drawn as a ruler with ticks
    append: bool = True                  # bar appended below the scan (else drawn over its bottom)


LAYOUTS: dict[str, _Layout] = {
    # Zeiss SmartSEM: black data zone over the bottom of the frame, 2 lines, scale bar left.
    "zeiss_black": _Layout((0.07, 0.11), (0, 12), (225, 255), append=False),
    # Zeiss SmartSEM white data zone: black frame, image columns beside it, 1-2 image rows below
    # (test_tiff_Zeiss_SEM_1k.tif), logo box at the right.
    "zeiss_white_zone": _Layout((0.07, 0.11), (235, 255), (0, 25), frame=(0, 10), boxes=((0, 20),),
                                below=(0.001, 0.003), inset=2, append=False),
    # Zeiss black zone with up to 5% of image rows left beneath it.
    "zeiss_black_image_below": _Layout((0.06, 0.10), (0, 12), (225, 255), below=(0.005, 0.05), append=False),
    # Black zone above a flat grey border: the bar matches neither the top nor the bottom rows.
    "zeiss_black_border_below": _Layout((0.06, 0.10), (0, 12), (225, 255), below=(0.005, 0.05),
                                        below_border=True),
    # FEI/Thermo xT: black table appended below ResolutionY, label row + value row, cell lines.
    "fei_xt_table": _Layout((0.05, 0.08), (0, 8), (220, 255), cells=6, frame=(150, 255)),
    # Thermo xT with a white scale-bar box and a logo cell.
    "thermo_xt_scale_box": _Layout((0.05, 0.08), (0, 8), (220, 255), cells=5, boxes=((230, 255), (90, 140))),
    # TESCAN VegaTC: light grey panel, black text in framed cells.
    "tescan_light_cells": _Layout((0.05, 0.08), (185, 225), (0, 30), cells=4, frame=(0, 40)),
    # TESCAN Essence: dark grey panel, white text, several boxes.
    "tescan_dark_boxes": _Layout((0.05, 0.08), (30, 70), (210, 255), boxes=((0, 15), (90, 130))),
    # JEOL (classic SM series): thin black strip over the frame, one line, dotted ruler.
    "jeol_black_strip": _Layout((0.04, 0.06), (0, 10), (220, 255), lines=1, ruler=True, append=False),
    # JEOL InTouchScope: white strip, black text.
    "jeol_white_strip": _Layout((0.04, 0.07), (225, 255), (0, 30), lines=1),
    # Hitachi S-4800/SU: black strip, one line, ruler of 11 ticks.
    "hitachi_black_ruler": _Layout((0.05, 0.07), (0, 10), (215, 255), lines=1, ruler=True),
    # Hitachi TM tabletop: mid-grey strip, white text: matches neither top nor bottom rows.
    "hitachi_grey_strip": _Layout((0.05, 0.08), (95, 150), (230, 255), lines=1, below=(0.0, 0.02),
                                  below_border=True),
    # Phenom: dark bar with a lighter logo box and a white scale box.
    "phenom_dark_boxes": _Layout((0.06, 0.09), (20, 60), (220, 255), boxes=((200, 255), (80, 110))),
    # Three boxes of different levels side by side (scale / text / logo panels).
    "three_boxes": _Layout((0.06, 0.10), (0, 15), (220, 255), boxes=((110, 160), (230, 255))),
    # Black bar framed by a white line, a thin black border under it.
    "framed_black_border": _Layout((0.06, 0.09), (0, 10), (200, 255), frame=(200, 255),
                                   below=(0.003, 0.02), below_border=True),
    # Minimal strip: a scale bar and one short label.
    "minimal_strip": _Layout((0.03, 0.045), (0, 15), (220, 255), lines=1, append=False),
}

_VENDORS = ("zeiss", "fei", "thermo", "tescan", "jeol", "hitachi", "phenom")

CONTENT_KINDS = ("textured", "dark", "bright", "gradient")
"""Content under the bars: SEM-like texture, a dark or bright sample, a gradient (shading)."""

BAR_FREE_KINDS = (*CONTENT_KINDS, "dark_floor", "bright_floor", "straight_edge")
"""Bar-free images: the contents plus naturally flat bottoms (vacuum below a sample, a charged
bright region, a cleaved cross-section with a straight edge above clipped black)."""


@dataclass(frozen=True)
class GalleryCase:
    """One gallery image: ``layout`` is None for bar-free images (then ``bar_rows`` is 0)."""

    layout: str | None
    kind: str
    image: np.ndarray
    bar_rows: int


def content_image(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A ``uint8`` SEM-like image of ``kind`` (see ``CONTENT_KINDS`` and ``BAR_FREE_KINDS``)."""
    rows, cols = shape
    if kind not in BAR_FREE_KINDS:
        raise ValueError(f"content kind must be one of {BAR_FREE_KINDS}, got {kind!r}")
    base = generate_image(str(rng.choice(list(_GENERATORS))), rng, shape=shape).astype(np.float32)
    noise = rng.normal(0, rng.uniform(2, 6), shape).astype(np.float32)
    if kind == "dark":
        img = 5 + base * rng.uniform(0.15, 0.3)
    elif kind == "bright":
        img = 255 - (255 - base) * rng.uniform(0.15, 0.3)
    elif kind == "gradient":
        ramp = np.linspace(0, 1, rows, dtype=np.float32)[:, None]
        ramp = ramp if rng.random() < 0.5 else 1 - ramp
        img = 20 + 200 * ramp + (base - base.mean()) * 0.3
    elif kind in ("dark_floor", "bright_floor", "straight_edge"):
        img = base.copy()
        top = int(rows * rng.uniform(0.75, 0.95))
        if kind == "straight_edge":
            edge = np.full(cols, top)
        else:  # a sample edge: a random walk, not a ruled line
            edge = top + np.cumsum(rng.normal(0, 1.0, cols)).astype(int)
        below = np.arange(rows)[:, None] >= edge[None, :]
        level = rng.uniform(-8, 8) if kind != "bright_floor" else rng.uniform(247, 262)
        img[below] = level
        for _ in range(int(rng.integers(0, 12))):  # dust / particles on the flat region
            y, x = int(rng.integers(top, rows)), int(rng.integers(0, cols))
            cv2.circle(img, (x, y), int(rng.integers(1, 5)), float(255 - level), -1)
    else:
        img = base
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def render_layout(content: np.ndarray, layout: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``content`` (``uint8``) with the ``layout`` bar burnt in; returns (image, bar_rows).

    Appended bars add rows below the scan; overlay bars (Zeiss, JEOL) replace its bottom rows,
    so the image keeps the content's size.
    """
    spec = LAYOUTS[layout]
    rows, cols = content.shape
    bar_h = max(8, int(round(rows * rng.uniform(*spec.height))))
    below_h = int(round(rows * rng.uniform(*spec.below)))
    if spec.below[1] > 0 and spec.below[0] > 0:
        below_h = max(1, below_h)
    logo = layout.split("_")[0].upper() if layout.split("_")[0] in _VENDORS else "SEM"
    bar = _draw_bar(spec, cols - 2 * spec.inset, bar_h, rng, logo)
    if spec.append:
        img = np.vstack([content, np.zeros((bar_h + below_h, cols), np.uint8)])
        img[rows + bar_h:] = content[rows - below_h:] if below_h else img[rows + bar_h:]
    else:
        img = content.copy()
    total = img.shape[0]
    top = total - below_h - bar_h
    img[top: top + bar_h, spec.inset: cols - spec.inset] = bar
    if below_h and spec.below_border:
        img[top + bar_h:] = int(rng.integers(60, 200))
    return img, total - top


def _draw_bar(spec: _Layout, cols: int, rows: int, rng: np.random.Generator, logo: str) -> np.ndarray:
    bg, fg = int(rng.integers(*spec.bg, endpoint=True)), int(rng.integers(*spec.fg, endpoint=True))
    bar = np.full((rows, cols), bg, np.uint8)
    # boxes: flat panels of other levels at the right end, each up to a fifth of the width
    x = cols
    for lo, hi in spec.boxes:
        w = int(cols * rng.uniform(0.08, 0.2))
        level = int(rng.integers(lo, hi, endpoint=True))
        bar[1: rows - 1, x - w: x - 2] = level
        ink = 0 if level > 128 else 255
        _put_lines(bar[2: rows - 2], [logo if x == cols else f"{rng.choice([1, 2, 5, 10])} um"], x - w + 3, x - 5, ink)
        x -= w
    text_x0, text_x1 = int(cols * rng.uniform(0.22, 0.3)), x - 4
    _put_lines(bar[1: rows - 1], _text(spec.lines, rng), text_x0, text_x1, fg)
    # scale bar (left), a ruler with ticks for Hitachi/JEOL
    x0, length = max(3, int(cols * 0.02)), int(cols * rng.uniform(0.08, 0.16))
    y = int(rows * rng.uniform(0.6, 0.8))
    cv2.line(bar, (x0, y), (x0 + length, y), fg, max(1, rows // 14))
    if spec.ruler:
        for t in np.linspace(x0, x0 + length, 11):
            cv2.line(bar, (int(t), y - max(2, rows // 8)), (int(t), y), fg, 1)
    _put_lines(bar[: max(y - 2, 3)], [f"{rng.choice([1, 2, 5, 10, 20, 100, 200, 500])} um"],
               x0, x0 + max(length, int(cols * 0.12)), fg)
    if spec.cells:
        line = int(rng.integers(*spec.frame, endpoint=True)) if spec.frame else fg
        for cx in np.linspace(text_x0 - 4, text_x1, spec.cells + 1)[1:-1]:
            cv2.line(bar, (int(cx), 0), (int(cx), rows - 1), line, 1)
    if spec.frame:
        cv2.rectangle(bar, (0, 0), (cols - 1, rows - 1), int(rng.integers(*spec.frame, endpoint=True)), 1)
    return bar


def _text(lines: int, rng: np.random.Generator) -> list[str]:
    kv = float(rng.choice([1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0]))
    mag = int(rng.choice([500, 2000, 10000, 25000, 50000, 100000]))
    wd = rng.uniform(3, 15)
    day = f"{int(rng.integers(1, 29))} {_MONTHS[int(rng.integers(0, 12))]} {int(rng.integers(2005, 2026))}"
    det = str(rng.choice(["InLens", "SE2", "ETD", "TLD", "SE(U)", "BSE", "LEI"]))
    first = f"EHT = {kv:.2f} kV   WD = {wd:.1f} mm   Mag = {mag:,} x"
    second = f"Signal = {det}   Date: {day}   HFW = {rng.uniform(1, 300):.1f} um"
    return [first, second][:lines] if lines > 1 else [f"{kv:.1f}kV {wd:.1f}mm x{mag:,} {det} {day}"]


def gallery(sizes: Sequence[tuple[int, int]] = ((480, 640), (768, 1024)),
            kinds: Sequence[str] = CONTENT_KINDS, *, layouts: Sequence[str] | None = None,
            repeats: int = 1, bar_free: int = 2, seed: int = 0) -> Iterator[GalleryCase]:
    """Every layout on ``repeats`` images of every content kind and size, then ``bar_free``
    bar-free images per ``BAR_FREE_KINDS`` entry and size. Deterministic by ``seed``."""
    rng = np.random.default_rng(seed)
    for shape in sizes:
        for kind in kinds:
            for _ in range(repeats):
                content = content_image(kind, shape, rng)
                for name in layouts or LAYOUTS:
                    img, bar_rows = render_layout(content, name, rng)
                    yield GalleryCase(name, kind, img, bar_rows)
        for kind in BAR_FREE_KINDS:
            for _ in range(bar_free):
                yield GalleryCase(None, kind, content_image(kind, shape, rng), 0)


def bar_outcome(found: int, case: GalleryCase) -> str:
    """``"hit"`` (within 1% of the height, at least 2 rows), ``"cut"`` (image content removed:
    more rows than the bar, or any rows of a bar-free image) or ``"miss"`` (none or part of it)."""
    tol = max(2, round(0.01 * case.image.shape[0]))
    if found > case.bar_rows + (tol if case.bar_rows else 0):
        return "cut"
    return "hit" if case.bar_rows and abs(found - case.bar_rows) <= tol else "miss"
