"""Images over the decode budget are decoded band by band and area-reduced (semcat.large_decode):
the result matches a whole decode of the same file, and what cannot be read in parts is refused."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

import semcat.large_decode
from semcat.errors import ImageReadError
from semcat.images import read_image_bytes

BUDGET = 600_000  # bytes: every test image decodes whole to more (1.08 MB and up), its reductions to less


@pytest.fixture(autouse=True)
def small_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of a few rows, so a 1200-row test image takes many bands with rows carried over."""
    monkeypatch.setattr(semcat.large_decode, "_BAND_BYTES", 20_000)


def _picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = cv2.resize(rng.random((12, 9)).astype(np.float32), (900, 1200), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 0.05, smooth.shape), 0, 1)


def _pil_png(arr: np.ndarray, mode: str | None = None, colours: int | None = None, **save) -> bytes:
    im = Image.fromarray(arr, mode)
    if colours:
        im = im.quantize(colours)
    out = io.BytesIO()
    im.save(out, format="PNG", **save)
    return out.getvalue()


def _tiff(arr: np.ndarray, **kw) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, arr, **kw)
    return out.getvalue()


def _interlaced(png: bytes) -> bytes:
    """The PNG with its IHDR saying Adam7 (refused from the header, so the pixels need not match)."""
    ihdr = png[12:29][:16] + b"\x01"
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


P = _picture()
G8, G16 = (P * 255).astype(np.uint8), (P * 65535).astype(np.uint16)
RGB8 = np.dstack([G8, 255 - G8, G8 // 2])
RGBA16 = np.dstack([G16, G16 // 2, 65535 - G16, np.full_like(G16, 65535)])
FILES = {
    "PNG gray 16-bit (adaptive filters: Paeth, Average through libpng)": lambda: cv2.imencode(".png", G16)[1].tobytes(),
    "PNG RGBA 16-bit": lambda: cv2.imencode(".png", RGBA16)[1].tobytes(),
    "PNG RGB 8-bit": lambda: _pil_png(RGB8),
    "PNG palette 4-bit": lambda: _pil_png(RGB8, "RGB", colours=16, bits=4),
    "PNG 1-bit": lambda: _pil_png(G8 > 128),
    "TIFF 16-bit uncompressed": lambda: _tiff(G16),
    "TIFF 8-bit deflate strips": lambda: _tiff(G8, compression="zlib", rowsperstrip=16),
    "TIFF RGB tiles": lambda: _tiff(RGB8, tile=(64, 128), compression="zlib", photometric="rgb"),
    "TIFF float32": lambda: _tiff(P.astype(np.float32), rowsperstrip=50),
    "TIFF MinIsWhite PackBits": lambda: _tiff(G8, photometric="miniswhite", compression="packbits", rowsperstrip=8),
}


@pytest.mark.parametrize("kind", FILES)
@pytest.mark.parametrize("max_side", [64, 300])
def test_reduced_decode_matches_a_whole_decode(kind: str, max_side: int) -> None:
    data = FILES[kind]()
    whole, info = read_image_bytes(data, kind, max_side=max_side, crop_databar=False)
    reduced, info_r = read_image_bytes(data, kind, max_side=max_side, crop_databar=False, max_decode_bytes=BUDGET)
    assert reduced.shape == whole.shape and info_r.shape == info.shape == (1200, 900)
    assert info_r.bit_depth == info.bit_depth and info_r.channels == info.channels
    # the same samples; colour to gray by OpenCV's rule against libpng's differs by one level of 8 bits
    assert np.abs(reduced - whole).max() <= 2.1 / 255, kind


def test_over_budget_without_reduction_is_refused_in_one_line() -> None:
    with pytest.raises(ImageReadError, match="reduced by 1 still need .* over the decode budget"):
        read_image_bytes(FILES["PNG RGBA 16-bit"](), "big.png", max_decode_bytes=BUDGET)


@pytest.mark.parametrize("data, why", [
    (lambda: _interlaced(_pil_png(RGB8)), "interlaced"),
    (lambda: _tiff(G16, compression="zlib", rowsperstrip=1200), "strips or tiles decode to"),
    (lambda: _tiff(np.stack([G8, G8, G8]), planarconfig="separate", photometric="rgb"), "separate colour planes"),
], ids=["interlaced PNG", "TIFF in one compressed strip", "TIFF with separate planes"])
def test_what_cannot_be_read_in_parts_is_refused(data, why: str) -> None:
    with pytest.raises(ImageReadError, match=why) as err:
        read_image_bytes(data(), "x", max_side=64, max_decode_bytes=BUDGET)
    assert "\n" not in str(err.value)


def test_truncated_or_corrupt_png_data_is_an_image_read_error() -> None:
    data = FILES["PNG RGBA 16-bit"]()
    idat = data.index(b"IDAT")
    cut = data[: idat + len(data[idat:]) // 2] + data[-12:]  # half the pixel data, then IEND
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        read_image_bytes(cut, "cut.png", max_side=64, max_decode_bytes=BUDGET)
    flipped = bytearray(data)
    flipped[idat + 40: idat + 60] = bytes(20)
    with pytest.raises(ImageReadError):
        read_image_bytes(bytes(flipped), "flipped.png", max_side=64, max_decode_bytes=BUDGET)
