"""Decode images too large to hold whole, band by band, area-reducing each band as it comes.

A 1.8 MB PNG of 14000 x 14000 16-bit RGBA pixels decodes to 1.5 GB; a thumbnail or a feature
vector needs a few hundred pixels a side. :func:`decode_reduced` reads such an image in bands of
rows (PNG: the zlib stream inflated a band at a time, at most ``_BAND_BYTES`` out of each call;
TIFF: strip by strip or one row of tiles at a time) and sums each band into ``k x k`` block
means of a gray output, so peak memory is about the output plus one band, whatever the image.
What cannot be read in parts (an interlaced PNG, a TIFF whose single compressed strip or tile
is itself over the budget, separate colour planes) is refused in one line.

PNG rows are unfiltered by libpng (``imagecodecs.png_decode``): each band is handed to it as a
small PNG of the same row layout whose first row is the band's previous row, already
reconstructed and stored unfiltered, so Up, Average and Paeth filters see their true
neighbours and the result is exactly the image's samples.
"""
from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from isal import isal_zlib

from semcat.errors import ImageReadError
from semcat.semmeta import SemMetadata, parse_tiff_tags

__all__ = ["decode_reduced", "reduction_factor", "gray_bands", "reduced_bands"]

_BAND_BYTES = 8 << 20
"""Decoded bytes of one band of rows: the memory held beyond the output (plus its copies)."""
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel as stored


def reduction_factor(rows: int, cols: int, max_side: int | None) -> int:
    """The integer area-reduction step :func:`semcat.images.read_image` takes before its last
    bilinear one (``max(rows, cols) // max_side``), 1 without ``max_side``."""
    return max(1, max(rows, cols) // max_side) if max_side else 1


def decode_reduced(data: bytes, name: str | Path, fmt: str, rows: int, cols: int, *, max_side: int | None,
                   max_bytes: int, gray: Callable[[np.ndarray], np.ndarray],
                   tiff_2d: Callable[[np.ndarray, tifffile.TiffPage, str], np.ndarray],
                   ) -> tuple[np.ndarray, SemMetadata | None]:
    """The image's gray samples in their own dtype, area-reduced by :func:`reduction_factor`,
    plus its TIFF metadata; ``ImageReadError`` when even that output passes ``max_bytes`` or the
    image cannot be read in parts.

    ``gray`` turns an (H, W, C) band into (H, W) (the caller's colour rule); ``tiff_2d`` turns a
    TIFF band in page layout into 2-D gray (palette, MinIsWhite), so both paths give the samples
    a whole decode would.
    """
    k = reduction_factor(rows, cols, max_side)
    out_rows, out_cols = -(-rows // k), -(-cols // k)
    need = out_rows * out_cols * 8  # float32 sums + the output in its dtype, at most 4 bytes a sample
    if need > max_bytes:
        raise ImageReadError(name, f"image too large to decode: {cols}x{rows} pixels reduced by {k} still need "
                                   f"{need / 2**20:,.0f} MiB, over the decode budget of {max_bytes / 2**20:,.0f} MiB "
                                   "(possible decompression bomb; pass a smaller max_side)")
    if fmt == "PNG":
        bands, dtype = _png_bands(data, name, gray)
        return _reduce(bands, rows, cols, k, dtype, name), None
    if fmt == "TIFF":
        return _tiff_reduced(data, name, rows, cols, k, max_bytes, tiff_2d)
    raise ImageReadError(name, f"{fmt} image over the decode budget of {max_bytes / 2**20:,.0f} MiB even at "
                               "its reduced decode; it cannot be read in parts")


# ---- area reduction -----------------------------------------------------------------------------

def _reduce(bands: Iterable[np.ndarray], rows: int, cols: int, k: int, dtype: np.dtype,
            name: str | Path) -> np.ndarray:
    """Block means of ``k x k`` pixels of 2-D bands of rows arriving in order, as one array;
    rounded back to ``dtype`` so the gray scale rule stays the caller's."""
    out = np.empty((-(-rows // k), -(-cols // k)), np.float32)
    done = 0
    for part in reduced_bands(bands, rows, cols, k, name):
        out[done:done + len(part)] = part
        done += len(part)
    if np.issubdtype(dtype, np.integer):
        return np.rint(out).astype(dtype)
    return out


def reduced_bands(bands: Iterable[np.ndarray], rows: int, cols: int, k: int,
                  name: str | Path) -> Iterator[np.ndarray]:
    """Block means (float32) of ``k x k`` pixels (partial blocks at the right and bottom edges) of
    2-D bands of rows arriving in order, yielded as bands of output rows as soon as they are whole:
    the caller holds one band, never the image (the web viewer's tiles are cut from these)."""
    out_rows = -(-rows // k)
    if k == 1:  # the samples themselves: no sums to make
        bands = (band.astype(np.float32) for band in bands)
    starts = np.arange(0, cols, k)
    widths = np.diff(np.append(starts, cols)).astype(np.float64)
    done, pending = 0, None
    for band in bands:
        if pending is not None:
            band = np.concatenate([pending, band])
        whole = band.shape[0] // k * k
        if whole:
            n = whole // k
            if done + n > out_rows:
                break
            yield band if k == 1 else _block_means(band[:whole], k, starts, widths).astype(np.float32)
            done += n
        pending = band[whole:] if whole < band.shape[0] else None
    if pending is not None and done < out_rows:
        yield _block_means(pending, len(pending), starts, widths).astype(np.float32)
        done += 1
    if done != out_rows:
        raise ImageReadError(name, f"truncated image data: {min(rows, done * k):,} of {rows:,} rows decoded")


def _block_means(band: np.ndarray, k: int, starts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """(k * n, cols) → (n, blocks): each block's mean (``k`` rows by ``widths`` columns)."""
    rows = band.reshape(-1, k, band.shape[1]).sum(axis=1, dtype=np.float64)  # first: k times less data
    return np.add.reduceat(rows, starts, axis=1) / (k * widths)


# ---- PNG ----------------------------------------------------------------------------------------

def _chunks(data: bytes, name: str | Path) -> Iterator[tuple[bytes, memoryview]]:
    """(type, body) of each PNG chunk, without copying bodies."""
    view, i = memoryview(data), len(_PNG_SIG)
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind = bytes(data[i + 4:i + 8])
        if i + 12 + length > len(data):
            raise ImageReadError(name, f"truncated PNG: chunk {kind!r} runs past the end of the file")
        yield kind, view[i + 8:i + 8 + length]
        if kind == b"IEND":
            return
        i += 12 + length


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _stored_zlib(raw: bytes) -> bytes:
    """``raw`` as a zlib stream of stored (uncompressed) blocks: only copies, no compression work."""
    parts = [b"\x78\x01"]
    for i in range(0, max(len(raw), 1), 0xFFFF):
        block = raw[i:i + 0xFFFF]
        final = 1 if i + 0xFFFF >= len(raw) else 0
        parts += [struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF), block]
    parts.append(struct.pack(">I", zlib.adler32(raw)))
    return b"".join(parts)


def _png_bands(data: bytes, name: str | Path,
               gray: Callable[[np.ndarray], np.ndarray]) -> tuple[Iterator[np.ndarray], np.dtype]:
    """Gray bands of rows of a non-interlaced PNG, and their dtype."""
    chunks = list(_chunks(data, name))
    kind, ihdr = chunks[0] if chunks else (b"", memoryview(b""))
    if kind != b"IHDR" or len(ihdr) != 13:
        raise ImageReadError(name, "truncated PNG: header (IHDR) missing")
    _, _, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    if interlace:
        raise ImageReadError(name, "interlaced (Adam7) PNG over the decode budget: it cannot be read in parts; "
                                   "save it without interlacing")
    if ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageReadError(name, f"corrupt PNG header (colour type {ctype}, bit depth {depth})")
    palette = next((bytes(body) for kind, body in chunks if kind == b"PLTE"), None)
    if ctype == 3 and palette is None:
        raise ImageReadError(name, "corrupt PNG: palette image without a palette (PLTE)")
    idats = [body for kind, body in chunks if kind == b"IDAT"]
    dtype = np.dtype(np.uint16 if depth == 16 else np.uint8)
    return _png_rows(idats, bytes(ihdr), name, palette, gray), dtype


def _inflated(parts: list[memoryview], size: int, name: str | Path) -> Iterator[bytes]:
    """The zlib stream split over ``parts``, inflated at most ``size`` bytes at a time (a 1.8 MB
    stream can hold 1.5 GB). ISA-L's inflate: 6x zlib's speed on the same streams."""
    inflate = isal_zlib.decompressobj()
    for body in [*parts, memoryview(b"")]:  # the empty part drains what the decompressor still holds
        tail: bytes | memoryview = body
        while True:
            try:
                out = inflate.decompress(tail, size)
            except isal_zlib.error as exc:
                raise ImageReadError(name, f"corrupt PNG image data ({exc})") from None
            tail = inflate.unconsumed_tail
            if out:
                yield out
            if not tail and len(out) < size:
                break


def _png_rows(idats: list[memoryview], ihdr: bytes, name: str | Path, palette: bytes | None,
              gray: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
    cols, rows, depth, ctype = struct.unpack(">IIBB", ihdr[:10])
    line = 1 + -(-cols * _PNG_CHANNELS[ctype] * depth // 8)  # filter byte + samples
    band = np.zeros((1 + max(1, _BAND_BYTES // line), line), np.uint8)  # row 0: the row above, unfiltered
    flat = band.reshape(-1)
    filled, left = line, rows
    for out in _with_end(_inflated(idats, band.nbytes - line, name)):
        view = memoryview(out or b"")
        while left and (len(view) or (out is None and filled >= 2 * line)):
            take = min(len(view), flat.size - filled)
            flat[filled:filled + take] = np.frombuffer(view[:take], np.uint8)
            filled, view = filled + take, view[take:]
            if filled < flat.size and out is not None:
                continue
            n = min(left, filled // line - 1)
            raw = _unfilter(band[:n + 1], ihdr, name)
            band[0, 0], band[0, 1:] = 0, raw[-1]
            filled, left = line, left - n
            yield _png_gray(raw[1:], ctype, depth, cols, palette, gray)


def _with_end(pieces: Iterator[bytes]) -> Iterator[bytes | None]:
    yield from pieces
    yield None


def _unfilter(filtered: np.ndarray, ihdr: bytes, name: str | Path) -> np.ndarray:
    """Rows of filtered PNG scanlines, (rows, 1 + stride), the first one unfiltered → their raw
    bytes, (rows, stride).

    None, Sub and Up (bytewise, no neighbour on the left in the same pass) are undone in numpy;
    a band with Average or Paeth rows goes to libpng as a PNG of the same bytes per pixel and row
    (a palette or sub-byte image declared 8-bit gray of ``stride`` columns: filters work on bytes).
    """
    cols, _, depth, ctype = struct.unpack(">IIBB", ihdr[:10])
    bpp = max(1, _PNG_CHANNELS[ctype] * depth // 8)
    stride = filtered.shape[1] - 1
    kinds = filtered[1:, 0]
    if kinds.max() <= 2:
        out = np.ascontiguousarray(filtered[:, 1:])
        for i in np.flatnonzero(kinds) + 1:
            if filtered[i, 0] == 1:
                out[i] = np.cumsum(out[i].reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
            else:
                out[i] += out[i - 1]
        return out
    if ctype == 3 or depth < 8:
        head = struct.pack(">IIBBBBB", stride, len(filtered), 8, 0, 0, 0, 0)
    else:
        head = struct.pack(">IIBBBBB", cols, len(filtered), depth, ctype, 0, 0, 0)
    stored = _stored_zlib(filtered.tobytes())
    png = _PNG_SIG + _chunk(b"IHDR", head) + _chunk(b"IDAT", stored) + _chunk(b"IEND", b"")
    try:
        arr = imagecodecs.png_decode(png)
    except (imagecodecs.PngError, ValueError) as exc:  # a filter byte out of range and the like
        raise ImageReadError(name, f"corrupt PNG image data ({exc})") from None
    if arr.dtype == np.uint16:
        arr = arr.astype(">u2")
    return np.ascontiguousarray(arr).view(np.uint8).reshape(len(filtered), stride)


def _png_gray(raw: np.ndarray, ctype: int, depth: int, cols: int, palette: bytes | None,
              gray: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Raw row bytes (rows, stride) → gray samples as a whole decode gives them."""
    if depth < 8:
        bits = np.unpackbits(raw, axis=1)[:, :cols * depth].reshape(len(raw), cols, depth)
        values = (bits * (1 << np.arange(depth - 1, -1, -1, dtype=np.uint8))).sum(axis=2, dtype=np.uint8)
        if ctype != 3:
            return values * np.uint8(255 // ((1 << depth) - 1))
        raw = values
    if ctype == 3 and palette is not None:
        rgb = np.frombuffer(palette, np.uint8)[: len(palette) // 3 * 3].reshape(-1, 3).astype(np.float32)
        lut = np.zeros(256, np.uint8)
        lut[: len(rgb)] = np.rint(rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
        return lut[raw[:, :cols]]
    samples = raw.view(">u2").astype(np.uint16) if depth == 16 else raw
    samples = samples.reshape(len(raw), cols, _PNG_CHANNELS[ctype])
    return samples[..., 0] if samples.shape[2] == 1 else gray(samples)


# ---- TIFF ---------------------------------------------------------------------------------------

def _tiff_reduced(data: bytes, name: str | Path, rows: int, cols: int, k: int, max_bytes: int,
                  tiff_2d: Callable[[np.ndarray, tifffile.TiffPage, str], np.ndarray],
                  ) -> tuple[np.ndarray, SemMetadata | None]:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        gray_bands = _tiff_bands(tif.pages.first, data, name, rows, cols, max_bytes, tiff_2d)
        first = next(gray_bands, None)
        if first is None:
            raise ImageReadError(name, "TIFF holds no image data")
        out = _reduce(_chain(first, gray_bands), rows, cols, k, first.dtype, name)
        return out, parse_tiff_tags(tif)


def _tiff_bands(page: tifffile.TiffPage, data: bytes, name: str | Path, rows: int, cols: int, max_bytes: int,
                tiff_2d: Callable[[np.ndarray, tifffile.TiffPage, str], np.ndarray]) -> Iterator[np.ndarray]:
    """Gray bands of rows of a TIFF page; what cannot be read in parts is refused at the first band."""
    samples = page.samplesperpixel
    if page.planarconfig == 2 and samples > 1:
        raise ImageReadError(name, "TIFF with separate colour planes over the decode budget: "
                                   "it cannot be read in parts")
    if page.imagedepth > 1:
        raise ImageReadError(name, "volume TIFF (image depth > 1) over the decode budget: it cannot be read in parts")
    axes = "YXS" if samples > 1 else "YX"
    seg_rows = page.tilelength if page.is_tiled else min(page.rowsperstrip or rows, rows)
    seg_bytes = seg_rows * (page.tilewidth if page.is_tiled else cols) * samples * page.dtype.itemsize
    contiguous = page.compression == 1 and bool(page.is_contiguous)
    if not contiguous and seg_bytes > max_bytes // 4:
        raise ImageReadError(name, f"TIFF whose compressed strips or tiles decode to {seg_bytes / 2**20:,.0f} MiB each "
                                   f"is over the decode budget of {max_bytes / 2**20:,.0f} MiB: it cannot be read "
                                   "in parts")
    if contiguous:
        bands = _contiguous_bands(data, page, page.dataoffsets[0], rows, cols, samples)
    else:
        bands = _segment_bands(page, rows, cols, samples)
    for b in bands:
        yield tiff_2d(b if samples > 1 else b[..., 0], page, axes)


def gray_bands(data: bytes, name: str | Path, fmt: str, rows: int, cols: int, *, max_bytes: int,
               gray: Callable[[np.ndarray], np.ndarray],
               tiff_2d: Callable[[np.ndarray, tifffile.TiffPage, str], np.ndarray]) -> Iterator[np.ndarray]:
    """The image's gray samples in their own dtype, band by band of rows from the top (each about
    ``_BAND_BYTES``); ``ImageReadError`` (at the first band) when it cannot be read in parts.
    ``gray`` and ``tiff_2d`` as for :func:`decode_reduced`."""
    if fmt == "PNG":
        yield from _png_bands(data, name, gray)[0]
    elif fmt == "TIFF":
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            yield from _tiff_bands(tif.pages.first, data, name, rows, cols, max_bytes, tiff_2d)
    else:
        raise ImageReadError(name, f"{fmt} image: it cannot be read in parts")


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _contiguous_bands(data: bytes, page: tifffile.TiffPage, offset: int, rows: int, cols: int,
                      samples: int) -> Iterator[np.ndarray]:
    """An uncompressed page as views of the file's bytes: no copy until the band's gray conversion."""
    dtype = page.dtype.newbyteorder(page.parent.byteorder)
    pixels = np.frombuffer(data, dtype, rows * cols * samples, offset).reshape(rows, cols, samples)
    step = max(1, _BAND_BYTES // (cols * samples * dtype.itemsize))
    for r in range(0, rows, step):
        yield pixels[r:r + step].astype(page.dtype.newbyteorder("="), copy=False)


def _segment_bands(page: tifffile.TiffPage, rows: int, cols: int, samples: int) -> Iterator[np.ndarray]:
    """Strips as they decode; tiles gathered into one band per row of tiles."""
    band: np.ndarray | None = None
    band_top = 0
    for segment, index, _ in page.segments(maxworkers=1, buffersize=_BAND_BYTES):  # else 256 MB read ahead
        top, left = index[2], index[3]
        if not page.is_tiled:
            if segment is None:
                continue
            yield segment.reshape(-1, cols, samples)[: rows - top]
            continue
        if band is not None and top != band_top:
            yield band
            band = None
        if band is None:
            band = np.zeros((min(page.tilelength, rows - top), cols, samples), page.dtype)
            band_top = top
        if segment is not None:
            tile = segment.reshape(page.tilelength, page.tilewidth, samples)
            band[:, left:left + page.tilewidth] = tile[: band.shape[0], : cols - left]
    if band is not None:
        yield band
