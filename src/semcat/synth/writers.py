"""Write labelled sets to disk: the category dataset, the nanowire alignment set, the blend set.

Why: tests, demos and benchmarks need folders that look like a facility archive. Every image is
seeded from ``(seed, set, index)`` so adding images never changes existing ones; existing files
are skipped (an interrupted run resumes) and every write is atomic.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from semcat import CATEGORIES
from semcat._io import atomic_write, atomic_write_bytes
from semcat.synth._render import Shape, _check_shape, _draw_look, _quantise
from semcat.synth.categories import _check_category
from semcat.synth.generate import blend, generate_image
from semcat.synth.metadata import _draw_session, _metadata_tag, _set_tag
from semcat.synth.nanowires import _nanowire_image

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


def _check_format(fmt: str, bit_depth: int) -> str:
    """Normalised format name; refuses unknown formats, bad bit depths and 16-bit JPEG."""
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


def _write_truth(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Atomically write the ground-truth CSV of a set; returns ``path``."""
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
