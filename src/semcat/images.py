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

__all__ = ["ImageInfo", "read_image", "read_image_bytes", "read_file_bytes", "detect_databar", "to_gray_float",
           "sniff_format"]

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


@dataclass(frozen=True)
class ImageInfo:
    """What the file held, before any crop or resize.

    ``shape`` is (rows, cols) of the original image; ``databar_rows`` counts the original rows
    removed at the bottom (0 when no bar was found or cropping was off).
    """

    path: str
    format: str
    bit_depth: int
    shape: tuple[int, int]
    channels: int
    databar_rows: int
    pixel_size_m: float | None
    metadata: SemMetadata | None


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
        Refuse images whose decoded samples (pixels x channels x bytes per sample, after a JPEG's
        reduced decode) would take more memory than this (checked from the header).

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
                     max_decode_bytes: int = MAX_DECODE_BYTES) -> tuple[np.ndarray, ImageInfo]:
    """Like :func:`read_image` for bytes already in memory (``name`` is used in messages).

    When ``name`` is a ``Path`` and the file has no vendor metadata of its own, a JEOL/Hitachi/
    TESCAN sidecar next to it is read (:func:`semcat.sidecar.read_sidecar`).
    """
    fmt = sniff_format(data, name)
    meta = None
    if fmt == "TIFF":
        raw, header, meta = _decode_tiff(data, name, max_pixels, max_decode_bytes)
    else:
        header = _HEADER_READERS[fmt](data, name)
        _check_size(header, name, max_pixels)
        _check_decode_bytes(header, name, max_decode_bytes, _jpeg_factor(header, max_side) if fmt == "JPEG" else 1)
        raw = _decode_cv2(data, name, fmt, header, max_side)
    rows, cols = header.rows, header.cols
    if meta is None and isinstance(name, Path):
        meta = read_sidecar(name, rows)

    if max_side is not None and max(raw.shape) > max_side:
        raw = _downscale(raw, max_side)
    scale = raw.shape[0] / rows

    bar = 0
    if crop_databar:
        known = databar_rows_from_metadata(meta, rows)
        if known is not None:
            cut = min(raw.shape[0] - 1, int(np.ceil(known * scale)))
            bar = known
        else:
            cut = detect_databar(raw)
            bar = min(rows - 1, round(cut / scale))
        if cut:
            raw = raw[: raw.shape[0] - cut]

    info = ImageInfo(
        path=str(name), format=fmt, bit_depth=header.bit_depth, shape=(rows, cols),
        channels=header.channels, databar_rows=bar,
        pixel_size_m=meta.pixel_size_m if meta else None, metadata=meta,
    )
    return to_gray_float(raw), info


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
_MAX_COLS = 512       # columns sampled per row (speed)


def detect_databar(img: np.ndarray) -> int:
    """Number of bottom rows that form an instrument data bar (0 when there is none).

    A data bar is a band at the bottom whose rows are mostly one flat, noise-free background
    level with sparse high-contrast marks (text, scale bar), sitting under image rows that are
    clearly different from that level, with a sharp horizontal boundary. Zeiss, FEI/Thermo,
    JEOL and white bars with dark text fit; textured content, gradients, vignetting and dark
    bottoms do not. False positives cost more than misses, so every test must pass.

    Parameters
    ----------
    img : ndarray of shape (M, N) or (M, N, C)
        Any dtype; converted with :func:`to_gray_float`.

    Examples
    --------
    >>> im = np.full((100, 80), 0.5, np.float32) + np.random.default_rng(0).normal(0, .1, (100, 80))
    >>> im[90:] = 0.0; im[94:96, 10:50] = 1.0      # black bar, 10 rows, with a white line
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
    lo_row = max(0, rows - int(rows * _MAX_BAR) - 8)
    g = to_gray_float(a[lo_row:, ::step]) if a.dtype in (np.uint8, np.uint16) else _range_scaled(a, step, lo_row)
    n = g.shape[0]

    bg = float(np.median(g[-3:]))
    at_bg = np.abs(g - bg) <= _BG_TOL
    frac = at_bg.mean(axis=1)

    # Walk up from the bottom while rows look like bar rows (up to 2 dense-text rows in a row).
    top, soft = n, 0
    for r in range(n - 1, -1, -1):
        if frac[r] >= 0.45:
            top, soft = r, 0
        elif frac[r] >= 0.2 and soft < 2:
            soft += 1
        else:
            break
    height = n - top
    min_rows = max(4, int(0.015 * rows))
    if height < min_rows or height > int(rows * _MAX_BAR) or top < 3:
        return 0

    bar = g[top:]
    bar_bg = at_bg[top:]
    # Background is digitally flat (no noise): most neighbouring background pixels are equal.
    pairs = bar_bg[:, 1:] & bar_bg[:, :-1]
    flat = np.abs(np.diff(bar, axis=1)) <= 1e-3
    if pairs.sum() == 0 or (flat & pairs).sum() / pairs.sum() < 0.6:
        return 0
    # A bar has at least one blank row (margins, gaps between text lines) and some marks.
    if frac[top:].max() < 0.95:
        return 0
    ink = np.abs(bar - bg) >= _INK_TOL
    if ink.mean() < 0.002 or int((ink.sum(axis=1) > 0).sum()) < 2:
        return 0

    # Sharp boundary: the bar's first rows are (almost) blank background, and the rows just
    # above are clearly not bar background (another level, or texture). Rules out vignetting
    # and round fields of view, whose background share grows gradually.
    if frac[top: top + 3].max() < 0.8:
        return 0
    if not _distinct_above(g, top, bg):
        top = _absorb_separator(g, top, bg)
        if top is None:
            return 0
    return n - top


def _distinct_above(g: np.ndarray, top: int, bg: float) -> bool:
    """True when the 3 rows above ``top`` are image content, not more bar background."""
    above = g[max(0, top - 3): top]
    exact = (np.abs(above - bg) <= 2e-3).mean(axis=1)
    if exact.max() > 0.5:
        return False
    level = float(np.abs(above[-1] - bg).mean())
    texture = float(np.abs(np.diff(above[-1])).mean())
    # Digital bar background is exact; image rows almost never hit that exact level.
    return level >= 0.06 or texture >= 0.02 or (exact.max() <= 0.1 and level >= 0.04)


def _absorb_separator(g: np.ndarray, top: int, bg: float) -> int | None:
    """Include a 1-2 row separator line of another flat level above the bar, if there is one.

    Returns the new top row, or None when the rows above are not a separator and not distinct.
    """
    new_top = top
    for r in (top - 1, top - 2):
        if r < 3:
            return None
        row = g[r]
        level = float(np.median(row))
        if abs(level - bg) >= _INK_TOL and (np.abs(row - level) <= _BG_TOL).mean() >= 0.9:
            new_top = r
        else:
            break
    if new_top == top:
        return None
    return new_top if _distinct_above(g, new_top, float(np.median(g[new_top]))) else None


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


def _check_decode_bytes(h: _Header, name: str | Path, max_bytes: int, reduce: int = 1) -> None:
    """Refuse, from the header, an image whose decoded samples would pass ``max_bytes``."""
    need = -(-h.rows // reduce) * -(-h.cols // reduce) * h.channels * -(-h.bit_depth // 8)
    if need > max_bytes:
        raise ImageReadError(name, f"image too large to decode: {h.cols}x{h.rows} pixels x {h.channels} channel(s) "
                                   f"x {h.bit_depth} bits = {need / 2**20:,.0f} MiB exceeds the decode budget of "
                                   f"{max_bytes / 2**20:,.0f} MiB (possible decompression bomb)")


def _jpeg_factor(h: _Header, max_side: int | None) -> int:
    """The JPEG reduced-decode factor (1, 2, 4 or 8) that still leaves at least ``max_side`` pixels."""
    return next((f for f in (8, 4, 2) if max_side and max(h.rows, h.cols) / f >= max_side), 1)


def _decode_tiff(data: bytes, name: str | Path, max_pixels: int,
                 max_decode_bytes: int = MAX_DECODE_BYTES) -> tuple[np.ndarray, _Header, SemMetadata | None]:
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception as exc:  # tifffile raises many types on corrupt headers
        raise ImageReadError(name, f"corrupt or truncated TIFF header ({exc})") from None
    with tif:
        if not tif.pages:
            raise ImageReadError(name, "TIFF contains no image pages")
        page = tif.pages.first
        axes, shape = page.axes, page.shape
        if "Y" not in axes or "X" not in axes:
            raise ImageReadError(name, f"TIFF page is not a 2-D image (axes {axes!r}, shape {shape})")
        rows, cols = shape[axes.index("Y")], shape[axes.index("X")]
        channels = shape[axes.index("S")] if "S" in axes else 1
        photometric = int(page.photometric)
        if photometric == 3:  # palette: reported as the colour it shows
            channels = 3
        bits = page.dtype.itemsize * 8 if page.dtype is not None else int(page.bitspersample)
        header = _Header(rows, cols, channels, bits)
        _check_size(header, name, max_pixels)
        _check_decode_bytes(header, name, max_decode_bytes)
        end = max((o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0)
        if end > len(data):
            raise ImageReadError(name, f"truncated TIFF: image data ends at byte {end:,} "
                                       f"but the file has {len(data):,} bytes")
        meta = parse_tiff_tags(tif)
        try:
            arr = _tiff_pixels(page, data)
        except Exception as exc:  # a codec tifffile lacks: OpenCV's libtiff may still read it
            try:
                return _decode_cv2(data, name, "TIFF", header, None), header, meta
            except ImageReadError:
                raise ImageReadError(name, f"cannot decode TIFF image data ({exc})") from None
    arr = _tiff_page_to_2d(arr, page, axes)
    return arr, header, meta


# Compressions libtiff decodes into the same samples tifffile returns (TIFF tag 259 values):
# LZW, JPEG, Deflate, PackBits, Adobe Deflate, LZMA, ZSTD, WebP. Uncompressed pages stay with
# tifffile, which reads them as fast (a copy) and has always decoded them here.
_LIBTIFF_COMPRESSIONS = frozenset({5, 7, 8, 32773, 32946, 34925, 50000, 50001})
_LIBTIFF_PHOTOMETRICS = frozenset({0, 1, 2, 3})  # MinIsWhite, MinIsBlack, RGB, palette: raw samples


def _tiff_pixels(page: tifffile.TiffPage, data: bytes) -> np.ndarray:
    """The first page's raw samples, through the fastest decoder that gives tifffile's pixels.

    libtiff (``imagecodecs.tiff_decode``) decodes a whole 8/16-bit page in one C call; tifffile
    decodes strip by strip from Python (PackBits in 1-row strips: 5.8 ms for the pixels of a
    1024x768 image, against 1.2 ms for all of ``read_image`` through libtiff;
    ``benchmarks/results/tiff_codecs.md``). Anything else (YCbCr, 1-bit, float, odd layouts)
    or any libtiff refusal goes through tifffile, whose errors the caller reports.
    """
    if (int(page.compression) in _LIBTIFF_COMPRESSIONS and int(page.photometric) in _LIBTIFF_PHOTOMETRICS
            and page.dtype in (np.uint8, np.uint16)):
        try:
            arr = imagecodecs.tiff_decode(data, index=0)
        except Exception:  # imagecodecs.TiffError and friends: let tifffile try and explain
            arr = None
        if arr is not None and arr.shape == page.shape and arr.dtype == page.dtype:
            return arr
    return page.asarray()


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
