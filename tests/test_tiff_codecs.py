"""Compressed TIFFs decode to exactly the pixels of the uncompressed file (issue 16).

Every lossless compression tifffile writes, with and without a predictor, 8 and 16 bit, stripped
(also one row per strip, as some acquisition software writes) and tiled, gray, RGB and palette:
``read_image`` gives the same array as for the uncompressed file, at full size and on the
reduced-size path ``max_side`` takes. JPEG (lossy) is checked against tifffile's own decode.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from semcat.images import read_image, read_image_bytes, to_gray_float

LOSSLESS = [  # (compression, predictor): every lossless codec tifffile writes for integer images
    ("packbits", None), ("lzw", None), ("lzw", "horizontal"), ("zlib", None), ("zlib", "horizontal"),
    ("adobe_deflate", None), ("adobe_deflate", "horizontal"), ("zstd", None), ("zstd", "horizontal"),
    ("lzma", None), ("lzma", "horizontal"),
]
LAYOUTS = {"stripped": {}, "one_row_strips": {"rowsperstrip": 1}, "tiled": {"tile": (32, 48)}}


def _content(dtype: type, rows: int = 100, cols: int = 136) -> np.ndarray:
    """Smooth gradient + noise + a flat dark bar with a bright mark: runs and texture for every codec."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:rows, 0:cols]
    a = 0.5 + 0.25 * np.sin(x / 9.0) * np.cos(y / 7.0) + rng.normal(0, 0.05, (rows, cols))
    a[-14:] = 0.0
    a[-8:-5, 10:60] = 1.0
    return (np.clip(a, 0, 1) * np.iinfo(dtype).max).astype(dtype)


def _tiff(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["8bit", "16bit"])
@pytest.mark.parametrize("compression,predictor", LOSSLESS, ids=[f"{c}-{p or 'nopred'}" for c, p in LOSSLESS])
def test_lossless_compression_gives_the_uncompressed_pixels(compression, predictor, dtype, layout):
    arr = _content(dtype)
    plain = _tiff(arr, **LAYOUTS[layout])
    packed = _tiff(arr, compression=compression, predictor=predictor, **LAYOUTS[layout])
    with tifffile.TiffFile(io.BytesIO(packed)) as tif:  # the file really is compressed
        assert tif.pages.first.compression != tifffile.COMPRESSION.NONE
    for kw in ({"crop_databar": False}, {"max_side": 50}, {}):
        want, want_info = read_image_bytes(plain, "plain.tif", **kw)
        got, got_info = read_image_bytes(packed, "packed.tif", **kw)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want), f"{compression}/{predictor} differs with {kw}"
        assert got_info.databar_rows == want_info.databar_rows
    full, _ = read_image_bytes(packed, "packed.tif", crop_databar=False)
    assert np.array_equal(full, to_gray_float(arr))


@pytest.mark.parametrize("compression", ["packbits", "lzw", "zlib", "zstd"])
def test_rgb_palette_miniswhite_and_big_endian_keep_their_meaning(compression):
    g = _content(np.uint8)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[0] = np.arange(256) * 257
    cmap[1] = (255 - np.arange(256)) * 257
    cases = {
        "rgb": (np.dstack([g, g // 2, 255 - g]), {}),
        "rgba": (np.dstack([g, g // 2, 255 - g, g]), {"photometric": "rgb"}),
        "planar": (np.stack([g, g // 2, 255 - g]), {"photometric": "rgb", "planarconfig": "separate"}),
        "palette": (g, {"photometric": "palette", "colormap": cmap}),
        "miniswhite": (g, {"photometric": "miniswhite"}),
        "big_endian_16": (g.astype(np.uint16) * 257, {"byteorder": ">"}),
    }
    for name, (arr, kw) in cases.items():
        want, _ = read_image_bytes(_tiff(arr, **kw), "plain.tif", crop_databar=False)
        got, _ = read_image_bytes(_tiff(arr, compression=compression, **kw), "packed.tif", crop_databar=False)
        assert np.array_equal(got, want), f"{name} with {compression}"


def test_lossless_webp_rgb_and_jpeg_match_tifffile(tmp_path):
    g = _content(np.uint8)
    rgb = np.dstack([g, g // 2, 255 - g])
    webp = _tiff(rgb, compression="webp", compressionargs={"lossless": True})
    assert np.array_equal(read_image_bytes(webp, "w.tif", crop_databar=False)[0],
                          read_image_bytes(_tiff(rgb), "p.tif", crop_databar=False)[0])
    path = tmp_path / "j.tif"
    tifffile.imwrite(path, g, compression="jpeg", compressionargs={"level": 90})
    lossy = to_gray_float(tifffile.imread(path))
    assert np.array_equal(read_image(path, crop_databar=False)[0], lossy)


def test_corrupt_compressed_strip_is_one_error_not_a_crash():
    from semcat.errors import ImageReadError

    data = bytearray(_tiff(_content(np.uint8), compression="lzw"))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        off = tif.pages.first.dataoffsets[0]
    data[off: off + 200] = bytes(range(200))
    try:
        img, _ = read_image_bytes(bytes(data), "bad.tif")
    except ImageReadError as exc:
        assert "bad.tif" in str(exc)
    else:  # LZW resynchronises on some damage: then the image must still be the right size
        assert img.shape[1] == 136


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["8bit", "16bit"])
def test_deflate_and_zstd_strips_take_the_libdeflate_zstd_path(dtype):
    """The faster strip decoder really runs for stripped Deflate/ZSTD (with and without the
    predictor), gives the exact samples, and hands a corrupt strip back (None) to libtiff/tifffile."""
    from semcat.images import _strip_pixels

    arr = _content(dtype)
    for compression in ("zlib", "adobe_deflate", "zstd"):
        for kw in ({}, {"predictor": "horizontal"}, {"predictor": "horizontal", "rowsperstrip": 7}):
            data = _tiff(arr, compression=compression, **kw)
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                got = _strip_pixels(tif.pages.first, data)
            assert got is not None and np.array_equal(got, arr), f"{compression} {kw}"
    data = bytearray(_tiff(arr, compression="zlib"))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        offset = tif.pages.first.dataoffsets[0]
        data[offset + 2: offset + 40] = bytes(38)
        assert _strip_pixels(tif.pages.first, bytes(data)) is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["8bit", "16bit"])
def test_uncompressed_pages_are_a_view_of_the_bytes_with_tifffiles_samples(dtype):
    """Uncompressed gray pages in one run of bytes skip tifffile's copy (issue 21) and give its samples;
    other layouts (tiled, big-endian, colour, a truncated file) are left to tifffile (None)."""
    from semcat.images import _contiguous_pixels

    arr = _content(dtype)
    cases = {"stripped": ({}, True), "one_row_strips": ({"rowsperstrip": 1}, True),
             "miniswhite": ({"photometric": "miniswhite"}, True), "tiled": ({"tile": (32, 48)}, False),
             "big_endian": ({"byteorder": ">"}, dtype is np.uint8), "rgb": ({"photometric": "rgb"}, False)}
    for name, (kw, viewed) in cases.items():
        data = _tiff(np.dstack([arr, arr, arr]) if name == "rgb" else arr, **kw)
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            got = _contiguous_pixels(tif.pages.first, data)
            want = tif.pages.first.asarray()
            assert (got is not None) == viewed, name
            if viewed:
                assert got.dtype == want.dtype and np.array_equal(got, want), name
                assert not got.flags.writeable  # a view of the file's bytes, never written
                assert _contiguous_pixels(tif.pages.first, data[:-10]) is None  # truncated: tifffile explains
        if name not in ("miniswhite", "rgb"):  # their meaning is applied after (tested above)
            img, _ = read_image_bytes(data, f"{name}.tif", crop_databar=False)
            assert np.array_equal(img, to_gray_float(tifffile.imread(io.BytesIO(data)))), name


def test_palette_lookup_gives_numpys_luminance():
    """8-bit palette pages (Zeiss writes them) are looked up with OpenCV's LUT (issue 21): the same
    luminance as the colour map's numpy lookup, for a random map."""
    rng = np.random.default_rng(3)
    idx = _content(np.uint8)
    cmap = rng.integers(0, 65536, (3, 256), dtype=np.uint16)
    lum = 0.299 * cmap[0].astype(np.float32) + 0.587 * cmap[1].astype(np.float32) + 0.114 * cmap[2].astype(np.float32)
    want = (lum / 257.0).round().astype(np.uint8)[idx]
    got, _ = read_image_bytes(_tiff(idx, photometric="palette", colormap=cmap), "pal.tif", crop_databar=False)
    assert np.array_equal(got, to_gray_float(want))
