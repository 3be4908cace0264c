"""Instrument data bars (Zeiss, FEI, JEOL-like info strips) burnt in below the image.

Why: real archives are full of them and the classifier must learn to ignore them; the text is
random but plausible (kV, WD, magnification, date, scale bar).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

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


def _with_databar(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` with a data bar of ~8 % of its height (at least 10 rows) appended below."""
    rows, cols = img.shape
    return np.vstack([img, render_databar(cols, max(10, int(round(rows * 0.08))), rng)])
