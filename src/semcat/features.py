"""Bottleneck features: image files → preprocessed batches → frozen backbone → cached vectors.

Preprocessing (:func:`preprocess`) turns a gray float image into the backbone's input:

1. **Robust contrast normalisation.** The 0.5th and 99.5th percentiles are stretched to 0 and 1
   (clipped). SEM images arrive as 12-bit data in 16-bit files, dim or over-bright exposures, or
   8-bit with odd brightness/contrast; after the stretch they look alike, so the head does not
   learn the detector settings. A flat image becomes mid-gray.
2. **Resize** to the backbone's S×S. ``view`` chooses what is resized: ``full`` squashes the whole
   image (as the paper did), ``center`` takes the central square, ``tiles5`` averages the
   features of the full image and its four quadrants (5 forward passes). Downscaling uses
   area averaging (anti-aliased, like PIL); upscaling the spec's interpolation.
   The other views (:mod:`semcat.view_transforms`) start from the central square: the default
   ``clean`` subtracts its slowly varying background and applies a 5x5 median (issue 20).
3. Gray → 3 channels, then the spec's ImageNet mean/std (during extraction inside the OpenVINO
   graph: :meth:`semcat.runtime.Runtime.gray`).

Extraction (:func:`iter_features`, :func:`extract_features`) streams: a thread pool reads each
file once (bytes → SHA-256 → decode from the same bytes), skips images whose features are
already cached *before* decoding them, and decodes/preprocesses the next batches while the
runtime infers the current one. Only a few batches are in flight, so memory does not grow with
the number of images. Each finished batch is written to the :class:`FeatureStore` at once, so
Ctrl-C (or a crash) loses at most the batch in progress and a re-run resumes. Bad files are
reported as (path, problem) and never stop the batch.

The :class:`FeatureStore` is a content-addressed cache shared by all datasets, keyed by
(image SHA-256, :func:`feature_key`). See its docstring for the on-disk format.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from semcat._io import atomic_write, atomic_write_text, iter_image_files, sha256_bytes
from semcat.backbones import DEFAULT_BACKBONE, BackboneSpec, get_backbone
from semcat.config import compute_threads, default_feature_cache
from semcat.contrast import HIGH_PCT, LOW_PCT, robust_range
from semcat.errors import CacheError, ImageReadError
from semcat.runtime import Runtime, int8_record, load_runtime, model_input
from semcat.view_transforms import TRANSFORMS, VERSIONS

__all__ = [
    "VIEWS",
    "DEFAULT_VIEW",
    "FeatureStore",
    "FeatureResult",
    "StoreChoice",
    "check_view",
    "file_input",
    "open_store",
    "preprocess",
    "feature_key",
    "key_signature",
    "iter_features",
    "extract_features",
    "extract_files",
]

VIEWS = ("full", "center", "tiles5", "plain", *TRANSFORMS)
"""``plain``: the centre crop without the contrast stretch (pixel values by dtype range), the
baseline of ``semcat compare --cv groups``. The others (normalisations, test-time and training
augmentations of the centre crop) are in :mod:`semcat.view_transforms`."""
DEFAULT_VIEW = "clean"
"""The centre crop with its background flattened and a median filter (:mod:`semcat.view_transforms`):
issue 20's cross-instrument winner (``benchmarks/cross_instrument.py``). Models trained before it
keep their own view (the paper's ``center``); ``benchmarks/views.py`` measures full and tiles5."""
PREPROCESS_VERSION = 1
"""Bump when preprocessing changes its output: every cache key changes with it."""
SCALE_VERSION = 1
"""Part of a physically scaled key (:mod:`semcat.physical_scale`): bump when its crop changes."""


# --- preprocessing ---------------------------------------------------------------------------

def check_view(view: str) -> str:
    """``view`` if it is one of :data:`VIEWS`, else ValueError listing them."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}; got {view!r}.")
    return view


def preprocess(img: np.ndarray, spec: BackboneSpec | str, *, view: str = DEFAULT_VIEW) -> np.ndarray:
    """Gray float image (rows, cols) → model input (V, 3, S, S) float32; see the module docstring.

    ``V`` is 1 for ``full``/``center`` and 5 for ``tiles5``.
    """
    spec = get_backbone(spec) if isinstance(spec, str) else spec
    return model_input(_preprocess_gray(img, spec.input_size, spec.interpolation, view), spec)


def _preprocess_gray(img: np.ndarray, size: int, interpolation: str, view: str) -> np.ndarray:
    """Contrast-stretched, resized gray views (V, S, S) in [0, 1]: 3x less memory than RGB."""
    check_view(view)
    img = np.asarray(img)
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(
            f"expected a 2-D gray image (rows, cols); got shape {img.shape}. "
            "Convert with semcat.images.to_gray_float first."
        )
    img = img.astype(np.float32, copy=False)
    if view in TRANSFORMS:
        return TRANSFORMS[view](_preprocess_gray(img, size, interpolation, "center")[0])
    lo, hi = (0.0, 1.0) if view == "plain" else robust_range(img)
    out = np.empty((5 if view == "tiles5" else 1, size, size), np.float32)
    for i, crop in enumerate(_crops(img, view)):
        r = _resize(crop, size, interpolation)
        if hi > lo:
            np.subtract(r, lo, out=r)
            np.multiply(r, 1.0 / (hi - lo), out=r)
            np.clip(r, 0.0, 1.0, out=out[i])
        else:
            out[i] = 0.5
    return out


def file_input(data: bytes, name: str | Path, spec: BackboneSpec, *, crop_databar: bool = True,
               view: str = DEFAULT_VIEW, scale_nm: float | None = None) -> np.ndarray:
    """An image file's bytes → ``spec``'s network input (V, 3, S, S), exactly as extraction makes
    it (the defaults are :class:`~semcat.featurespec.FeatureSpec`'s; int8 calibration uses it).
    ``name`` names the file in errors and finds its sidecar; an unreadable file raises
    :class:`~semcat.errors.ImageReadError`."""
    return model_input(_file_views(data, name, spec, crop_databar=crop_databar, view=view, scale_nm=scale_nm)[0],
                           spec)


def _file_views(data: bytes, name: str | Path, spec: BackboneSpec, *, crop_databar: bool, view: str,
                scale_nm: float | None = None) -> tuple[np.ndarray, bool]:
    """The gray views (V, S, S) of :func:`file_input`: decoded at twice the input size, data bar
    cropped when asked, with ``scale_nm`` the physical crop of :func:`semcat.physical_scale.scale_crop`,
    then :func:`preprocess`'s steps (3x less memory than the network input); and whether the
    image was scale-normalised (False: no pixel size, today's view)."""
    from semcat.images import read_image_bytes
    from semcat.physical_scale import scale_crop

    # vendor metadata matters only for the crop, and with a physical scale for the pixel size
    img, info = read_image_bytes(data, name, crop_databar=crop_databar, max_side=2 * spec.input_size,
                                 metadata=scale_nm is not None)
    scaled = False
    if scale_nm is not None and info.pixel_size_m:
        img = scale_crop(img, info.pixel_size_m * 1e9 * info.shape[1] / img.shape[1], scale_nm, spec.input_size)
        scaled = True
    return _preprocess_gray(img, spec.input_size, spec.interpolation, view), scaled


def _crops(img: np.ndarray, view: str) -> list[np.ndarray]:
    rows, cols = img.shape
    if view == "full":
        return [img]
    if view in ("center", "plain"):
        s = min(rows, cols)
        r0, c0 = (rows - s) // 2, (cols - s) // 2
        return [img[r0: r0 + s, c0: c0 + s]]
    if min(rows, cols) < 2:
        return [img] * 5
    halves = np.array_split(img, 2, axis=0)
    return [img, *(tile for half in halves for tile in np.array_split(half, 2, axis=1))]


_INTERP = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def _resize(img: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    rows, cols = img.shape
    if rows == size and cols == size:
        return img.copy()
    shrink = rows >= size and cols >= size
    flag = cv2.INTER_AREA if shrink else _INTERP.get(interpolation, cv2.INTER_CUBIC)
    return cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=flag)


def feature_key(spec: BackboneSpec | str, *, crop_databar: bool = True, view: str = DEFAULT_VIEW,
                scale_nm: float | None = None) -> str:
    """Cache key: backbone + weights + preprocessing (view, data-bar crop, contrast rule).

    Readable prefix, then a hash of the full signature (also stored in the key's ``key.json``).
    """
    spec = get_backbone(spec) if isinstance(spec, str) else spec
    check_view(view)
    sig = key_signature(spec, crop_databar, view, scale_nm)
    return f"{spec.name}-{view}{'' if scale_nm is None else '-scaled'}-{hashlib.sha256(sig.encode()).hexdigest()[:16]}"


def key_signature(spec: BackboneSpec, crop_databar: bool, view: str, scale_nm: float | None = None) -> str:
    """The full signature behind :func:`feature_key` (stored in the key's ``key.json``)."""
    return (f"{spec.signature()}|view={view}|databar={'crop' if crop_databar else 'keep'}"
            f"|contrast={'dtype' if view == 'plain' else f'p{LOW_PCT:g}-p{HIGH_PCT:g}'}"
            f"|preprocess=v{PREPROCESS_VERSION}{_quantisation(spec)}"
            + (f"|transforms=v{VERSIONS[view]}" if view in VERSIONS else "")
            + ("" if scale_nm is None else f"|scale={scale_nm:.6g}nm-v{SCALE_VERSION}"))


def _quantisation(spec: BackboneSpec) -> str:
    """int8 features depend on the calibration too: re-quantising on other images changes the key.
    ``input=gray``: since the runtime takes gray views (:meth:`~semcat.runtime.Runtime.gray`),
    OpenVINO folds the normalisation into the int8 graph's first quantiser, which moves a few
    rounding boundaries (int8 features cosine ≥ 0.9997 to before; fp32 ones are bit-identical)."""
    return "" if spec.precision == "fp32" else f"|int8={int8_record(spec)['key']}|input=gray"


# --- the feature store -----------------------------------------------------------------------

_MAGIC = b"SEMCATFS"
_FORMAT = 1
_HEAD = struct.Struct("<8sIHIQ32s")  # magic, format, key length, dim, count, sha256(payload)
_SHARD_SUFFIX = ".fshard"


@dataclass
class _Shard:
    path: Path
    hashes: list[str]
    features: np.ndarray  # (count, dim) float32, memory-mapped read-only


class FeatureStore:
    """Content-addressed feature cache on disk, shared by every dataset on the machine.

    Layout: ``root/<feature key>/`` holds ``key.json`` (the full signature, for humans) and
    shard files, each written once, atomically (temp file + rename), never modified:
    a header (magic ``SEMCATFS``, format version, key, dim, count, SHA-256 of the payload),
    the key bytes, ``count`` binary SHA-256 image digests, then ``count x dim`` float32
    little-endian features. Loading verifies magic, version, key, size and checksum and raises
    :class:`~semcat.errors.CacheError` naming the file and the fix; it never returns wrong
    features. :meth:`compact` merges small shards into one.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_feature_cache()
        self._shards: dict[str, dict[Path, _Shard]] = {}
        self._index: dict[str, dict[str, tuple[Path, int]]] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    # reading
    def get(self, key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached features of ``hashes`` (missing ones are simply absent from the result)."""
        with self._lock:
            index = self._refresh(key)
            shards = self._shards[key]
            out: dict[str, np.ndarray] = {}
            for h in hashes:
                hit = index.get(h)
                if hit is not None:
                    out[h] = np.array(shards[hit[0]].features[hit[1]], dtype=np.float32)
            return out

    def contains(self, key: str, hashes: Iterable[str], *, refresh: bool = True) -> set[str]:
        """The subset of ``hashes`` already cached (no feature data is read)."""
        index = self._index.get(key) if not refresh else None
        if index is None:  # lock-free when not refreshing: decode threads ask per file
            with self._lock:
                index = self._refresh(key)
        return {h for h in hashes if h in index}

    def count(self, key: str) -> int:
        """Number of images cached under ``key``."""
        with self._lock:
            return len(self._refresh(key))

    def keys(self) -> list[str]:
        """Feature keys present on disk."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def describe(self, key: str) -> dict:
        """Contents of ``key.json`` (backbone signature, view, ...), or {} when absent."""
        try:
            return json.loads((self.root / key / "key.json").read_text())
        except (OSError, ValueError):
            return {}

    # writing
    def put(self, key: str, hashes: Sequence[str], feats: np.ndarray, *, info: dict | None = None) -> None:
        """Append features as one new shard file (atomic). ``info`` goes into ``key.json`` once."""
        feats = np.ascontiguousarray(feats, dtype="<f4")
        hashes = list(hashes)
        if feats.ndim != 2 or feats.shape[0] != len(hashes):
            raise ValueError(
                f"expected features of shape (len(hashes), dim) = ({len(hashes)}, dim); got {feats.shape}."
            )
        if not len(hashes):
            return
        digests = b"".join(_digest(h) for h in hashes)
        with self._lock:
            self._refresh(key)
            dim = self._dim(key)
            if dim is not None and dim != feats.shape[1]:
                raise CacheError(
                    f"feature key {key!r} holds {dim}-wide features; got {feats.shape[1]}-wide ones. "
                    "Keys must encode the backbone: use feature_key(spec, ...)."
                )
            folder = self.root / key
            if info is not None and not (folder / "key.json").exists():
                atomic_write_text(folder / "key.json", json.dumps({"key": key, "dim": feats.shape[1], **info}, indent=1))
            path = folder / f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{_SHARD_SUFFIX}"
            payload = digests + feats.tobytes()
            kb = key.encode()
            head = _HEAD.pack(_MAGIC, _FORMAT, len(kb), feats.shape[1], len(hashes), hashlib.sha256(payload).digest())
            with atomic_write(path) as f:
                f.write(head + kb)
                f.write(payload)
            self._add(key, self._open(path, key))

    def compact(self, key: str, *, max_rows: int | None = None, min_shards: int = 2) -> int:
        """Merge shards (only those with fewer than ``max_rows`` rows, if given) into one.

        Nothing happens with fewer than ``min_shards`` such shards. Duplicates are dropped.
        Returns the number of shard files merged away.
        """
        with self._lock:
            self._refresh(key)
            small = [s for s in self._shards[key].values() if max_rows is None or len(s.hashes) < max_rows]
            if len(small) < max(2, min_shards):
                return 0
            rows: dict[str, np.ndarray] = {}
            for s in small:
                for i, h in enumerate(s.hashes):
                    rows.setdefault(h, s.features[i])
            self.put(key, list(rows), np.stack(list(rows.values())))
            for s in small:
                s.path.unlink(missing_ok=True)
            self._forget(key)
            return len(small)

    def clear(self, key: str) -> None:
        """Delete every cached feature of ``key`` (``semcat features --rebuild``)."""
        with self._lock:
            shutil.rmtree(self.root / key, ignore_errors=True)
            self._forget(key)

    # internals
    def _forget(self, key: str) -> None:
        self._shards.pop(key, None)
        self._index.pop(key, None)

    def _dim(self, key: str) -> int | None:
        shards = self._shards.get(key) or {}
        return next((s.features.shape[1] for s in shards.values()), None)

    def _refresh(self, key: str) -> dict[str, tuple[Path, int]]:
        """Pick up shards written by other processes; rebuild when one vanished (compaction)."""
        if "/" in key or key.startswith(".") or not key:
            raise ValueError(f"invalid feature key {key!r}: expected a name from feature_key().")
        folder = self.root / key
        on_disk = set(folder.glob("*" + _SHARD_SUFFIX)) if folder.is_dir() else set()
        known = self._shards.get(key, {})
        if set(known) - on_disk:
            self._forget(key)
            known = {}
        self._shards.setdefault(key, known)
        self._index.setdefault(key, {})
        for path in sorted(on_disk - set(known)):
            try:
                shard = self._open(path, key)
            except FileNotFoundError:  # compacted away by another process meanwhile
                continue
            self._add(key, shard)
        return self._index[key]

    def _add(self, key: str, shard: _Shard) -> None:
        self._shards.setdefault(key, {})[shard.path] = shard
        index = self._index.setdefault(key, {})
        for i, h in enumerate(shard.hashes):
            index[h] = (shard.path, i)

    @staticmethod
    def _open(path: Path, key: str) -> _Shard:
        fix = (f"delete it (rm '{path}') or rebuild the cache (`semcat features --rebuild ...`); "
               "its images are then recomputed.")
        with open(path, "rb") as f:
            raw = f.read(_HEAD.size)
            if len(raw) < _HEAD.size or raw[:8] != _MAGIC:
                raise CacheError(f"{path}: not a semcat feature shard (bad magic); {fix}")
            magic, fmt, klen, dim, count, checksum = _HEAD.unpack(raw)
            if fmt != _FORMAT:
                raise CacheError(f"{path}: feature shard format {fmt}, this semcat reads {_FORMAT}; {fix}")
            file_key = f.read(klen).decode("utf-8", "replace")
            if file_key != key:
                raise CacheError(
                    f"{path}: foreign feature shard: it holds features for key {file_key!r}, not {key!r}; {fix}"
                )
            offset = _HEAD.size + klen
            expected = offset + count * 32 + count * dim * 4
            size = os.fstat(f.fileno()).st_size
            if size != expected or dim == 0:
                raise CacheError(f"{path}: truncated or padded ({size} bytes, expected {expected}); {fix}")
            h = hashlib.sha256()
            digests = f.read(count * 32)
            h.update(digests)
            while chunk := f.read(1 << 22):
                h.update(chunk)
            if h.digest() != checksum:
                raise CacheError(f"{path}: checksum mismatch, the file is corrupted; {fix}")
        feats = np.memmap(path, dtype="<f4", mode="r", offset=offset + count * 32, shape=(count, dim))
        hashes = [digests[i * 32:(i + 1) * 32].hex() for i in range(count)]
        return _Shard(path, hashes, feats)


StoreChoice = FeatureStore | Literal["default"] | None
"""Where features are cached: a store, ``"default"`` (the machine's shared one), or None (no cache)."""


def open_store(store: StoreChoice) -> FeatureStore | None:
    """The store a :data:`StoreChoice` names (``"default"`` opens the machine's shared cache)."""
    return FeatureStore() if isinstance(store, str) and store == "default" else store


def _digest(h: str) -> bytes:
    try:
        b = bytes.fromhex(h)
    except ValueError:
        b = b""
    if len(b) != 32:
        raise ValueError(f"expected a SHA-256 hex digest (64 hex characters); got {h!r}.")
    return b


# --- extraction ------------------------------------------------------------------------------

@dataclass
class FeatureResult:
    """Features of the files that could be read, in input order, plus what went wrong."""

    paths: list[str]
    hashes: list[str]
    features: np.ndarray  # (N, D) float32, one row per entry of ``paths``
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    computed: int = 0  # images that went through the backbone
    cached: int = 0  # images served from the FeatureStore
    key: str = ""
    unscaled: list[str] = field(default_factory=list)  # with a physical scale: files without a pixel size


@dataclass
class _Item:
    path: Path
    sha256: str | None = None
    gray: np.ndarray | None = None  # (V, S, S) when it must be computed
    error: str | None = None
    store_id: str | None = None  # the FeatureStore's key for it: sha256, or with its sidecar's (_store_id)
    unscaled: bool = False  # a physical scale was asked and the file has no pixel size


def iter_features(
    paths: str | Path | Iterable[str | Path],
    backbone: str | BackboneSpec = DEFAULT_BACKBONE,
    *,
    runtime: str | Runtime = "auto",
    batch_size: int = 32,
    store: StoreChoice = "default",
    crop_databar: bool = True,
    view: str = DEFAULT_VIEW,
    scale_nm: float | None = None,
    progress: bool = True,
    workers: int | None = None,
    chunk_size: int = 1024,
) -> Iterator[FeatureResult]:
    """Stream features in input order, one :class:`FeatureResult` per chunk of files.

    ``paths`` may name files and folders (searched recursively). A chunk ends after
    ``batch_size`` computed images or ``chunk_size`` files; at most ~4 batches of decoded images
    are held in memory. ``runtime`` is ``auto|torch|openvino`` or a :class:`Runtime` instance
    (its ``images`` counter tells how many forward passes ran). The runtime is only loaded when
    an image actually needs computing.
    """
    files = list(iter_image_files([paths] if isinstance(paths, (str, Path)) else paths))
    yield from _stream(files, get_backbone(backbone), runtime=runtime, batch_size=batch_size, store=open_store(store),
                       crop_databar=crop_databar, view=view, scale_nm=scale_nm, progress=progress, workers=workers,
                       chunk_size=chunk_size)


def _stream(files: list[Path], spec: BackboneSpec, *, runtime: str | Runtime, batch_size: int,
            store: FeatureStore | None, crop_databar: bool, view: str, progress: bool, workers: int | None,
            chunk_size: int, scale_nm: float | None = None) -> Iterator[FeatureResult]:
    """:func:`iter_features` over image files already listed (no folder walk)."""
    key = feature_key(spec, crop_databar=crop_databar, view=view, scale_nm=scale_nm)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if store is not None:
        store.contains(key, [])  # load the index once; workers then query it without re-listing
    info = {"signature": key_signature(spec, crop_databar, view, scale_nm)}

    def load(path: Path) -> _Item:
        item = _Item(path)
        try:
            from semcat.images import read_file_bytes

            data = read_file_bytes(path)
            item.sha256 = sha256_bytes(data)
            # a sidecar can hold the data-bar height and the pixel size: part of the id when either is used
            item.store_id = _store_id(item.sha256, path) if crop_databar or scale_nm else item.sha256
            if store is not None and store.contains(key, [item.store_id], refresh=False):
                if scale_nm is not None:
                    from semcat.physical_scale import has_pixel_size

                    item.unscaled = not has_pixel_size(data, path)
                return item
            item.gray, scaled = _file_views(data, path, spec, crop_databar=crop_databar, view=view, scale_nm=scale_nm)
            item.unscaled = scale_nm is not None and not scaled
        except ImageReadError as e:
            item.error = e.problem
        except Exception as e:  # a bad file must never stop the batch
            item.error = f"{type(e).__name__}: {e}"
        return item

    rt: list[Runtime] = []
    window = max(4 * batch_size, 2 * (workers or _default_workers()))
    from semcat.images import serial_opencv

    with serial_opencv():  # the decode threads are the parallelism; OpenCV's own pool would only add CPU
        pool = ThreadPoolExecutor(max_workers=workers or _default_workers(), thread_name_prefix="semcat-decode")
        bar = _Progress(progress, len(files), spec.name)
        try:
            todo = iter(files)
            inflight: deque[Future[_Item]] = deque()
            chunk: list[_Item] = []
            n_new = 0

            def top_up() -> None:
                while len(inflight) < window:
                    nxt = next(todo, None)
                    if nxt is None:
                        return
                    inflight.append(pool.submit(load, nxt))

            top_up()
            while inflight:
                item = inflight.popleft().result()
                top_up()
                chunk.append(item)
                n_new += item.gray is not None
                if n_new >= batch_size or len(chunk) >= chunk_size or not inflight:
                    if n_new and not rt:
                        rt.append(load_runtime(spec, runtime))
                    result = _finish_chunk(chunk, spec, key, store, rt[0] if rt else None, batch_size, info)
                    bar.advance(len(chunk))
                    chunk, n_new = [], 0
                    yield result
        finally:
            # Wait for the decodes already running (a few images): threads still inside native code
            # when the interpreter exits after Ctrl-C abort the process ("exception not rethrown").
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if store is not None:
                _maybe_compact(store, key)


def extract_features(
    paths: str | Path | Iterable[str | Path],
    backbone: str | BackboneSpec = DEFAULT_BACKBONE,
    *,
    runtime: str | Runtime = "auto",
    batch_size: int = 32,
    store: StoreChoice = "default",
    crop_databar: bool = True,
    view: str = DEFAULT_VIEW,
    scale_nm: float | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> FeatureResult:
    """All features of ``paths`` at once (see :func:`iter_features` for the streaming form).

    One backbone; :meth:`semcat.featurespec.FeatureSpec.extract` joins ``a+b`` backbones.
    """
    files = list(iter_image_files([paths] if isinstance(paths, (str, Path)) else paths))
    return extract_files(files, backbone, runtime=runtime, batch_size=batch_size, store=store,
                         crop_databar=crop_databar, view=view, scale_nm=scale_nm, progress=progress, workers=workers)


def extract_files(
    files: Sequence[str | Path],
    backbone: str | BackboneSpec = DEFAULT_BACKBONE,
    *,
    runtime: str | Runtime = "auto",
    batch_size: int = 32,
    store: StoreChoice = "default",
    crop_databar: bool = True,
    view: str = DEFAULT_VIEW,
    scale_nm: float | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> FeatureResult:
    """:func:`extract_features` of image files already listed: folders are not walked."""
    spec = get_backbone(backbone)
    parts = list(_stream([Path(p) for p in files], spec, runtime=runtime, batch_size=batch_size,
                         store=open_store(store), crop_databar=crop_databar, view=view, progress=progress,
                         workers=workers, chunk_size=1024, scale_nm=scale_nm))
    feats = [p.features for p in parts if len(p.features)]
    return FeatureResult(
        paths=[x for p in parts for x in p.paths],
        hashes=[x for p in parts for x in p.hashes],
        features=np.concatenate(feats) if feats else np.zeros((0, spec.feature_dim), np.float32),
        errors=[x for p in parts for x in p.errors],
        computed=sum(p.computed for p in parts),
        cached=sum(p.cached for p in parts),
        key=feature_key(spec, crop_databar=crop_databar, view=view, scale_nm=scale_nm),
        unscaled=[x for p in parts for x in p.unscaled],
    )


def _finish_chunk(chunk: list[_Item], spec: BackboneSpec, key: str, store: FeatureStore | None,
                  rt: Runtime | None, batch_size: int, info: dict) -> FeatureResult:
    """Infer the chunk's new images (one copy per distinct hash), store them, assemble in order."""
    new: dict[str, np.ndarray] = {}
    for it in chunk:
        if it.gray is not None and it.store_id not in new:
            new[it.store_id] = it.gray
    if store is not None and new:  # decoded ahead while an identical file's features were being stored
        for h in store.contains(key, list(new), refresh=False):
            del new[h]
    computed: dict[str, np.ndarray] = {}
    if new:
        hashes = list(new)
        views = new[hashes[0]].shape[0]
        x = np.concatenate([new[h] for h in hashes])  # gray views: the runtime makes the network input
        out = np.concatenate([rt.gray(x[i: i + batch_size * views]) for i in range(0, len(x), batch_size * views)])
        feats = out.reshape(len(hashes), views, -1).mean(axis=1).astype(np.float32)
        computed = dict(zip(hashes, feats))
        if store is not None:
            store.put(key, hashes, feats, info=info)
    need = [it.store_id for it in chunk if it.error is None and it.store_id not in computed]
    cached = store.get(key, need) if store is not None and need else {}
    res = FeatureResult([], [], np.zeros((0, spec.feature_dim), np.float32), key=key, computed=len(computed))
    rows = []
    for it in chunk:
        if it.error is not None:
            res.errors.append((str(it.path), it.error))
            continue
        vec = computed.get(it.store_id)
        if vec is None:
            vec = cached.get(it.store_id)
            if vec is None:  # cached when listed, then removed (e.g. `--rebuild` elsewhere)
                res.errors.append((str(it.path), "cached features vanished during the run; re-run"))
                continue
            res.cached += 1
        res.paths.append(str(it.path))
        res.hashes.append(it.sha256)
        if it.unscaled:
            res.unscaled.append(str(it.path))
        rows.append(vec)
    if rows:
        res.features = np.stack(rows).astype(np.float32, copy=False)
    return res


def _store_id(sha256: str, path: Path) -> str:
    """An image's id in the FeatureStore: its SHA-256, or, with a JEOL/Hitachi/TESCAN sidecar next
    to it, the SHA-256 of both files' digests: the sidecar's scanned height decides the data-bar
    crop, so adding or editing one must not reuse features computed without it."""
    from semcat.sidecar import sidecar_bytes

    extra = sidecar_bytes(path)
    return sha256 if extra is None else sha256_bytes(f"{sha256}|sidecar|{sha256_bytes(extra)}".encode())


def _maybe_compact(store: FeatureStore, key: str) -> None:
    """Keep the shard count low: batch-sized shards are merged once 64 have piled up."""
    try:
        store.compact(key, max_rows=4096, min_shards=64)
    except (CacheError, OSError):
        pass  # compaction is an optimisation; a bad shard is reported by the next read


def _default_workers() -> int:
    return max(2, min(4, compute_threads()))


class _Progress:
    """A rich progress bar on stderr with images/s (of computed images), or nothing."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("features {task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True, markup=False, emoji=False), transient=False,
        )
        self.task = self.bar.add_task(label, total=total, rate="")
        self.t0 = time.perf_counter()
        self.done = 0
        self.bar.start()

    def advance(self, n: int) -> None:
        if self.bar is None:
            return
        self.done += n
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, advance=n, rate=f"{rate:.0f} img/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
