"""The malformed-file corpus, built at test time (no binary junk in the repository).

``build_corpus(folder)`` writes every case into ``folder`` and returns one :class:`Case` each:
``bad`` files must be refused with one clear error line naming them, ``good`` files (valid but
odd: float, 32-bit, RGBA, palette, multi-page, 16-bit, misleading suffix, non-UTF-8 name, huge
metadata) must be processed, and ``ignored`` entries (folders named like images, FIFOs, symlink
loops, hidden files) must be skipped by folder scans without a hang or a crash.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from semcat.synth import generate_image

NON_UTF8_DIR = ".non_utf8_names"
"""Sub-folder holding the cases whose file names are not valid UTF-8 (bytes names); hidden, so
a scan of the corpus root skips it and callers choose whether to include it."""

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class Case:
    """One corpus entry: its path (bytes-safe ``Path``), what it is and what must happen to it."""

    path: Path
    what: str
    expect: str  # "bad" | "good" | "ignored"


def _sem(seed: int = 0, size: int = 96) -> np.ndarray:
    return generate_image("Particles", np.random.default_rng(seed), size=size, databar=True)


def _tiff(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def _enc(ext: str, arr: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok
    return buf.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(side: int = 100_000) -> bytes:
    """A valid-looking PNG header claiming side x side pixels with a tiny deflate stream."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 65536, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


AMPLIFYING_BLOCKS = 8
"""The amplifying PNG shows ``AMPLIFYING_BLOCKS`` x ``AMPLIFYING_BLOCKS`` flat RGBA tiles."""


def amplifying_picture(side: int, blocks: int = AMPLIFYING_BLOCKS) -> np.ndarray:
    """The picture :func:`amplifying_png` encodes, at ``side`` x ``side`` (16-bit RGBA): flat tiles
    of distinct colours, so a reduced decode is compared with a small version of the same picture."""
    b, j = np.meshgrid(np.arange(blocks), np.arange(blocks), indexing="ij")
    tiles = np.stack([(b * 3 + j * 5) % 8 * 8000 + 1234, (b + j) % 2 * 40000 + 10000 + 77 * j,
                      np.full_like(b, 30000) + 501 * b, np.full_like(b, 65535)], axis=-1).astype(np.uint16)
    index = np.arange(side) * blocks // side
    return tiles[index][:, index]


def amplifying_png(side: int = 14_000) -> bytes:
    """A valid 16-bit RGBA PNG of ``side`` x ``side`` pixels (:func:`amplifying_picture`): under the
    pixel limit, ~1.8 MB on disk, 1.5 GB once decoded (issue 18's upload that cost +750 MB and 18 s).
    Built in about a second: the first row of each band of tiles (Sub filter: zeros but at tile
    edges) and an Up-filtered row of zeros (the row above again) are each deflated once after a
    full flush, and the stream repeats them."""
    tiles = amplifying_picture(AMPLIFYING_BLOCKS)
    band_of = np.arange(side) * AMPLIFYING_BLOCKS // side
    deflate = zlib.compressobj(9)
    firsts, pieces = [], []
    for band in range(AMPLIFYING_BLOCKS):
        raw = tiles[band][band_of].astype(">u2").view(np.uint8).reshape(side, 8)
        filtered = raw.copy()
        filtered[1:] -= raw[:-1]  # Sub: each byte minus the same byte of the pixel on its left
        firsts.append(b"\x01" + filtered.tobytes())
        pieces.append(deflate.compress(firsts[-1]) + deflate.flush(zlib.Z_FULL_FLUSH))
    header, pieces[0] = pieces[0][:2], pieces[0][2:]  # the zlib header came with the first piece
    up = b"\x02" + bytes(side * 8)
    repeat = deflate.compress(up) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()[:-4]  # final block; its checksum covered only what was fed here
    idat, adler = [header], 1
    for y in range(side):
        first = y == 0 or band_of[y] != band_of[y - 1]
        idat.append(pieces[band_of[y]] if first else repeat)
        adler = zlib.adler32(firsts[band_of[y]] if first else up, adler)
    idat += [end, struct.pack(">I", adler)]
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(idat))
            + _png_chunk(b"IEND", b""))


def _tiff_with_dims(rows: int, cols: int, compression: str | None = None) -> bytes:
    """A small valid TIFF whose ImageWidth/ImageLength tags are patched to absurd values."""
    data = bytearray(_tiff(np.zeros((16, 16), np.uint8), compression=compression))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        tags = tif.pages.first.tags
        for code, value in ((256, cols), (257, rows)):
            tag = tags[code]
            fmt = "<I" if tag.dtype == 4 else "<H"
            if fmt == "<H" and value > 0xFFFF:  # widen SHORT to LONG in place
                struct.pack_into("<H", data, tag.offset + 2, 4)
                fmt = "<I"
            struct.pack_into(fmt, data, tag.valueoffset, value)
    return bytes(data)


def _pil_tiff(arr: np.ndarray, compression: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF", compression=compression)
    return buf.getvalue()


def _palette_tiff() -> bytes:
    idx = (_sem(3) // 32).astype(np.uint8)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :8] = np.linspace(0, 65535, 8, dtype=np.uint16)
    return _tiff(idx, photometric="palette", colormap=cmap)


def _palette_png() -> bytes:
    from PIL import Image

    img = Image.fromarray(_sem(4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _fei_junk_tiff() -> bytes:
    junk = "[User]\nDate=99/99/9999\n[Scan]\nPixelWidth=banana\nHorFieldsize=\x00\x01\n[Beam]\nHV=-inf\n"
    return _tiff(_sem(5), extratags=[(34682, "s", 0, junk, True)])


def _cases() -> list[tuple[str | bytes, str, str, Callable[[], bytes] | None]]:
    """(file name, description, expect, content builder); builder None = special entry."""
    sem = _sem()
    tif = _tiff(sem)
    png = _enc(".png", sem)
    jpg = _enc(".jpg", sem, cv2.IMWRITE_JPEG_QUALITY, 90)
    rgb = np.dstack([sem, sem // 2, 255 - sem])
    bad: list[tuple[str | bytes, str, Callable[[], bytes]]] = [
        ("zero_bytes.tif", "zero-byte TIFF", lambda: b""),
        ("zero_bytes.png", "zero-byte PNG", lambda: b""),
        ("truncated_half.tif", "TIFF cut in half", lambda: tif[: len(tif) // 2]),
        ("truncated_header.tif", "TIFF cut inside the header", lambda: tif[:6]),
        ("truncated_ifd.tif", "TIFF cut inside the first IFD", lambda: tif[:20]),
        ("truncated.png", "PNG cut in half", lambda: png[: len(png) // 2]),
        ("truncated_ihdr.png", "PNG cut inside IHDR", lambda: png[:20]),
        ("truncated.jpg", "JPEG cut in half", lambda: jpg[: len(jpg) // 2]),
        ("soi_only.jpg", "JPEG start marker only", lambda: b"\xff\xd8\xff"),
        ("garbage_after_soi.jpg", "JPEG marker then noise", lambda: b"\xff\xd8\xff" + os.urandom(2000)),
        ("text.tif", "text file named .tif", lambda: b"This is not an image.\n" * 20),
        ("html.png", "HTML page named .png", lambda: b"<!doctype html><html><body>404</body></html>"),
        ("gif_named.tif", "GIF content named .tif", lambda: b"GIF89a" + b"\x00" * 200),
        ("pdf_named.jpg", "PDF content named .jpg", lambda: b"%PDF-1.4\n" + b"0" * 200),
        ("zip_named.tiff", "ZIP content named .tiff", lambda: b"PK\x03\x04" + b"\x00" * 200),
        ("random.bmp", "random bytes named .bmp", lambda: os.urandom(4096)),
        ("truncated.bmp", "BMP header only", lambda: _enc(".bmp", sem)[:40]),
        ("absurd_dims.tif", "TIFF header claiming 100000 x 100000 (raw)", lambda: _tiff_with_dims(100_000, 100_000)),
        ("bomb_deflate.tif", "TIFF bomb: 100000 x 100000, deflate", lambda: _tiff_with_dims(100_000, 100_000, "zlib")),
        ("bomb.png", "PNG bomb: IHDR 100000 x 100000", _png_bomb),
        ("zero_width.tif", "TIFF with width 0", lambda: _tiff_with_dims(16, 0)),
        ("one_pixel.png", "1-pixel PNG", lambda: _enc(".png", np.full((1, 1), 128, np.uint8))),
        ("one_pixel.tif", "1-pixel TIFF", lambda: _tiff(np.full((1, 1), 128, np.uint8))),
        ("seven_px.jpg", "7x7 JPEG (below the 8-px minimum)", lambda: _enc(".jpg", sem[:7, :7])),
        ("strip_past_eof.tif", "TIFF whose strip offset points past the end",
         lambda: tif[: len(tif) - 200] if len(tif) > 400 else tif[:100]),
        ("png_bad_crc.png", "PNG with corrupted IDAT bytes",
         lambda: png[:60] + bytes(b ^ 0x5A for b in png[60:-12]) + png[-12:]),
        (b"trunc_\xff\xfe_latin1.tif", "truncated TIFF with a non-UTF-8 name", lambda: tif[:50]),
    ]
    good: list[tuple[str | bytes, str, Callable[[], bytes]]] = [
        ("plain.tif", "reference 8-bit TIFF", lambda: tif),
        ("png_named.tif", "valid PNG named .tif", lambda: png),
        ("jpeg_named.png", "valid JPEG named .png", lambda: jpg),
        ("float32.tif", "float32 TIFF", lambda: _tiff(sem.astype(np.float32) / 7.0)),
        ("float64_neg.tif", "float64 TIFF with negative values", lambda: _tiff(sem.astype(np.float64) - 100.0)),
        ("int32.tif", "32-bit signed int TIFF", lambda: _tiff(sem.astype(np.int32) * 1000 - 50_000)),
        ("uint32.tif", "32-bit unsigned int TIFF", lambda: _tiff(sem.astype(np.uint32) * 70_000)),
        ("uint16.tif", "16-bit TIFF", lambda: _tiff(sem.astype(np.uint16) * 257)),
        ("uint16_bigendian.tif", "16-bit big-endian TIFF", lambda: _tiff(sem.astype(np.uint16) * 16, byteorder=">")),
        ("uint16.png", "16-bit PNG", lambda: _enc(".png", sem.astype(np.uint16) * 257)),
        ("bigtiff.tif", "BigTIFF", lambda: _tiff(sem, bigtiff=True)),
        ("rgb.tif", "RGB TIFF", lambda: _tiff(rgb)),
        ("rgba.tif", "RGBA TIFF", lambda: _tiff(np.dstack([rgb, np.full_like(sem, 200)]), photometric="rgb")),
        ("rgba.png", "RGBA PNG", lambda: _enc(".png", np.dstack([rgb, np.full_like(sem, 255)]))),
        ("palette.png", "palette PNG", _palette_png),
        ("palette.tif", "palette TIFF", _palette_tiff),
        ("multipage.tif", "3-page TIFF (first page used)", lambda: _tiff(np.stack([sem, sem // 2, sem // 3]))),
        ("bilevel.tif", "1-bit TIFF", lambda: _tiff(sem > 128)),
        ("constant.tif", "constant (all-black) image", lambda: _tiff(np.zeros((64, 64), np.uint8))),
        ("thin.png", "extreme aspect ratio 8 x 4000", lambda: _enc(".png", np.tile(sem[:8], (1, 42))[:, :4000])),
        ("lzw.tif", "LZW-compressed TIFF (written by Pillow)", lambda: _pil_tiff(sem, "tiff_lzw")),
        ("deflate.tif", "deflate-compressed TIFF", lambda: _tiff(sem, compression="zlib")),
        ("huge_description.tif", "TIFF with a 4 MB ImageDescription", lambda: _tiff(sem, description="x" * 4_000_000)),
        ("fei_junk_meta.tif", "TIFF with malformed FEI metadata", _fei_junk_tiff),
        ("grey.bmp", "8-bit BMP", lambda: _enc(".bmp", sem)),
        (b"name_\xff\xfe_latin1.tif", "valid TIFF with a non-UTF-8 file name", lambda: _tiff(_sem(6))),
        ("UPPER.TIFF", "upper-case suffix", lambda: _tiff(_sem(7))),
    ]
    out: list[tuple[str | bytes, str, str, Callable[[], bytes] | None]] = []
    out += [(n, w, "bad", b) for n, w, b in bad]
    out += [(n, w, "good", b) for n, w, b in good]
    return out


def build_corpus(folder: str | Path) -> list[Case]:
    """Write every case into ``folder`` (created) and return them, bad ones first."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    for name, what, expect, build in _cases():
        folder = root / NON_UTF8_DIR if isinstance(name, bytes) else root
        folder.mkdir(exist_ok=True)
        path = Path(os.fsdecode(os.path.join(os.fsencode(folder), name if isinstance(name, bytes) else os.fsencode(name))))
        assert build is not None
        with open(os.fsencode(path), "wb") as f:
            f.write(build())
        cases.append(Case(path, what, expect))
    # Unreadable: chmod 000 stops everyone but root; /proc/self/mem fails for root too (EIO). The
    # link leads out of the folder, so a folder scan skips it; named explicitly it is an error line.
    locked = root / "locked.tif"
    locked.write_bytes(_tiff(_sem(8)))
    locked.chmod(0)
    cases.append(Case(locked, "permissions 000", "good" if IS_ROOT else "bad"))
    # A JEOL-style image whose sidecar is garbage: one warning line, the image is still processed.
    (root / "bad_sidecar.tif").write_bytes(_tiff(_sem(9)))
    (root / "bad_sidecar.txt").write_bytes(b"$CM_FORMAT JEOL/SEM\r\n$CM_MAG \xff\xfe?\r\n$$SM_WD -\r\n")
    cases.append(Case(root / "bad_sidecar.tif", "image with a garbage JEOL sidecar (.txt)", "good"))
    mem = root / "proc_mem.tif"
    mem.symlink_to("/proc/self/mem")
    cases.append(Case(mem, "symlink out of the folder to an unreadable file (EIO even for root)", "ignored"))
    # Entries a folder scan must skip without hanging or crashing.
    (root / "folder.tif").mkdir()
    cases.append(Case(root / "folder.tif", "folder named like an image", "ignored"))
    loop = root / "loop.tif"
    loop.symlink_to(loop.name)
    cases.append(Case(loop, "symlink loop (points to itself)", "ignored"))
    (root / "dangling.png").symlink_to(root / "does-not-exist.png")
    cases.append(Case(root / "dangling.png", "dangling symlink", "ignored"))
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    cases.append(Case(root / "sub" / "up", "folder symlink loop (sub/up -> ..)", "ignored"))
    fifo = root / "fifo.tif"
    os.mkfifo(fifo)
    cases.append(Case(fifo, "FIFO named .tif", "ignored"))
    (root / ".hidden.tif").write_bytes(b"")
    cases.append(Case(root / ".hidden.tif", "hidden file", "ignored"))
    return cases


def counts(cases: list[Case]) -> dict[str, int]:
    """How many cases of each expectation (for the figures)."""
    out = {"bad": 0, "good": 0, "ignored": 0}
    for c in cases:
        out[c.expect] += 1
    return out
