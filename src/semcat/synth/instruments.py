"""Synthetic instruments: every category as seen by several microscopes, for leave-one-out tests.

Why: inside one lab a model is near perfect, but a category shot on a microscope the model never
saw is often missed (issue 20). An *instrument* here is a fixed acquisition style: detector
contrast (SE, BSE, in-lens), brightness/contrast/gamma, dose (shot noise), scan-line noise,
charging streaks, focus, magnification range and data-bar style. Styles are drawn from
``(seed, instrument)`` and each image's jitter from ``(seed, instrument, index)``, never from the
category, so a style cannot be a shortcut to the label. The last instrument is a *held-out*
style outside every training range (BSE, strong gamma, low dose, heavy streaks, higher
magnification).

Pixel sizes are physical: a category's structures have one size in nm (the sample's property:
:func:`semcat.synth.metadata.reference_field_m` spans ``min(shape)`` pixels at zoom 1), so a shot
at zoom ``z`` has the pixel size ``reference / (min(shape) x z)`` and a structure measures the
same in nm on every instrument. The pixel size is written where semcat reads it: the vendor tag
of a TIFF (Zeiss ``CZ_SEM`` for Zeiss-bar instruments, else FEI), as a real archive holds it.

Real categories (particles, films) span many sizes, which flatters nothing as much as scale
normalisation in a world where each has one: ``size_spread`` (``semcat synth --size-spread``)
multiplies each shot's structures by a factor drawn log-uniformly over that range (4 = a 4x range,
1/2 to 2x; 1 = off, the default and the images of before), the recorded pixel size unchanged.

Layout written by :func:`write_instrument_set`: ``DIR/<category>/<instrument>/<instrument>_NNN.tif``
(``--group-by folder`` makes the instrument the group), ``DIR/instruments.csv`` describing each
instrument and ``DIR/images.csv`` with each image's pixel size.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from semcat import CATEGORIES
from semcat._io import atomic_write_bytes, atomic_write_text
from semcat.synth._render import _check_shape, _draw_look, _Look, _quantise, _render
from semcat.synth.categories import _GENERATORS, _check_category
from semcat.synth.databar import render_databar
from semcat.synth.metadata import _metadata_tag, _Session, reference_field_m
from semcat.synth.writers import _encode

DETECTORS = ("SE", "BSE", "InLens")
_BAR_STYLES = ("zeiss", "fei", "white")


@dataclass(frozen=True)
class Instrument:
    """One microscope's acquisition style (the centre of each image's small jitter)."""

    name: str
    detector: str      # SE: shading + edges; BSE: material contrast, little topography; InLens: edges
    contrast: float
    brightness: float
    gamma: float
    dose: float        # electrons per pixel (shot noise ~ 1/sqrt(dose))
    line_noise: float  # std of line-to-line gain noise
    streaks: float     # charging streak amplitude along scan lines (0 = none)
    blur: float        # focus: beam blur sigma in pixels
    zoom_lo: float     # magnification range, as the renderer's zoom (>1 = bigger features, smaller pixels)
    zoom_hi: float
    bar_style: str
    held_out: bool = False


def draw_instruments(n: int, seed: int = 0) -> list[Instrument]:
    """``n`` instrument styles from ``seed``; the last one (n >= 2) is the held-out style."""
    if n < 1:
        raise ValueError(f"instruments must be >= 1, got {n!r}")
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 20, i])
        if n >= 2 and i == n - 1:
            out.append(_held_out(rng, f"inst{i}"))
            continue
        lo = float(np.exp(rng.uniform(math.log(0.6), math.log(1.0))))
        out.append(Instrument(
            name=f"inst{i}", detector=("SE", "InLens")[i % 2],
            contrast=float(rng.uniform(0.75, 1.1)), brightness=float(rng.uniform(-0.06, 0.06)),
            gamma=float(np.exp(rng.uniform(-0.25, 0.25))), dose=float(np.exp(rng.uniform(math.log(60), math.log(400)))),
            line_noise=float(rng.uniform(0.0, 0.02)), streaks=0.0, blur=float(rng.uniform(0.4, 1.0)),
            zoom_lo=lo, zoom_hi=lo * 1.5, bar_style=_BAR_STYLES[i % 3]))
    return out


def _held_out(rng: np.random.Generator, name: str) -> Instrument:
    """A style outside every training range: BSE, dark gamma, low dose, scan streaks, soft focus."""
    return Instrument(
        name=name, detector="BSE", contrast=float(rng.uniform(1.2, 1.35)), brightness=float(rng.uniform(-0.15, -0.1)),
        gamma=float(rng.uniform(1.6, 1.9)), dose=float(rng.uniform(10, 15)), line_noise=0.05,
        streaks=float(rng.uniform(0.25, 0.35)), blur=float(rng.uniform(1.4, 1.7)),
        zoom_lo=1.2, zoom_hi=1.7, bar_style="white", held_out=True)


def _image_look(inst: Instrument, rng: np.random.Generator) -> _Look:
    """The renderer's look for one shot: the instrument plus small jitter."""
    base = _draw_look(rng)  # layout-only draws (variant, light) stay random per shot
    zoom = float(np.exp(rng.uniform(math.log(inst.zoom_lo), math.log(inst.zoom_hi))))
    detector = {"SE": dict(shade=0.6, tilt=0.5, edge=0.8), "InLens": dict(shade=0.1, tilt=1.0, edge=1.5),
                "BSE": dict(shade=0.05, tilt=0.05, edge=0.1)}[inst.detector]
    j = rng.uniform(0.95, 1.05, 4)
    look = replace(base, zoom=zoom, contrast=inst.contrast * j[0], brightness=inst.brightness + 0.02 * (j[1] - 1),
                   black=0.03, gamma=inst.gamma * j[2], dose=inst.dose * j[3], blur=inst.blur, jitter=0.2,
                   glow=0.0, **detector)
    return look


def pixel_size_nm(category: str, zoom: float, shape: tuple[int, int]) -> float:
    """A shot's pixel size: the category's reference field spans ``min(shape) x zoom`` pixels."""
    return reference_field_m(_check_category(category)) * 1e9 / (min(shape) * zoom)


def render_instrument_image(category: str, inst: Instrument, rng: np.random.Generator, size: int = 256,
                            size_factor: float = 1.0) -> tuple[np.ndarray, float]:
    """One ``uint8`` image of ``category`` as ``inst`` sees it, and its pixel size in nm.

    ``rng`` drives both the specimen and the shot's jitter; callers seed it without the category
    (see :func:`write_instrument_set`) so the style draws are the same for every category.
    ``size_factor``: the specimen's structures that many times their category's physical size.
    """
    shape = _check_shape(size, None)
    style_rng = np.random.default_rng(rng.integers(0, 2**63))
    look = _image_look(inst, style_rng)
    pixel_nm = pixel_size_nm(category, look.zoom, shape)
    h, mat = _GENERATORS[_check_category(category)](rng, replace(look, zoom=look.zoom * size_factor), shape)
    if inst.detector == "BSE":  # backscatter: material (atomic number) contrast, topography damped
        h = h * np.float32(0.15)
        mat = 1.0 + 3.0 * (mat - 1.0) + 0.25 * np.tanh(h / 8.0)
    img = _render(h.astype(np.float32), mat.astype(np.float32), look, style_rng)
    img = _scan_artefacts(img, inst, style_rng)
    return _quantise(img, 8), pixel_nm


def _scan_artefacts(img: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """Line-to-line gain noise and charging streaks (bright tails along scan lines after bright spots)."""
    rows, cols = img.shape
    img = img + rng.normal(0, inst.line_noise, (rows, 1)).astype(np.float32)
    if inst.streaks:
        bright = (img > np.quantile(img[::4, ::4], 0.9)).astype(np.float32)
        tail = cv2.filter2D(bright, -1, np.exp(-np.arange(cols // 4, dtype=np.float32) / (cols / 16))[None, ::-1],
                            anchor=(cols // 4 - 1, 0), borderType=cv2.BORDER_CONSTANT)
        rows_hit = (rng.random((rows, 1)) < 0.3).astype(np.float32)
        img = img + inst.streaks * rows_hit * tail / max(float(tail.max()), 1e-6)
    return np.clip(img, 0, 1).astype(np.float32)


def write_instrument_set(
    out: str | Path,
    *,
    instruments: int = 4,
    per_class: int = 20,
    size: int = 256,
    seed: int = 0,
    databar: bool = False,
    categories: Sequence[str] = CATEGORIES,
    size_spread: float = 1.0,
) -> dict[str, int]:
    """Write ``per_class`` images of each category per instrument; returns {instrument: written}.

    Image ``k`` of an instrument uses the generator ``(seed, instrument, k)`` for every category:
    the same jitter draws whatever the label (the pixel size follows from the drawn zoom and the
    category's physical scale). ``size_spread`` > 1: each shot's structures scaled by a factor
    drawn log-uniformly over that range around 1 (``images.csv`` column ``size_factor``).
    Existing files are kept (resumable).
    """
    if not (np.isfinite(size_spread) and size_spread >= 1):
        raise ValueError(f"size_spread must be >= 1 (1 = each category one physical size); got {size_spread!r}")
    out = Path(out)
    insts = draw_instruments(instruments, seed)
    written = {inst.name: 0 for inst in insts}
    rows = ["path,category,instrument,pixel_nm" + (",size_factor" if size_spread > 1 else "")]
    for inst_i, inst in enumerate(insts):
        for cat in categories:
            folder = out / _check_category(cat) / inst.name
            for k in range(per_class):
                path = folder / f"{inst.name}_{k:03d}.tif"
                zoom = _image_look(inst, np.random.default_rng(
                    np.random.default_rng([seed, 21, inst_i, k]).integers(0, 2**63))).zoom
                pixel_nm = pixel_size_nm(cat, zoom, (size, size))
                factor = _size_factor(size_spread, [seed, 23, inst_i, k])
                rows.append(f"{path.relative_to(out).as_posix()},{cat},{inst.name},{pixel_nm:.6g}"
                            + (f",{factor:.4g}" if size_spread > 1 else ""))
                if path.exists():
                    continue
                img, _ = render_instrument_image(cat, inst, np.random.default_rng([seed, 21, inst_i, k]), size, factor)
                tag = _vendor_tag(inst, inst_i, pixel_nm, img.shape)
                if databar:
                    bar = render_databar(img.shape[1], max(12, img.shape[0] // 12),
                                         np.random.default_rng([seed, 22, inst_i, k]), style=inst.bar_style)
                    img = np.vstack([img, _quantise(bar, 8)])
                atomic_write_bytes(path, _encode(img, "tif", tag))
                written[inst.name] += 1
    atomic_write_text(out / "instruments.csv", _instruments_csv(insts))
    atomic_write_text(out / "images.csv", "\n".join(rows) + "\n")
    return written


def _size_factor(spread: float, seed: list[int]) -> float:
    """A shot's structure-size factor, log-uniform over ``spread`` around 1 (1: none, nothing drawn)."""
    if spread <= 1:
        return 1.0
    half = math.log(spread) / 2
    return float(np.exp(np.random.default_rng(seed).uniform(-half, half)))


def _vendor_tag(inst: Instrument, inst_i: int, pixel_nm: float, shape: tuple[int, int]) -> tuple[int, str]:
    """The instrument's vendor tag recording ``pixel_nm`` for a scan of ``shape`` (bar not counted)."""
    session = _Session(zeiss=inst.bar_style == "zeiss", field_width_m=pixel_nm * 1e-9 * shape[1],
                       high_voltage_v=5e3, working_distance_m=5e-3, detector=inst_i % 3, instrument=inst_i % 3,
                       start=datetime(2020, 1, 6, 9))
    return _metadata_tag(session, 0, shape)


def _instruments_csv(insts: Sequence[Instrument]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(asdict(insts[0])), lineterminator="\n")
    w.writeheader()
    w.writerows(asdict(i) for i in insts)
    return buf.getvalue()
