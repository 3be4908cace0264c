"""Exact, near and feature-similar duplicates, merged into groups.

Why: archives hold the same field re-saved, re-scanned, cropped or with another data bar. With a
random split such twins land on both sides of train/test and inflate accuracy, and a reviewer
labels the same thing twice. Three ways to propose a pair, each cheap where another is blind:

- exact: the same content hash (SHA-256 of the bytes), taken as is;
- near: perceptual hashes (DCT of the bar-cropped image at 32x32) within ``PHASH_MAX_DISTANCE``
  bits: re-saves, re-encodes, another data bar;
- feature-similar: cosine of the backbone features at least ``FEATURE_MIN_COSINE``: crops and
  re-scans.

A proposed near or feature pair is kept only when the pixels agree: the centre of one image,
found in the other by normalised cross-correlation at a common pixel scale, scores at least
``ALIGN_MIN_NCC``. Features alone cannot separate a crop from another field of the same sample
(their cosines overlap), the pixels can. Thresholds come from ``benchmarks/duplicates.py`` on
``semcat.synth.duplicates`` sets. Kept pairs are joined by union-find: a group is a connected set.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from semcat.catalog.similar import _normalise

__all__ = ["ALIGN_MIN_NCC", "FEATURE_MIN_COSINE", "PHASH_MAX_DISTANCE", "DuplicateScan", "alignment_score", "catalog_duplicates",
           "exact_pairs", "load_thumb", "feature_pairs", "find_groups", "group_pairs", "near_pairs", "perceptual_hash",
           "phash_bytes", "phash_file", "scan_duplicates"]

PHASH_MAX_DISTANCE = 12
"""Largest Hamming distance (of 64 bits) between perceptual hashes proposed as a pair."""
FEATURE_MIN_COSINE = 0.80
"""Smallest feature cosine proposed as a pair (crops of the synthetic set reach down to ~0.83)."""
ALIGN_MIN_NCC = 0.6
"""Smallest centre-matching correlation that confirms a proposed pair (on the synthetic set:
re-scans and crops >= 0.66, 98 % above 0.85; other fields of the same sample <= 0.45)."""
_ALIGN_SIDE = 128
"""Pixels on the longer side of the larger image when matching (both at one scale)."""
_ALIGN_HIGHPASS = 4.0
"""Sigma (pixels at ``_ALIGN_SIDE``) of the blur subtracted before matching: shading and uneven
illumination, which other shots of the same session share, no longer count as agreement."""

_BLOCK_CELLS = 1 << 22
"""Pairs compared per block (rows x all images): ~32 MB of uint64 or float32 at a time."""


def _block(n: int) -> int:
    return max(1, _BLOCK_CELLS // max(n, 1))


def perceptual_hash(img: np.ndarray) -> int:
    """64-bit DCT hash of a 2-D gray image: the signs of its lowest 8x8 frequencies (DC left out)
    against their median, so brightness, contrast, noise and re-encoding barely change it."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim != 2 or min(a.shape) < 8:
        raise ValueError(f"perceptual_hash needs a 2-D image of at least 8x8 pixels; got shape {a.shape}")
    small = cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()[1:]
    bits = low > np.median(low)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


PHash = tuple[int, int]
"""Perceptual hashes of an image with its data bar cropped and of the whole image: a pair is
proposed when either pair of hashes is close, so a bar found in one copy and missed in the
other (bar detection on a JPEG re-save) still matches."""


def phash_bytes(data: bytes, name: str | Path = "<bytes>") -> PHash:
    """:data:`PHash` of an image file's bytes (``ImageReadError`` if unreadable)."""
    from semcat.images import read_cropped_and_whole

    cropped, whole = read_cropped_and_whole(data, name, max_side=256)
    return perceptual_hash(cropped), perceptual_hash(whole)


def phash_file(path: str | Path) -> PHash:
    """:data:`PHash` of an image file (``ImageReadError`` if unreadable)."""
    from semcat.images import read_file_bytes

    return phash_bytes(read_file_bytes(path), path)


def near_pairs(hashes: Sequence[int | None], max_distance: int = PHASH_MAX_DISTANCE) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose perceptual hashes differ in at most ``max_distance``
    bits (None = no hash). Blockwise XOR + popcount over all pairs (O(N²), vectorised)."""
    idx = np.array([i for i, h in enumerate(hashes) if h is not None], dtype=np.int64)
    if len(idx) < 2:
        return []
    h = np.array([hashes[i] for i in idx], dtype=np.uint64)
    out: list[tuple[int, int]] = []
    step = _block(len(h))
    for start in range(0, len(h), step):
        d = np.bitwise_count(h[start:start + step, None] ^ h[None, :])
        rows, cols = np.nonzero(d <= max_distance)
        keep = cols > rows + start
        out.extend(zip(idx[rows[keep] + start].tolist(), idx[cols[keep]].tolist()))
    return out


def feature_pairs(features: np.ndarray, min_cosine: float = FEATURE_MIN_COSINE) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose feature vectors have cosine >= ``min_cosine``."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (images x dimensions); got shape {x.shape}")
    x = _normalise(x)
    out: list[tuple[int, int]] = []
    step = _block(len(x))
    for start in range(0, len(x), step):
        rows, cols = np.nonzero(x[start:start + step] @ x.T >= min_cosine)
        keep = cols > rows + start
        out.extend(zip((rows[keep] + start).tolist(), cols[keep].tolist()))
    return out


def group_pairs(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected sets of ``range(n)`` under ``pairs`` with two or more members, each sorted,
    ordered by their first member."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def exact_pairs(shas: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs linking every image to the first one with the same content hash."""
    first: dict[str, int] = {}
    out = []
    for i, s in enumerate(shas):
        j = first.setdefault(s, i)
        if j != i:
            out.append((j, i))
    return out


Thumb = tuple[np.ndarray, float]
"""A bar-cropped gray image and its scale (its columns / the file's columns)."""


def load_thumb(path: str | Path) -> Thumb:
    """What :func:`alignment_score` compares: the bar-cropped image (at most 512 px) and its scale."""
    from semcat.images import read_image

    img, info = read_image(path, crop_databar=True, max_side=512)
    return img, img.shape[1] / info.shape[1]


def alignment_score(a: Thumb, b: Thumb) -> float:
    """How well the centre (60 % of each side) of the smaller image is found in the larger one:
    the best normalised cross-correlation, both brought to one pixel scale (the larger image at
    ``_ALIGN_SIDE`` px) and band-passed (noise and shading removed). Near 1 for the same field re-saved, cropped or
    re-scanned (shifted, new noise); well below for another field. Assumes the same pixel size."""
    (ia, sa), (ib, sb) = a, b
    if ia.shape[0] * ia.shape[1] / sa**2 > ib.shape[0] * ib.shape[1] / sb**2:
        (ia, sa), (ib, sb) = (ib, sb), (ia, sa)
    f = _ALIGN_SIDE / (max(ib.shape) / sb)  # target pixels per file pixel

    def at_scale(img: np.ndarray, scale: float) -> np.ndarray:
        k = f / scale
        size = (max(8, round(img.shape[1] * k)), max(8, round(img.shape[0] * k)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (0, 0), 1.0) - cv2.GaussianBlur(small, (0, 0), _ALIGN_HIGHPASS)

    small, large = at_scale(ia, sa), at_scale(ib, sb)
    th, tw = min(int(small.shape[0] * 0.6), large.shape[0]), min(int(small.shape[1] * 0.6), large.shape[1])
    r0, c0 = (small.shape[0] - th) // 2, (small.shape[1] - tw) // 2
    score = cv2.matchTemplate(large, small[r0:r0 + th, c0:c0 + tw], cv2.TM_CCOEFF_NORMED)
    return float(np.nan_to_num(score).max())


def find_groups(
    shas: Sequence[str],
    phashes: Sequence[PHash | None],
    features: np.ndarray | None,
    thumb: Callable[[int], Thumb | None],
    *,
    max_distance: int = PHASH_MAX_DISTANCE,
    min_cosine: float = FEATURE_MIN_COSINE,
    min_ncc: float = ALIGN_MIN_NCC,
) -> list[list[int]]:
    """Duplicate groups (indices) from exact hashes, perceptual hashes and features (rows in the
    order of ``shas``; None to skip), near and feature pairs confirmed by :func:`alignment_score`.

    ``thumb(i)`` loads image ``i`` for the check (called at most once per image; None = cannot,
    and the pair is dropped).
    """
    proposed = {p for k in (0, 1) for p in near_pairs([h and h[k] for h in phashes], max_distance)}
    if features is not None and len(features):
        proposed.update(feature_pairs(features, min_cosine))
    exact = exact_pairs(shas)
    cached = lru_cache(maxsize=1024)(thumb)  # pairs come sorted: most reuse is recent
    kept = []
    for i, j in sorted(proposed):
        if shas[i] == shas[j]:
            continue
        a, b = cached(i), cached(j)
        if a is not None and b is not None and alignment_score(a, b) >= min_ncc:
            kept.append((i, j))
    return group_pairs(len(shas), exact + kept)


@dataclass
class DuplicateScan:
    """What :func:`scan_duplicates` found: groups of paths and the files it could not read."""

    paths: list[str]
    shas: list[str]
    groups: list[list[int]]  # indices into ``paths``
    errors: list[tuple[str, str]] = field(default_factory=list)
    all_paths: list[list[str]] | None = None  # every path of each image (catalog scans)

    def path_groups(self) -> list[list[str]]:
        """Each group as its list of paths (what ``semcat duplicates --format json`` prints)."""
        if self.all_paths is None:
            return [[self.paths[i] for i in g] for g in self.groups]
        return [[p for i in g for p in self.all_paths[i]] for g in self.groups]


def scan_duplicates(
    inputs: str | Path | Iterable[str | Path],
    *,
    features: bool = True,
    backbone: str | None = None,
    max_distance: int = PHASH_MAX_DISTANCE,
    min_cosine: float = FEATURE_MIN_COSINE,
    min_ncc: float = ALIGN_MIN_NCC,
    progress: bool = False,
) -> DuplicateScan:
    """Duplicate groups among image files (folders searched recursively).

    ``features``: also compare backbone features (cached in the default ``FeatureStore``), which
    finds crops and re-scans; without it only exact and near duplicates are found. A file that
    cannot be read is listed in ``errors`` and left out; the others are still grouped.
    """
    from semcat._io import iter_image_files, sha256_file
    from semcat.errors import ImageReadError

    files = list(iter_image_files([inputs] if isinstance(inputs, (str, Path)) else inputs))

    def one(path: Path) -> tuple[str, PHash] | str:
        try:
            return sha256_file(path), phash_file(path)
        except ImageReadError as e:
            return e.problem
        except OSError as e:
            return f"cannot read the file: {e.strerror or e}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, files))
    errors = [(str(p), r) for p, r in zip(files, results) if isinstance(r, str)]
    ok = [(p, r) for p, r in zip(files, results) if not isinstance(r, str)]
    paths = [str(p) for p, _ in ok]
    shas = [r[0] for _, r in ok]
    feats = None
    if features and paths:
        from semcat.features import DEFAULT_BACKBONE, extract_features

        res = extract_features(paths, backbone or DEFAULT_BACKBONE, progress=progress)
        errors += res.errors
        feats = np.zeros((len(paths), res.features.shape[1]), np.float32)  # unreadable rows stay 0
        row = {p: i for i, p in enumerate(paths)}
        feats[[row[str(p)] for p in res.paths]] = res.features
    groups = find_groups(shas, [r[1] for _, r in ok], feats, lambda i: try_thumb(paths[i]),
                         max_distance=max_distance, min_cosine=min_cosine, min_ncc=min_ncc)
    return DuplicateScan(paths, shas, groups, errors)


def try_thumb(path: str | Path) -> Thumb | None:
    """:func:`load_thumb`, or None when the file cannot be read (the pair is then dropped)."""
    from semcat.errors import ImageReadError

    try:
        return load_thumb(path)
    except (ImageReadError, OSError):
        return None


def catalog_duplicates(
    cat,  # semcat.catalog.Catalog
    *,
    features: bool = True,
    max_distance: int = PHASH_MAX_DISTANCE,
    min_cosine: float = FEATURE_MIN_COSINE,
    min_ncc: float = ALIGN_MIN_NCC,
    store: bool = True,
) -> DuplicateScan:
    """Duplicate groups among catalogued images, stored in the catalog unless ``store=False``.

    Perceptual hashes and pixel checks read each image's existing file; features are the ones
    stored at ingest (``--model``). ``paths`` of the result holds one path per image; a group of
    :meth:`DuplicateScan.path_groups` lists every known path of its images, and an image
    catalogued under several paths (byte-identical copies) is a group on its own.
    """
    from semcat.errors import ImageReadError

    errors: list[tuple[str, str]] = []
    items = []  # (record, phash)
    for r in cat.iter_records():
        if r.path is None:
            errors.append((r.paths[0] if r.paths else r.sha256, "no catalogued file of this image exists any more"))
            continue
        try:
            items.append((r, phash_file(r.path)))
        except ImageReadError as e:
            errors.append((r.path, e.problem))
    shas = [r.sha256 for r, _ in items]
    feats = None
    if features and shas:
        have, matrix = cat.features(shas)
        if len(have):
            feats = np.zeros((len(shas), matrix.shape[1]), np.float32)
            row = {s: i for i, s in enumerate(shas)}
            feats[[row[s] for s in have]] = matrix
    groups = find_groups(shas, [h for _, h in items], feats, lambda i: try_thumb(items[i][0].path),
                         max_distance=max_distance, min_cosine=min_cosine, min_ncc=min_ncc)
    if store:
        cat.set_duplicate_groups([[shas[i] for i in g] for g in groups])
    grouped = {i for g in groups for i in g}
    groups += [[i] for i, (r, _) in enumerate(items) if len(r.paths) > 1 and i not in grouped]
    return DuplicateScan([r.path for r, _ in items], shas, sorted(groups, key=lambda g: g[0]), errors,
                         [list(r.paths) for r, _ in items])
