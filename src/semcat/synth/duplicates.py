"""Near-duplicate sets: one field of view written as re-saves, crops, re-scans and other bars.

Why: the near-duplicate finder (``semcat.duplicates``) needs ground truth to calibrate and test
its thresholds. Each *field* is one rendered specimen area; its variants are what an archive
really holds of the same area (the file re-saved as JPEG, the image cropped, the area scanned
again with new noise and a slightly moved stage, the same pixels with another data bar). Each
field also has a *sibling*: another area of the same sample, taken with the same look, which
must never be merged with it (the hard negative; for Tips, whose sample is a single tip that
every shot shows, the sibling is another tip).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from semcat import CATEGORIES
from semcat._io import atomic_write_bytes
from semcat.synth._render import _draw_look, _quantise, _render
from semcat.synth.categories import _GENERATORS
from semcat.synth.databar import _with_databar

VARIANTS = ("original", "resave", "rebar", "crop", "rescan", "sibling")
"""What each field is written as; all but ``sibling`` are duplicates of ``original``."""

_MARGIN = 0.12
"""Share of the side rendered beyond the image, so a re-scan can move the stage."""


def duplicate_variants(category: str, seed: int | list[int], size: int = 256) -> dict[str, np.ndarray]:
    """The ``VARIANTS`` of one field of ``category`` as uint8 images (name → image).

    ``original``, ``rebar`` and ``rescan`` carry a data bar; ``crop`` is 80-90 % of the side
    of the original's image area (smaller, no bar); ``resave`` is the original's pixels (the
    writer encodes it as JPEG).
    """
    rng = np.random.default_rng(seed)
    full = int(round(size * (1 + _MARGIN)))
    look = _draw_look(rng)
    gen = _GENERATORS[category]
    h, mat = gen(rng, look, (full, full))
    # the sibling: same sample and look, another area (a Tips sample is one tip: another tip)
    look2 = _draw_look(rng) if category == "Tips" else look
    h2, mat2 = gen(rng, look2, (full, full))
    img = _render(h, mat, look, rng)
    m = full - size
    r0, c0 = m // 2, m // 2
    bar = np.random.default_rng([*np.atleast_1d(seed).tolist(), 1])
    original = _quantise(_with_databar(img[r0:r0 + size, c0:c0 + size], bar), 8)
    side = int(round(size * rng.uniform(0.8, 0.9)))
    cr, cc = (int(v) for v in rng.integers(0, size - side + 1, 2))
    moved = dataclasses.replace(look, brightness=look.brightness + float(rng.uniform(-0.03, 0.03)),
                                contrast=look.contrast * float(rng.uniform(0.93, 1.07)))
    again = _render(h, mat, moved, rng)
    dr, dc = (int(v) for v in rng.integers(0, m + 1, 2))
    other_bar = np.random.default_rng([*np.atleast_1d(seed).tolist(), 2])
    return {
        "original": original,
        "resave": original.copy(),
        "rebar": _quantise(_with_databar(img[r0:r0 + size, c0:c0 + size], other_bar), 8),
        "crop": original[cr:cr + side, cc:cc + side].copy(),
        "rescan": _quantise(_with_databar(again[dr:dr + size, dc:dc + size], bar), 8),
        "sibling": _quantise(_with_databar(_render(h2, mat2, look2, rng)[r0:r0 + size, c0:c0 + size], bar), 8),
    }


def write_duplicate_set(out_dir: str | Path, *, fields: int = 20, size: int = 256, seed: int = 0) -> Path:
    """Write ``fields`` fields (categories in turn) with their variants, plus ``truth.csv``.

    Files are ``field_NNNN_<variant>.tif`` (``resave`` as ``.jpg``); ``truth.csv`` has columns
    ``file, field, variant, category``, where a sibling's ``field`` is its own (``NNNNs``).
    Existing files are kept; writes are atomic. Returns the path of ``truth.csv``.
    """
    from semcat.synth.writers import _encode, _write_truth

    out = Path(out_dir)
    rows = []
    for i in range(fields):
        cat = CATEGORIES[i % len(CATEGORIES)]
        names = {v: f"field_{i:04d}_{v}{'.jpg' if v == 'resave' else '.tif'}" for v in VARIANTS}
        if not all((out / n).exists() for n in names.values()):
            for v, img in duplicate_variants(cat, [seed, 102, i], size).items():
                atomic_write_bytes(out / names[v], _encode(img, "jpg" if v == "resave" else "tif"))
        rows.extend((names[v], f"{i:04d}s" if v == "sibling" else f"{i:04d}", v, cat) for v in VARIANTS)
    return _write_truth(out / "truth.csv", ("file", "field", "variant", "category"), rows)


def score_groups(groups: list[list[str]], truth_csv: str | Path) -> dict:
    """How well duplicate ``groups`` (lists of paths) match a :func:`write_duplicate_set` truth.

    Returns ``recall`` per variant (share of fields whose variant shares a group with its
    original) and over all variants, and ``false_merges``: groups holding two different fields.
    """
    import csv

    truth = Path(truth_csv)
    rows = list(csv.DictReader(truth.open(newline="")))
    group_of = {Path(p).name: k for k, g in enumerate(groups) for p in g}
    original = {r["field"]: group_of.get(r["file"]) for r in rows if r["variant"] == "original"}
    found: dict[str, list[bool]] = {v: [] for v in VARIANTS if v not in ("original", "sibling")}
    for r in rows:
        if r["variant"] in found:
            g = group_of.get(r["file"])
            found[r["variant"]].append(g is not None and g == original[r["field"]])
    field_of = {r["file"]: r["field"] for r in rows}
    false_merges = sum(1 for g in groups if len({field_of.get(Path(p).name, p) for p in g}) > 1)
    hits = [x for v in found.values() for x in v]
    return {"recall": {v: sum(x) / max(len(x), 1) for v, x in found.items()},
            "recall_all": sum(hits) / max(len(hits), 1), "false_merges": false_merges, "groups": len(groups)}
