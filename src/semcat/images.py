"""Read SEM images fast and safely; find and crop the instrument's data bar.

Only :func:`read_image` touches image files (it reads the bytes once and hands them to
:func:`read_image_bytes`, which, given a ``Path``, also looks for a vendor sidecar next to it);
everything else takes and returns arrays.

Dtype rule (as in scikit-image's ``img_as_float``): the output is always a 2-D float32 array
in [0, 1]. ``uint8`` is divided by 255 and ``uint16`` by 65535, whatever bits the detector really
used (a 12-bit image stored in 16 bits comes out in [0, 1/16]; later stages normalise contrast).
Float and other integer TIFFs are min-max scaled by their own range (a constant image → 0).
Colour (RGB/RGBA, palette) becomes luminance ``0.299 R + 0.587 G + 0.114 B``; alpha is dropped.

The format is sniffed from the first bytes, never from the file name, and the image size is
checked from the header before any pixel is decoded, so a decompression bomb costs nothing.
"""
from __future__ import annotations

import io
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import imagecodecs
import numpy as np
import tifffile

from semcat._io import read_regular_bytes
from semcat.errors import ImageReadError
from semcat.semmeta import databar_rows_from_metadata, parse_tiff_tags
from semcat.sidecar import read_sidecar

if TYPE_CHECKING:
    from semcat.semmeta import SemMetadata

__all__ = ["ImageInfo", "read_image", "read_image_bytes", "read_cropped_and_whole", "read_file_bytes", "detect_databar",
           "to_gray_float", "sniff_format", "image_bands", "serial_opencv"]

MIN_SIDE = 8
"""Images smaller than this on either side are refused: nothing to classify."""
MAX_DECODE_BYTES = 1 << 30
"""Largest decoded size (pixels x channels x bytes per sample) read by default: a small PNG of
14000 x 14000 16-bit RGBA pixels is under the pixel limit but decodes to 1.5 GB."""

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"),
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"),
)
_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "GIF"), (b"RIFF", "RIFF/WebP"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP"), (b"\x1f\x8b", "gzip"),
)
_SUPPORTED = "supported: TIFF, PNG, JPEG, BMP"


_SERIAL_LOCK = threading.Lock()
_serial = {"users": 0, "before": 1}  # decode pools inside serial_opencv, OpenCV's thread count before the first


@contextmanager
def serial_opencv() -> Iterator[None]:
    """OpenCV's own thread pool off while a pool of decode threads runs: each thread decodes a
    whole image, so the pool only adds hand-offs and its workers' waits (they took 0.26 ms of CPU
    per 1024x768 TIFF decoded on 2 cores, ``benchmarks/results/int8_pipeline.md``). Process-wide,
    as OpenCV's setting is; nested and concurrent uses share it, and the last one out restores it."""
    with _SERIAL_LOCK:
        if _serial["users"] == 0:
            _serial["before"] = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _serial["users"] += 1
    try:
        yield
    finally:
        with _SERIAL_LOCK:
            _serial["users"] -= 1
            if _serial["users"] == 0:
                cv2.setNumThreads(_serial["before"])


@dataclass(frozen=True)
class ImageInfo:
    """What the file held, before any crop or resize.

    ``shape`` is (rows, cols) of the original image; ``databar_rows`` counts the original rows
    removed at the bottom (0 when no bar was found or cropping was off); ``databar_source`` says
    what found them: ``"metadata"`` (the vendor's scanned height) or ``"image"``
    (:func:`detect_databar`), None when nothing was removed.
    """

    path: str
    format: str
    bit_depth: int
    shape: tuple[int, int]
    channels: int
    databar_rows: int
    pixel_size_m: float | None
    metadata: SemMetadata | None
    databar_source: str | None = None


@dataclass(frozen=True)
class _Header:
    rows: int
    cols: int
    channels: int
    bit_depth: int


def read_image(path: str | Path, *, crop_databar: bool = True, max_side: int | None = None,
               max_pixels: int = 200_000_000,
               max_decode_bytes: int = MAX_DECODE_BYTES) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as a 2-D float32 gray array in [0, 1] plus its :class:`ImageInfo`.

    Parameters
    ----------
    path : str or Path
        TIFF (8/16-bit, float; gray, RGB, RGBA, palette; first page), PNG, JPEG or BMP.
        The content decides the format, not the suffix.
    crop_databar : bool
        Remove the instrument's data bar at the bottom (vendor metadata first, else
        :func:`detect_databar`). Vendor metadata is the file's own, else a JEOL/Hitachi
        ``NAME.txt`` or TESCAN ``NAME-tif.hdr`` next to it (:mod:`semcat.sidecar`).
    max_side : int, optional
        Downscale while decoding so the longer side is at most this (JPEG reduced decode,
        integer-factor ``INTER_AREA``, then bilinear for the remaining factor below 2).
        The feature extractor passes about twice the model input size.
    max_pixels : int
        Refuse images with more pixels than this (checked from the header, before decoding).
    max_decode_bytes : int
        Images whose decoded samples (pixels x channels x bytes per sample, after a JPEG's
        reduced decode) would take more memory than this (checked from the header) are decoded
        band by band and area-reduced as they come (:mod:`semcat.large_decode`); refused only
        when even the reduced output passes it or the file cannot be read in parts.

    Raises
    ------
    ImageReadError
        For missing, unreadable, empty, truncated, non-image, too small or too large files.
    """
    p = Path(path)
    return read_image_bytes(read_file_bytes(p), p, crop_databar=crop_databar, max_side=max_side,
                            max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)


def read_file_bytes(path: str | Path) -> bytes:
    """A file's bytes, or an ``ImageReadError`` that says why not (missing, folder, device, FIFO,
    too large, permissions); :func:`semcat._io.open_regular` is the rule."""
    p = Path(path)
    try:
        return read_regular_bytes(p)
    except FileNotFoundError:
        raise ImageReadError(p, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(p, "is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError(p, "permission denied: cannot read the file (check its permissions)") from None
    except OSError as exc:
        raise ImageReadError(p, f"cannot read the file: {exc.strerror or exc}") from None


def read_image_bytes(data: bytes, name: str | Path = "<bytes>", *, crop_databar: bool = True,
                     max_side: int | None = None, max_pixels: int = 200_000_000,
                     max_decode_bytes: int = MAX_DECODE_BYTES, metadata: bool = True) -> tuple[np.ndarray, ImageInfo]:
    """Like :func:`read_image` for bytes already in memory (``name`` is used in messages).

    When ``name`` is a ``Path`` and the file has no vendor metadata of its own, a JEOL/Hitachi/
    TESCAN sidecar next to it is read (:func:`semcat.sidecar.read_sidecar`). ``metadata=False``
    (for callers that want only the pixels): vendor tags are read only as far as they decide the
    data-bar crop (:func:`semcat.semmeta.parse_tiff_tags` with ``full=False``); the pixels are the same.
    """
    fmt, raw, header, meta = _decode(data, name, max_side, max_pixels, max_decode_bytes, metadata)
    cut, bar, source = _databar_cut(raw, meta, header.rows) if crop_databar else (0, 0, None)
    if cut:
        raw = raw[: raw.shape[0] - cut]
    info = ImageInfo(
        path=str(name), format=fmt, bit_depth=header.bit_depth, shape=(header.rows, header.cols),
        channels=header.channels, databar_rows=bar,
        pixel_size_m=meta.pixel_size_m if meta else None, metadata=meta, databar_source=source,
    )
    return to_gray_float(raw), info


def read_cropped_and_whole(data: bytes, name: str | Path = "<bytes>", *, max_side: int | None = None,
                           max_pixels: int = 200_000_000,
                           max_decode_bytes: int = MAX_DECODE_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of :func:`read_image_bytes` with the data bar cropped and without, from one
    decode (``metadata=False``): what perceptual hashes of both need, one decode instead of two."""
    _, raw, header, meta = _decode(data, name, max_side, max_pixels, max_decode_bytes, metadata=False)
    cut = _databar_cut(raw, meta, header.rows)[0]
    return to_gray_float(raw[: raw.shape[0] - cut] if cut else raw), to_gray_float(raw)


def _decode(data: bytes, name: str | Path, max_side: int | None, max_pixels: int, max_decode_bytes: int,
            metadata: bool) -> tuple[str, np.ndarray, _Header, SemMetadata | None]:
    """(format, pixels in their own dtype at most ``max_side``, header, vendor or sidecar metadata)."""
    fmt = sniff_format(data, name)
    meta = None
    try:
        if fmt == "TIFF":
            raw, header, meta = _decode_tiff(data, name, max_pixels, max_decode_bytes, metadata=metadata)
        else:
            header = _HEADER_READERS[fmt](data, name)
            _check_size(header, name, max_pixels)
            _check_decode_bytes(header, name, max_decode_bytes, _jpeg_factor(header, max_side) if fmt == "JPEG" else 1)
            raw = _decode_cv2(data, name, fmt, header, max_side)
    except _OverBudget as over:  # too large to decode whole: decode it band by band, reduced
        from semcat.large_decode import decode_reduced

        header = over.header
        raw, meta = decode_reduced(data, name, fmt, header.rows, header.cols, max_side=max_side,
                                   max_bytes=max_decode_bytes, gray=_to_gray, tiff_2d=_tiff_page_to_2d)
    if meta is None and isinstance(name, Path):
        meta = read_sidecar(name, header.rows)
    if max_side is not None and max(raw.shape) > max_side:
        raw = _downscale(raw, max_side)
    return fmt, raw, header, meta


def _databar_cut(raw: np.ndarray, meta: SemMetadata | None, rows: int) -> tuple[int, int, str | None]:
    """(bottom rows of ``raw`` that are the data bar, the bar's rows in the file, ``"metadata"`` or
    ``"image"``; None when there is no bar): the vendor's scanned height when known, else detection."""
    scale = raw.shape[0] / rows
    known = databar_rows_from_metadata(meta, rows)
    if known is not None:
        cut, bar, source = min(raw.shape[0] - 1, int(np.ceil(known * scale))), known, "metadata"
    else:
        cut = detect_databar(raw)
        bar, source = min(rows - 1, round(cut / scale)), "image"
    return (cut, bar, source) if cut else (0, 0, None)


def image_bands(data: bytes, name: str | Path = "<bytes>", *, max_pixels: int = 200_000_000,
                max_decode_bytes: int = MAX_DECODE_BYTES) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """(rows, cols) of an image, data bar included, and its gray samples band by band of rows.

    PNG and TIFF are read in bands of a few MB (:func:`semcat.large_decode.gray_bands`, samples in
    their own dtype), so any size costs one band of memory; other formats, and files that cannot be
    read in parts, come as one band: the whole image as :func:`read_image_bytes` decodes it
    (float in [0, 1], within ``max_decode_bytes``). One file always takes the same path, so the
    bands of every pass over it share one scale. Raises ``ImageReadError``.
    """
    from semcat.large_decode import gray_bands

    fmt = sniff_format(data, name)
    if fmt in ("PNG", "TIFF"):
        if fmt == "PNG":
            header = _png_header(data, name)
        else:
            try:
                with tifffile.TiffFile(io.BytesIO(data)) as tif:
                    header = _tiff_header(tif, name)
            except ImageReadError:
                raise
            except Exception as exc:  # tifffile raises many types on corrupt headers
                raise ImageReadError(name, f"corrupt or truncated TIFF header ({exc})") from None
        _check_size(header, name, max_pixels)
        bands = gray_bands(data, name, fmt, header.rows, header.cols, max_bytes=max_decode_bytes,
                           gray=_to_gray, tiff_2d=_tiff_page_to_2d)
        try:
            first = next(bands, None)
        except Exception:  # noqa: BLE001 - not readable in parts (or at all): the whole decode says which
            first = None
        if first is not None:
            return (header.rows, header.cols), _decoded(name, first, bands)
    img, info = read_image_bytes(data, name, crop_databar=False, max_pixels=max_pixels,
                                 max_decode_bytes=max_decode_bytes)
    return info.shape, iter([img])


def _decoded(name: str | Path, first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """``first`` then ``rest``, any decoder failure on the way as an ``ImageReadError``."""
    yield first
    try:
        yield from rest
    except ImageReadError:
        raise
    except Exception as exc:  # codecs raise their own types on corrupt data
        raise ImageReadError(name, f"cannot decode image data ({exc})") from None


def _downscale(a: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the longer side is ``max_side``: integer-factor INTER_AREA (OpenCV's fast
    path, ~20x quicker than a fractional INTER_AREA), then bilinear for the last factor < 2."""
    if a.dtype not in (np.uint8, np.uint16, np.float32):  # OpenCV resizes no int32/uint32/float64
        a = a.astype(np.float32)
    k = max(a.shape) // max_side
    if k >= 2 and min(a.shape[:2]) >= k:  # else the short side would shrink to 0 rows
        a = cv2.resize(a, None, fx=1 / k, fy=1 / k, interpolation=cv2.INTER_AREA)
    if max(a.shape) > max_side:
        f = max_side / max(a.shape)
        size = (max(1, round(a.shape[1] * f)), max(1, round(a.shape[0] * f)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_LINEAR)
    return a


def sniff_format(data: bytes, name: str | Path = "<bytes>") -> str:
    """Format from the magic bytes: "TIFF", "PNG", "JPEG" or "BMP"; ImageReadError otherwise."""
    if not data:
        raise ImageReadError(name, "empty file (0 bytes)")
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    for magic, fmt in _UNSUPPORTED:
        if data.startswith(magic):
            raise ImageReadError(name, f"unsupported format {fmt} ({_SUPPORTED})")
    raise ImageReadError(name, f"not an image (starts with {data[:12]!r}; {_SUPPORTED})")


def to_gray_float(arr: np.ndarray) -> np.ndarray:
    """Any dtype and channel layout (H, W[, C]) → 2-D float32 gray in [0, 1] (see module doc).

    >>> to_gray_float(np.array([[0, 255]], dtype=np.uint8))
    array([[0., 1.]], dtype=float32)
    >>> to_gray_float(np.array([[0, 4095]], dtype=np.uint16)).round(4)
    array([[0.    , 0.0625]], dtype=float32)
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        a = _to_gray(a)
    if a.ndim != 2:
        raise ValueError(f"expected an image of shape (rows, cols) or (rows, cols, channels), "
                         f"got shape {a.shape}")
    if a.dtype == np.uint8:
        out = a.astype(np.float32)
        out *= np.float32(1 / 255)
        return out
    if a.dtype == np.uint16:
        out = a.astype(np.float32)
        out *= np.float32(1 / 65535)
        return out
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    out = a.astype(np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        out[~finite] = 0.0
    lo, hi = float(out.min()), float(out.max())
    if hi <= lo:
        return np.zeros_like(out)
    out -= np.float32(lo)
    out *= np.float32(1 / (hi - lo))
    return out


def _to_gray(a: np.ndarray) -> np.ndarray:
    """(H, W, C) → (H, W): luminance for 3/4 channels (RGB order), first channel otherwise."""
    c = a.shape[2]
    if c in (3, 4) and a.dtype in (np.uint8, np.uint16, np.float32):
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY if c == 3 else cv2.COLOR_RGBA2GRAY)
    if c in (3, 4):
        w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return a[..., :3].astype(np.float32) @ w
    return a[..., 0]


# --- data bar ------------------------------------------------------------------------------

_BG_TOL = 0.03        # a pixel belongs to the bar background within this (fraction of range)
_INK_TOL = 0.25       # text / scale-bar pixels differ from the background at least this much
_MAX_BAR = 0.35       # a bar never takes more than this fraction of the height
_MAX_BELOW = 0.05     # image or border rows under a bar: at most this fraction of the height
_MAX_COLS = 512       # columns sampled per row (speed)
_RUN = 9              # a flat run: this many neighbouring pixels within one grey level
_RUN_TOL = 4 / 255     # one grey level, plus JPEG ringing round the text
_BLANK = 0.8          # share of flat-run pixels of a blank bar row (margin, frame line)
_BAR_ROW = 0.45       # ... of a bar row with sparse marks
_EDGE_ROW = 0.6       # ... of one of the 3 rows under the bar's top edge
_TEXT_ROW = 0.2       # ... of a dense text row (a text line: at most _TEXT_LINE of the height in a row)
_TEXT_LINE = 0.03
_EDGE_JUMP = 0.4      # rise of the flat share from the content to the bar's first rows
_MIN_STEP = 0.02      # mean grey-level step from noisy content to the bar's first row (x2 from flat)
_STEP_RATIO = 2.0     # ... and this many times the content's own row-to-row change
_MIN_STROKES = 8      # text: 3 neighbouring bar rows cross at least this many separate marks


def detect_databar(img: np.ndarray) -> int:
    """Number of bottom rows that form an instrument data bar (0 when there is none).

    A data bar is a band of digitally flat rows (long runs of one exact grey level: a black,
    grey or white background, frame lines, table cells, boxes) carrying text (many separate
    high-contrast marks in a row), with a straight, sharp top edge over image rows that are not
    that flat level. Up to ``_MAX_BELOW`` of the height of image or border rows may lie under it
    (Zeiss data zones, frames); they are counted in the bar. Textured content, gradients,
    vignetting and natural dark or bright bottoms fail one of the tests: a missed bar costs less
    than cut content, so every test must pass.

    Parameters
    ----------
    img : ndarray of shape (M, N) or (M, N, C)
        Any dtype; converted with :func:`to_gray_float`.

    Examples
    --------
    >>> im = np.full((100, 80), 0.5, np.float32) + np.random.default_rng(0).normal(0, .1, (100, 80))
    >>> im[90:] = 0.0
    >>> for x in range(8, 72, 6): im[93:97, x:x + 3] = 1.0   # black bar, 10 rows, a line of marks
    >>> detect_databar(im)
    10
    """
    a = np.asarray(img)
    if a.ndim == 3:
        a = _to_gray(a)
    rows = a.shape[0]
    if a.ndim != 2 or rows < 20 or a.shape[1] < MIN_SIDE:
        return 0
    step = max(1, a.shape[1] // _MAX_COLS)
    below = int(rows * _MAX_BELOW) + 1
    lo_row = max(0, rows - int(rows * _MAX_BAR) - below - 8)
    sub = a[lo_row:, ::step]
    g = None if a.dtype in (np.uint8, np.uint16) else _range_scaled(a, step, lo_row)
    if a.dtype == np.uint8:
        q = np.ascontiguousarray(sub)
    elif a.dtype == np.uint16:
        q = (sub >> 8).astype(np.uint8)
    else:
        q = (np.nan_to_num(g, nan=0.0, posinf=1.0, neginf=0.0) * 255).astype(np.uint8)
    n = q.shape[0]
    flat = _flat_share(q)

    # The band's lowest row: a blank row or frame line at most ``below`` rows above the bottom.
    bot = next((r + 1 for r in range(n - 1, max(-1, n - 1 - below), -1) if flat[r] >= _BLANK), None)
    if bot is None:
        return 0
    top, soft = bot, 0
    for r in range(bot - 1, -1, -1):
        if flat[r] >= _BAR_ROW:
            top, soft = r, 0
        elif flat[r] >= _TEXT_ROW and soft < max(3, int(_TEXT_LINE * rows)):
            soft += 1
        else:
            break
    min_rows = max(4, int(0.015 * rows))
    if bot - top < min_rows:
        return 0
    g = np.ascontiguousarray(to_gray_float(sub) if g is None else g)
    # Sharp, straight top edge over content: rules out vignetting, round fields of view and
    # natural flat regions (vacuum, charging), whose edges are ragged or gradual. Smooth content
    # can pass for an edge: of the edges whose band is one bar with text, the lowest with at
    # least half the sharpest step wins (cautious), with the frame line right above it.
    found: list[tuple[int, float]] = []
    for edge in _top_edges(g, flat, top, bot):
        band = flat[edge:bot]
        if bot - edge < min_rows or (edge - top >= 2 and _has_text(g[top:edge])):
            break  # text above the edge: the edge is inside the bar
        if (bot - edge <= int(rows * _MAX_BAR) and band.max() >= 0.95 and band.mean() >= 0.55
                and _one_background(g[edge:bot], band) and _has_text(g[edge:bot])):
            found.append((edge, float(np.abs(g[edge] - g[edge - 1]).mean())))
    if not found:
        return 0
    sharpest = max(step for _, step in found)
    edge = max(edge for edge, step in found if step >= 0.5 * sharpest)
    while edge - 1 in dict(found) and _is_line(g[edge - 1], float(np.median(g[edge]))):
        edge -= 1  # the bar's frame line, right above it
    return n - edge


def _is_line(row: np.ndarray, bg: float) -> bool:
    """A frame line: a uniform row whose level stands out from the bar background ``bg``."""
    level = float(np.median(row))
    return abs(level - bg) >= _INK_TOL and float((np.abs(row - level) <= _BG_TOL).mean()) >= 0.9


def _one_background(bar: np.ndarray, flat: np.ndarray) -> bool:
    """The band is one bar, not smooth content that is locally flat too but drifts in level.

    The bottom run of uniform rows (a border, the frame, a margin) is left out. In the rest,
    the blank rows (the flattest) give a background template (each column's median: the
    bar's level, or a box's); most rows must match it over 30% of their width (text rows
    included), one of the first three over 80%, and at most 2 other rows, uniform ones
    (a frame line).
    """
    uniform = (np.abs(bar - np.median(bar[:, ::4], axis=1, keepdims=True)) <= _BG_TOL).mean(axis=1) >= 0.9
    end = len(bar)
    while end > 0 and uniform[end - 1]:
        end -= 1
    if end < 3:
        return False
    blank = np.flatnonzero(flat[:end] >= flat[:end].max() - 0.1)  # flattest rows (JPEG lowers all)
    template = np.median(bar[blank[:: max(1, len(blank) // 8)]], axis=0)  # 8 of them are enough
    match = (np.abs(bar[:end] - template) <= _BG_TOL).mean(axis=1)
    line = uniform[:end] & (match < 0.5)
    if line.sum() > 2:  # more uniform rows off the template than a frame line has: content
        return False
    first = uniform[:3] | (match[:3] >= 0.8)
    return bool(first.any()) and float((line | (match >= 0.3)).mean()) >= 0.8


def _top_edges(g: np.ndarray, flat: np.ndarray, top: int, bot: int) -> Iterator[int]:
    """Candidate top edges of the bar within the flat rows ``[top, bot)``, highest first.

    An edge is a row with image content above it (``_distinct_above``) where
    flatness jumps: by ``_EDGE_JUMP`` within two rows over noisy content (a natural flat region
    grows flat over many rows along its ragged edge), or, under smooth content that is itself
    flat, by a grey-level step of twice ``_MIN_STEP`` and ``_STEP_RATIO`` times the content's own
    row-to-row change. Row ``r - 1`` is left out of the comparison: it can join vertical runs.
    """
    lo = max(top, 9)
    if bot - lo < 1:
        return
    f = np.append(flat, flat[-1:])  # so that rows r + 1 and r + 2 exist up to r = bot - 1
    r = np.arange(lo, bot)
    step = np.abs(np.diff(g[lo - 9: bot], axis=0)).mean(axis=1)  # step[k]: row lo - 9 + k to the next
    into = step[8:]                                              # into row r from row r - 1
    content = np.median(np.lib.stride_tricks.sliding_window_view(step[:-1], 8), axis=1)  # r - 9 .. r - 2
    head = np.maximum(f[r], f[np.minimum(r + 1, len(f) - 1)])
    above_lo, above_hi = np.minimum(f[r - 3], f[r - 2]), np.maximum(f[r - 3], f[r - 2])
    smooth = above_lo >= _TEXT_ROW  # smooth content, flat itself: needs a sharp grey-level step
    sharp = np.where(smooth, into >= np.maximum(2 * _MIN_STEP, _STEP_RATIO * content),
                     head - above_hi >= _EDGE_JUMP)
    blank = np.maximum(head, f[np.minimum(r + 2, len(f) - 1)]) >= _EDGE_ROW
    for k in np.flatnonzero(sharp & blank & (into >= _MIN_STEP)):
        row = int(r[k])
        if _distinct_above(g, row, float(np.median(g[row]))):
            yield row


def _flat_share(q: np.ndarray) -> np.ndarray:
    """Per row of the 8-bit image ``q``, the share of pixels inside a horizontal or vertical run
    of ``_RUN`` neighbours within ``_RUN_TOL`` (vertical runs keep the background between
    letters of a text line). Burnt-in graphics are exact; detector noise makes such runs rare
    in image rows. 8-bit levels keep OpenCV's morphology fast; the tolerance is coarser anyway.
    """
    flat = np.zeros(q.shape, np.uint8)
    for kernel in (np.ones((1, _RUN), np.uint8), np.ones((_RUN, 1), np.uint8)):
        runs = cv2.compare(cv2.subtract(cv2.dilate(q, kernel), cv2.erode(q, kernel)), _RUN_TOL * 255, cv2.CMP_LE)
        flat |= cv2.dilate(runs, kernel)
    return np.count_nonzero(flat, axis=1) / q.shape[1]


def _has_text(bar: np.ndarray) -> bool:
    """Marks far from each row's background level, and a line of text: 3 rows in a row each
    crossing many of them, under a bar row with at most half as many as the line's busiest. The ragged edge of a
    natural flat region also crosses many marks, but in the band's first rows."""
    level = np.median(bar[:, ::4], axis=1, keepdims=True)  # every 4th column: enough, 4x faster
    ink = np.abs(bar - level) >= _INK_TOL
    if ink.mean() < 0.002 or int((ink.sum(axis=1) > 0).sum()) < 2:
        return False
    marks = (ink[:, 1:] & ~ink[:, :-1]).sum(axis=1)
    many = marks >= min(_MIN_STROKES, max(4, bar.shape[1] // 32))  # narrow images: fewer letters
    line = many[1:-2] & many[2:-1] & many[3:]  # a text line is several rows high ...
    peak = np.maximum(np.maximum(marks[1:-2], marks[2:-1]), marks[3:])
    return bool((line & (2 * marks[:-3] <= peak)).any())  # ... under a quieter row of the bar


def _distinct_above(g: np.ndarray, top: int, bg: float) -> bool:
    """True when the rows above ``top`` are image content, not more bar background."""
    above = g[max(0, top - 3): top]
    exact = (np.abs(above - bg) <= 2e-3).mean(axis=1)
    if exact.max() > 0.5 or (np.abs(g[max(0, top - 8): top] - bg) <= 2e-3).mean() > 0.15:
        return False
    level = float(np.abs(above[-1] - bg).mean())
    texture = float(np.abs(np.diff(above[-1])).mean())
    # Digital bar background is exact; image rows almost never hit that exact level.
    return level >= 0.06 or texture >= 0.02 or (exact.max() <= 0.1 and level >= 0.04)


def _range_scaled(a: np.ndarray, step: int, lo_row: int) -> np.ndarray:
    """Float/other input: scale by the whole image's range so levels compare across rows."""
    sub = a[:, ::step].astype(np.float32)
    lo, hi = float(np.nanmin(sub)), float(np.nanmax(sub))
    if hi <= lo:
        return np.zeros_like(sub[lo_row:])
    return (sub[lo_row:] - lo) / (hi - lo)


# --- decoding ------------------------------------------------------------------------------

def _check_size(h: _Header, name: str | Path, max_pixels: int) -> None:
    if h.rows <= 0 or h.cols <= 0:
        raise ImageReadError(name, f"invalid image size {h.cols}x{h.rows} in the header")
    if h.rows < MIN_SIDE or h.cols < MIN_SIDE:
        raise ImageReadError(name, f"image too small: {h.cols}x{h.rows} pixels "
                                   f"(need at least {MIN_SIDE}x{MIN_SIDE})")
    if h.rows * h.cols > max_pixels:
        raise ImageReadError(name, f"image too large: {h.cols}x{h.rows} = {h.rows * h.cols:,} pixels "
                                   f"exceeds the limit of {max_pixels:,} (possible decompression bomb; "
                                   f"raise max_pixels if the file is genuine)")


class _OverBudget(ImageReadError):
    """The header says a whole decode would pass the budget; ``read_image_bytes`` decodes it in bands."""

    def __init__(self, path: str | Path, problem: str, header: _Header) -> None:
        super().__init__(path, problem)
        self.header = header


def _check_decode_bytes(h: _Header, name: str | Path, max_bytes: int, reduce: int = 1) -> None:
    """Refuse, from the header, an image whose decoded samples would pass ``max_bytes``."""
    need = -(-h.rows // reduce) * -(-h.cols // reduce) * h.channels * -(-h.bit_depth // 8)
    if need > max_bytes:
        raise _OverBudget(name, f"image too large to decode: {h.cols}x{h.rows} pixels x {h.channels} channel(s) "
                                   f"x {h.bit_depth} bits = {need / 2**20:,.0f} MiB exceeds the decode budget of "
                                   f"{max_bytes / 2**20:,.0f} MiB (possible decompression bomb)", h)


def _jpeg_factor(h: _Header, max_side: int | None) -> int:
    """The JPEG reduced-decode factor (1, 2, 4 or 8) that still leaves at least ``max_side`` pixels."""
    return next((f for f in (8, 4, 2) if max_side and max(h.rows, h.cols) / f >= max_side), 1)


def _decode_tiff(data: bytes, name: str | Path, max_pixels: int, max_decode_bytes: int = MAX_DECODE_BYTES, *,
                 metadata: bool = True) -> tuple[np.ndarray, _Header, SemMetadata | None]:
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception as exc:  # tifffile raises many types on corrupt headers
        raise ImageReadError(name, f"corrupt or truncated TIFF header ({exc})") from None
    with tif:
        header = _tiff_header(tif, name)
        page, axes = tif.pages.first, tif.pages.first.axes
        _check_size(header, name, max_pixels)
        _check_decode_bytes(header, name, max_decode_bytes)
        end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
        if end > len(data):
            raise ImageReadError(name, f"truncated TIFF: image data ends at byte {end:,} "
                                       f"but the file has {len(data):,} bytes")
        meta = parse_tiff_tags(tif, full=metadata)
        try:
            arr = _tiff_pixels(page, data)
        except Exception as exc:  # a codec tifffile lacks: OpenCV's libtiff may still read it
            try:
                return _decode_cv2(data, name, "TIFF", header, None), header, meta
            except ImageReadError:
                raise ImageReadError(name, f"cannot decode TIFF image data ({exc})") from None
    arr = _tiff_page_to_2d(arr, page, axes)
    return arr, header, meta


def _tiff_header(tif: tifffile.TiffFile, name: str | Path) -> _Header:
    """The first page's size, samples per pixel and bits, as a 2-D image (else ``ImageReadError``)."""
    if not tif.pages:
        raise ImageReadError(name, "TIFF contains no image pages")
    page = tif.pages.first
    axes, shape = page.axes, page.shape
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(name, f"TIFF page is not a 2-D image (axes {axes!r}, shape {shape})")
    rows, cols = shape[axes.index("Y")], shape[axes.index("X")]
    channels = shape[axes.index("S")] if "S" in axes else 1
    if int(page.photometric) == 3:  # palette: reported as the colour it shows
        channels = 3
    bits = page.dtype.itemsize * 8 if page.dtype is not None else int(page.bitspersample)
    return _Header(rows, cols, channels, bits)


# Compressions libtiff decodes into the same samples tifffile returns (TIFF tag 259 values):
# LZW, JPEG, Deflate, PackBits, Adobe Deflate, LZMA, ZSTD, WebP. Uncompressed pages are a view of
# the file's bytes (:func:`_contiguous_pixels`) or, in any other layout, tifffile's.
_LIBTIFF_COMPRESSIONS = frozenset({5, 7, 8, 32773, 32946, 34925, 50000, 50001})
_LIBTIFF_PHOTOMETRICS = frozenset({0, 1, 2, 3})  # MinIsWhite, MinIsBlack, RGB, palette: raw samples


def _tiff_pixels(page: tifffile.TiffPage, data: bytes) -> np.ndarray:
    """The first page's raw samples, through the fastest decoder that gives tifffile's pixels.

    Uncompressed gray pages in one run of bytes are a view of ``data`` (:func:`_contiguous_pixels`),
    Deflate and ZSTD strips go through :func:`_strip_pixels`; otherwise libtiff
    (``imagecodecs.tiff_decode``) decodes a whole 8/16-bit page in one C call, where tifffile
    decodes strip by strip from Python (PackBits in 1-row strips: 6.4 ms for the pixels of a
    1024x768 image, against 2.7 ms for all of ``read_image`` through libtiff;
    ``benchmarks/results/tiff_codecs.md``). Anything else (YCbCr, 1-bit, float, odd layouts)
    or any libtiff refusal goes through tifffile, whose errors the caller reports.
    """
    arr = _contiguous_pixels(page, data)
    if arr is None:
        arr = _strip_pixels(page, data)
    if arr is not None:
        return arr
    if (int(page.compression) in _LIBTIFF_COMPRESSIONS and int(page.photometric) in _LIBTIFF_PHOTOMETRICS
            and page.dtype in (np.uint8, np.uint16)):
        try:
            arr = imagecodecs.tiff_decode(data, index=0)
        except Exception:  # imagecodecs.TiffError and friends: let tifffile try and explain
            arr = None
        if arr is not None and arr.shape == page.shape and arr.dtype == page.dtype:
            return arr
    return page.asarray()


def _contiguous_pixels(page: tifffile.TiffPage, data: bytes) -> np.ndarray | None:
    """An uncompressed gray 8/16-bit page stored in one run of bytes, as a read-only view of
    ``data``: the samples tifffile copies out, without the copy (one image's worth of memory
    traffic less per file). None for any other layout (big-endian 16-bit included)."""
    dtype = page.dtype
    if (int(page.compression) != 1 or dtype not in (np.uint8, np.uint16) or page.samplesperpixel != 1
            or page.bitspersample != 8 * dtype.itemsize or int(page.predictor) != 1 or int(page.fillorder) != 1
            or (dtype.itemsize > 1 and page.parent.byteorder != "<") or page.shape != (page.imagelength, page.imagewidth)
            or not page.is_contiguous):
        return None
    count = page.imagelength * page.imagewidth
    offset = int(page.dataoffsets[0])
    if offset + count * dtype.itemsize > len(data):
        return None  # truncated: tifffile's decode says so
    return np.frombuffer(data, dtype, count, offset).reshape(page.shape)


# Codecs faster than libtiff's own on the same strips (benchmarks/results/tiff_codecs.md):
# libdeflate for Deflate and Adobe Deflate, and, with the horizontal predictor, imagecodecs'
# C delta decode (libtiff's 16-bit predictor takes several times its ZSTD decode).
_STRIP_CODECS = {8: imagecodecs.deflate_decode, 32946: imagecodecs.deflate_decode, 50000: imagecodecs.zstd_decode}


def _strip_pixels(page: tifffile.TiffPage, data: bytes) -> np.ndarray | None:
    """A stripped gray 8/16-bit Deflate or ZSTD page decoded strip by strip straight into the
    output array, the predictor undone in one C call; None for any other page or a strip that
    does not decode to its exact size (libtiff and tifffile then decode or explain it)."""
    codec = _STRIP_CODECS.get(int(page.compression))
    dtype = page.dtype
    if (codec is None or page.is_tiled or dtype not in (np.uint8, np.uint16) or page.samplesperpixel != 1
            or page.bitspersample != 8 * dtype.itemsize or int(page.predictor) not in (1, 2)
            or int(page.fillorder) != 1 or (dtype.itemsize > 1 and page.parent.byteorder != "<")
            or int(page.photometric) not in _LIBTIFF_PHOTOMETRICS or page.shape != (page.imagelength, page.imagewidth)):
        return None
    out = np.empty(page.shape, dtype)
    flat = out.reshape(-1).view(np.uint8)
    strip = page.rowsperstrip * page.imagewidth * dtype.itemsize
    if strip <= 0 or len(page.dataoffsets) != -(-flat.size // strip):
        return None
    raw = memoryview(data)
    try:
        for start, offset, count in zip(range(0, flat.size, strip), page.dataoffsets, page.databytecounts):
            part = flat[start: start + strip]
            if len(codec(raw[offset: offset + count], out=part)) != len(part):
                return None
    except Exception:  # imagecodecs' DeflateError, ZstdError: corrupt data, said by the fallback
        return None
    if int(page.predictor) == 2:
        imagecodecs.delta_decode(out, axis=-1, out=out)
    return out


def _tiff_page_to_2d(arr: np.ndarray, page: tifffile.TiffPage, axes: str) -> np.ndarray:
    """Squeeze a first page to (rows, cols) gray in its own dtype (palette and MinIsWhite applied)."""
    keep = [a for a in axes if a in "YXS"]
    # drop leading non-spatial axes (e.g. planes) by taking index 0
    while arr.ndim > len(keep):
        arr = arr[0]
    axes_left = "".join(keep)
    if axes_left == "SYX":
        arr = np.moveaxis(arr, 0, -1)
    photometric = int(page.photometric)
    if photometric == 3 and page.colormap is not None:  # palette → luminance LUT
        cmap = page.colormap.astype(np.float32)
        lum = 0.299 * cmap[0] + 0.587 * cmap[1] + 0.114 * cmap[2]
        lut = (lum / 257.0).round().astype(np.uint8) if arr.dtype == np.uint8 else lum.round().astype(np.uint16)
        if arr.dtype == np.uint8 and arr.ndim == 2 and lut.size == 256:
            return cv2.LUT(arr, lut)  # the same lookup, ~10x quicker than numpy's (Zeiss writes palette files)
        return lut[arr]
    if arr.ndim == 3:
        arr = _to_gray(arr)
    if photometric == 0:  # MinIsWhite
        if arr.dtype in (np.uint8, np.uint16):
            arr = np.iinfo(arr.dtype).max - arr
        else:
            arr = -arr.astype(np.float32)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    return arr


def _decode_cv2(data: bytes, name: str | Path, fmt: str, header: _Header,
                max_side: int | None) -> np.ndarray:
    if fmt == "JPEG" and b"\xff\xd9" not in data[-4096:]:
        raise ImageReadError(name, "truncated JPEG: no end-of-image marker")
    if fmt == "PNG" and b"IEND" not in data[-64:]:
        raise ImageReadError(name, "truncated PNG: no IEND chunk at the end")
    flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
    if fmt == "JPEG" and max_side:
        factor = _jpeg_factor(header, max_side)
        if factor > 1:
            flags = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                     8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        arr = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise ImageReadError(name, f"cannot decode {fmt} data ({str(exc).strip().splitlines()[-1]})") from None
    if arr is None:
        raise ImageReadError(name, f"corrupt or truncated {fmt} data (decoder failed)")
    return arr


def _png_header(data: bytes, name: str | Path) -> _Header:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageReadError(name, "truncated PNG: header (IHDR) missing")
    cols, rows, depth, ctype = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(ctype)
    if channels is None:
        raise ImageReadError(name, f"corrupt PNG header (colour type {ctype})")
    return _Header(rows, cols, channels, 16 if depth == 16 else 8)


def _bmp_header(data: bytes, name: str | Path) -> _Header:
    if len(data) < 30:
        raise ImageReadError(name, "truncated BMP: header shorter than 30 bytes")
    (hsize,) = struct.unpack("<I", data[14:18])
    if hsize == 12:
        cols, rows, _, bpp = struct.unpack("<HHHH", data[18:26])
    else:
        cols, rows, _, bpp = struct.unpack("<iiHH", data[18:30])
    channels = {32: 4, 24: 3, 16: 3}.get(bpp, 1)
    return _Header(abs(rows), cols, channels, 8)


def _jpeg_header(data: bytes, name: str | Path) -> _Header:
    """Walk the JPEG markers to the first SOF segment (frame size and components)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageReadError(name, f"corrupt JPEG: bad marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 10 > n:
                break
            depth, rows, cols, comps = struct.unpack(">BHHB", data[i + 4:i + 10])
            return _Header(rows, cols, comps, 16 if depth > 8 else 8)
        if marker == 0xDA:
            break
        i += 2 + length
    raise ImageReadError(name, "truncated JPEG: no frame header (SOF) found")


_HEADER_READERS = {"PNG": _png_header, "JPEG": _jpeg_header, "BMP": _bmp_header}
