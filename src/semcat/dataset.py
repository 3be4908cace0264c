"""Labelled image folders: scan, hash, and split train/val/test by content hash.

Why content hashes: the split of an image depends only on its bytes (or on its sample group),
so it never changes when other images are added or files are renamed, and exact duplicates can
never leak between training and test. ``group_by`` keeps all shots of one sample on one side,
because near-identical images of one specimen in train and test inflate accuracy.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from semcat._io import IMAGE_SUFFIXES, iter_image_files, read_regular_bytes, sha256_bytes, sha256_file

if TYPE_CHECKING:
    from semcat.duplicates import PHash

__all__ = ["META_GROUPS", "SPLITS", "Dataset", "Sample", "assign_split", "check_fractions", "scan_dataset"]

SPLITS: tuple[str, str, str] = ("train", "val", "test")
META_GROUPS: tuple[str, ...] = ("meta:instrument", "meta:detector", "meta:magnification")
"""``group_by`` values read from each file's SEM metadata (vendor TIFF tags): the instrument, the
detector, or the magnification's decade (``1000-10000x``). Why (issue 20): leaving one instrument,
detector or magnification band out is what a facility meets with a new microscope, and archives
rarely sort files by instrument. A file without that field is left ungrouped."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``label`` is its first-level folder, ``subcategory`` any folders below."""

    path: Path
    label: str
    sha256: str
    split: str
    group: str | None
    subcategory: str | None = None


@dataclass
class Dataset:
    """What :func:`scan_dataset` found: samples, skipped files with reasons, and warnings."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    errors: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    group_by: str | None = None
    near_links: list[tuple[str, str]] = field(default_factory=list)
    """Content-hash pairs found to be near duplicates (their split keys were merged)."""
    near_groups: int = 0
    """How many near-duplicate groups were merged into one split key each."""

    def split(self, name: str) -> list[Sample]:
        """Samples of one split (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{class: {"total", "train", "val", "test", "groups"}}`` in class order."""
        out = {c: {"total": 0, **{s: 0 for s in SPLITS}, "groups": 0} for c in self.classes}
        groups: dict[str, set[str]] = defaultdict(set)
        for s in self.samples:
            row = out[s.label]
            row["total"] += 1
            row[s.split] += 1
            if s.group is not None:
                groups[s.label].add(s.group)
        for c, g in groups.items():
            out[c]["groups"] = len(g)
        return out

    def to_dict(self) -> dict:
        """JSON-safe summary (what ``semcat dataset summary --json`` prints)."""
        counts = self.counts()
        return {
            "root": str(self.root),
            "fractions": list(self.fractions),
            "group_by": self.group_by,
            "classes": counts,
            "total": {k: sum(row[k] for row in counts.values()) for k in ("total", *SPLITS)},
            "near_duplicate_groups_merged": self.near_groups,
            "errors": [{"path": p, "problem": e} for p, e in self.errors],
            "warnings": list(self.warnings),
        }


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three numbers >= 0 that sum to 1."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or any(not math.isfinite(f) or f < 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(
            "fractions must be three numbers >= 0 for train, val, test that sum to 1, "
            f"e.g. (0.8, 0.1, 0.1); got {tuple(fractions)!r}"
        )
    return values  # type: ignore[return-value]


def assign_split(key: str, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for ``key`` (a content hash or a group name).

    The first 64 bits of SHA-256(key) give a uniform number in [0, 1) that is compared with the
    cumulative fractions: the answer depends on the key alone, never on the other images.

    >>> assign_split("abc") in SPLITS
    True
    >>> assign_split("abc", (0.0, 0.0, 1.0))
    'test'
    """
    train, val, _ = check_fractions(fractions)
    u = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    if u < train:
        return "train"
    return "val" if u < train + val else "test"


def scan_dataset(
    root: str | Path,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    group_by: str | None = None,
    check_images: bool = False,
    near_duplicates: bool = True,
    progress: bool = False,
    workers: int | None = None,
) -> Dataset:
    """Scan ``root/<class>/[sub/folders/]image`` files, hash them and assign splits.

    Parameters
    ----------
    root : folder whose first-level sub-folders are the classes (hidden entries are ignored).
    fractions : (train, val, test) shares, summing to 1.
    group_by : ``None`` (each image on its own), ``"folder"`` (the sub-folder path below the class
        is the sample), one of :data:`META_GROUPS` (the file's SEM metadata) or a regular
        expression with one capture group applied to the file name, e.g. ``'^([^_]+_[^_]+)_'``. Images of one group share a split; files that are exact
        duplicates always share a split too, even across groups.
    check_images : also decode each file (``semcat.images.read_image_bytes``) and list the ones
        that are not readable images, instead of finding out later.
    near_duplicates : decode each file (bar cropped) for its perceptual hash and keep near
        duplicates (``semcat.duplicates.find_groups`` without features) in one split, like exact
        ones; implies ``check_images``.
    progress : show a progress bar on stderr while hashing.

    Returns
    -------
    Dataset with ``samples`` sorted by class then path, ``errors`` as ``(path, problem)`` and
    ``warnings`` about groups and lopsided splits.
    """
    fractions = check_fractions(fractions)
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset root must be a folder of category sub-folders, got {str(root)!r} "
                         f"({'not found' if not root.exists() else 'not a folder'})")
    pattern = group_pattern(group_by)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    errors: list[tuple[str, str]] = []
    for p in sorted(root.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES:
            errors.append((str(p), "not inside a category folder: move it into ROOT/<category>/"))
    if not class_dirs:
        raise ValueError(f"found no category sub-folders in {root}: expected {root}/<category>/<images>")

    found = [(path, d.name) for d in class_dirs for path in iter_image_files([d])]
    meta_field = group_by.removeprefix("meta:") if group_by in META_GROUPS else None
    hashes = _hash_all([p for p, _ in found], check_images or near_duplicates, near_duplicates, progress, workers,
                       meta_field)

    raw: list[tuple[Path, str, str, str | None, str | None]] = []
    phashes: list[PHash | None] = []
    for (path, label), (digest, problem, phash, meta_group) in zip(found, hashes):
        if problem is not None:
            errors.append((str(path), problem))
            continue
        sub = path.parent.relative_to(root / label).as_posix()
        sub = None if sub == "." else sub
        group = meta_group if meta_field else _group_of(path, sub, group_by, pattern)
        raw.append((path, label, digest, sub, group))
        phashes.append(phash)

    links = _near_links([r[0] for r in raw], [r[2] for r in raw], phashes) if near_duplicates else []
    keys = _split_keys([(digest, group) for _, _, digest, _, group in raw], links)
    samples = [
        Sample(path, label, digest, assign_split(key, fractions), group, sub)
        for (path, label, digest, sub, group), key in zip(raw, keys)
    ]
    ds = Dataset(root, [d.name for d in class_dirs], samples, errors, [], fractions, group_by, links,
                 _count_groups(links))
    ds.warnings.extend(_warnings(ds))
    ds.classes = [c for c in ds.classes if any(s.label == c for s in samples)]
    return ds


# ---------------------------------------------------------------- helpers


def group_pattern(group_by: str | None) -> re.Pattern[str] | None:
    """The compiled ``group_by`` regex (None for no grouping, ``'folder'`` or :data:`META_GROUPS`);
    ValueError when it is not a regex with a capture group (the CLI checks it before scanning: a
    usage error)."""
    if group_by is None or group_by == "folder" or group_by in META_GROUPS:
        return None
    if group_by.startswith("meta:"):
        raise ValueError(f"group_by {group_by!r}: SEM metadata groups are {', '.join(META_GROUPS)}")
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        raise ValueError(f"group_by must be 'folder' or a regular expression, got {group_by!r} ({exc})") from None
    if pattern.groups < 1:
        raise ValueError(
            f"group_by regex must have one capture group around the sample name, e.g. "
            f"'^([^_]+_[^_]+)_'; got {group_by!r} with none"
        )
    return pattern


def _group_of(path: Path, sub: str | None, group_by: str | None, pattern: re.Pattern[str] | None) -> str | None:
    if group_by is None:
        return None
    if pattern is None:  # "folder"
        return sub
    m = pattern.search(path.name)
    return m.group(1) if m and m.group(1) else None


def _meta_group(path: Path, field: str) -> str | None:
    """The file's instrument, detector or magnification decade from its vendor TIFF tags, or None
    (no such tag, or tags that cannot be parsed: the file is then ungrouped, never a failed scan)."""
    from semcat.semmeta import read_sem_metadata

    try:
        meta = read_sem_metadata(path)
    except Exception:  # malformed vendor tags are data: they leave the file ungrouped, the scan goes on
        return None
    value = getattr(meta, field, None) if meta is not None else None
    if field == "magnification":
        if not value or not math.isfinite(value) or value <= 0:
            return None
        low = 10 ** math.floor(math.log10(value))
        return f"{low:g}-{10 * low:g}x"
    text = str(value).strip() if value is not None else ""
    return text or None


def _hash_one(path: Path, check: bool, phash: bool) -> tuple[str, str | None, PHash | None]:
    """(sha256, None, perceptual hash or None) or ("", problem, None) for one file."""
    try:
        if os.path.getsize(path) == 0:
            return "", "empty file (0 bytes)", None
        if not check:
            return sha256_file(path), None, None
        data = read_regular_bytes(path)
    except PermissionError:
        return "", "permission denied: cannot read the file (check its permissions)", None
    except OSError as exc:
        return "", f"cannot read the file: {exc.strerror or exc}", None
    from semcat import phash_store
    from semcat.duplicates import phash_bytes
    from semcat.errors import ImageReadError
    from semcat.images import read_image_bytes

    try:
        if phash:  # decoding for the hash checks the image too; cached content decoded fine before
            digest = sha256_bytes(data)
            return digest, None, phash_store.lookup(digest) or phash_bytes(data, path)
        read_image_bytes(data, path, crop_databar=False, max_side=64, metadata=False)
    except ImageReadError as exc:
        return "", exc.problem, None
    return sha256_bytes(data), None, None


def _hash_all(
    paths: list[Path], check: bool, phash: bool, progress: bool, workers: int | None, meta_field: str | None = None
) -> list[tuple[str, str | None, PHash | None, str | None]]:
    """Hash (and optionally decode) files on a thread pool: hashing releases the GIL. With
    ``meta_field`` each file's metadata group (:func:`_meta_group`) is read in the same pass."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from semcat.commands._common import err_console

    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    bar = Progress(TextColumn("hashing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err_console, disable=not progress, transient=True)
    out: list[tuple[str, str | None, PHash | None, str | None]] = []
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with bar:
            task = bar.add_task("hashing", total=len(paths))
            for result in pool.map(lambda p: (*_hash_one(p, check, phash),
                                                 _meta_group(p, meta_field) if meta_field else None), paths):
                out.append(result)
                bar.advance(task)
    finally:  # Ctrl-C: drop the queued files instead of hashing them all first
        pool.shutdown(wait=True, cancel_futures=True)
    if phash:
        from semcat import phash_store

        phash_store.store({digest: h for digest, _, h, _ in out if h is not None})
    return out


def _near_links(paths: list[Path], digests: list[str], phashes: list[PHash | None]) -> list[tuple[str, str]]:
    """Content-hash pairs of pixel-checked near duplicates (perceptual hashes, no features)."""
    from semcat.duplicates import try_thumb, find_groups

    groups = find_groups(digests, phashes, None, lambda i: try_thumb(paths[i]))
    return [(digests[g[0]], digests[i]) for g in groups for i in g[1:] if digests[i] != digests[g[0]]]


def _count_groups(links: list[tuple[str, str]]) -> int:
    """Connected sets formed by ``links``."""
    from semcat.duplicates import group_pairs

    index: dict[str, int] = {}
    pairs = [(index.setdefault(a, len(index)), index.setdefault(b, len(index))) for a, b in links]
    return len(group_pairs(len(index), pairs))


def _split_keys(items: list[tuple[str, str | None]], links: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Split key per sample: its group, merged with every group sharing an identical file and
    with the content hashes ``links`` joins (near duplicates).

    Union-find over group names and content hashes; the key of each connected set is its smallest
    group name (its smallest content hash when it holds no group), so duplicates and groups both
    stay on one side, and a group keeps its side when a file's bytes change (metadata edited).
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def node(digest: str, group: str | None) -> str:
        return f"group:{group}" if group is not None else digest

    def rank(x: str) -> tuple[bool, str]:  # group names before content hashes
        return (not x.startswith("group:"), x)

    for a, b in [(node(d, g), d) for d, g in items] + list(links):
        a, b = find(a), find(b)
        if a != b:
            parent[max(a, b, key=rank)] = min(a, b, key=rank)
    keys = []
    for digest, group in items:
        rep = find(node(digest, group))
        keys.append(rep[len("group:"):] if rep.startswith("group:") else rep)
    return keys


def _warnings(ds: Dataset) -> list[str]:
    """Missing groups, classes with too few groups, lopsided or empty splits, duplicates."""
    out: list[str] = []
    counts = ds.counts()
    for c, row in counts.items():
        if row["total"] == 0:
            out.append(f"class {c!r} has no readable images: it is left out")
    if ds.group_by is not None:
        missing = sum(1 for s in ds.samples if s.group is None)
        if missing:
            how = ("are directly in their class folder" if ds.group_by == "folder" else
                   f"have no {ds.group_by.removeprefix('meta:')} in their SEM metadata" if ds.group_by in META_GROUPS
                   else "match no group in the regex")
            out.append(f"{missing} of {len(ds.samples)} images {how}: each is split on its own "
                       f"(check --group-by {ds.group_by!r})")
        needed = sum(1 for f in ds.fractions if f > 0)
        for c, row in counts.items():
            if 0 < row["groups"] < needed:
                out.append(f"class {c!r} has only {row['groups']} group(s): too few to fill "
                           f"{needed} splits; add samples or split without --group-by")
    for c, row in counts.items():
        n = row["total"]
        if n < 10:
            continue
        for name, f in zip(SPLITS, ds.fractions):
            expected = f * n
            if abs(row[name] - expected) > 3 * math.sqrt(n * f * (1 - f)) + 1:
                out.append(f"class {c!r}: {name} has {row[name]} of {n} images (expected ~{expected:.0f}); "
                           "the split is lopsided" + (" (large groups?)" if ds.group_by else ""))
    dup = Counter(s.sha256 for s in ds.samples)
    extra = sum(k - 1 for k in dup.values() if k > 1)
    if extra:
        out.append(f"{extra} files are exact duplicates of others (each set kept in one split)")
    labels_of: dict[str, set[str]] = defaultdict(set)
    for s in ds.samples:
        labels_of[s.sha256].add(s.label)
    conflicting = sum(1 for v in labels_of.values() if len(v) > 1)
    if conflicting:
        out.append(f"{conflicting} identical images are filed under different classes: check their labels")
    return out
