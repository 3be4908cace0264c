"""images.py: decoding every supported input, refusing bad files, data-bar detection and crop."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import data as skdata

from semcat.errors import ImageReadError
from semcat.images import detect_databar, read_image, read_image_bytes, to_gray_float


def _texture(rows: int = 120, cols: int = 160, seed: int = 3) -> np.ndarray:
    """A noisy, smoothly varying uint8 image standing in for SEM content."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(128, 60, (rows, cols)).astype(np.float32), (0, 0), 3)
    return np.clip(base + rng.normal(0, 8, (rows, cols)), 0, 255).astype(np.uint8)


def _gray(a: np.ndarray) -> np.ndarray:
    return to_gray_float(a)


# --- formats -------------------------------------------------------------------------------

def _write_tiff(path: Path, arr: np.ndarray, **kw) -> None:
    tifffile.imwrite(path, arr, **kw)


@pytest.mark.parametrize("dtype,bits", [(np.uint8, 8), (np.uint16, 16)])
def test_gray_tiff_values_follow_dtype_rule(tmp_path, dtype, bits):
    a = (np.arange(40 * 50).reshape(40, 50) % 4096).astype(dtype)
    _write_tiff(tmp_path / "a.tif", a)
    img, info = read_image(tmp_path / "a.tif", crop_databar=False)
    assert img.dtype == np.float32 and img.shape == (40, 50)
    np.testing.assert_allclose(img, a.astype(np.float64) / np.iinfo(dtype).max, atol=1e-6)
    assert (info.format, info.bit_depth, info.shape, info.channels) == ("TIFF", bits, (40, 50), 1)


def test_rgb_rgba_and_multipage_tiff(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 255  # pure red → luminance 0.299
    _write_tiff(tmp_path / "rgb.tif", rgb, photometric="rgb")
    img, info = read_image(tmp_path / "rgb.tif", crop_databar=False)
    assert info.channels == 3 and abs(float(img.mean()) - 0.299) < 0.01

    rgba = np.concatenate([rgb, np.full((30, 40, 1), 7, np.uint8)], axis=2)
    _write_tiff(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    img, info = read_image(tmp_path / "rgba.tif", crop_databar=False)
    assert info.channels == 4 and abs(float(img.mean()) - 0.299) < 0.01

    pages = np.stack([np.full((20, 24), 10, np.uint8), np.full((20, 24), 200, np.uint8)])
    _write_tiff(tmp_path / "multi.tif", pages)
    img, info = read_image(tmp_path / "multi.tif", crop_databar=False)
    assert info.shape == (20, 24) and np.allclose(img, 10 / 255)


def test_float_tiff_scaled_by_own_range(tmp_path):
    a = np.linspace(-3.0, 5.0, 20 * 30, dtype=np.float32).reshape(20, 30)
    _write_tiff(tmp_path / "f.tif", a)
    img, info = read_image(tmp_path / "f.tif", crop_databar=False)
    assert info.bit_depth == 32
    assert img.min() == 0.0 and abs(float(img.max()) - 1.0) < 1e-6


def test_palette_tiff_and_lzw_tiff(tmp_path):
    idx = np.tile(np.arange(16, dtype=np.uint8), (16, 1))
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :16] = (np.arange(16) * 4369)[None, :]  # gray ramp 0..65535
    _write_tiff(tmp_path / "pal.tif", idx, photometric="palette", colormap=cmap)
    img, info = read_image(tmp_path / "pal.tif", crop_databar=False)
    np.testing.assert_allclose(img[0], np.arange(16) * 17 / 255, atol=1 / 255)

    a = _texture(64, 80)
    ok, buf = cv2.imencode(".tif", a)  # OpenCV writes LZW, which tifffile cannot decode alone
    assert ok
    (tmp_path / "lzw.tif").write_bytes(buf.tobytes())
    img, info = read_image(tmp_path / "lzw.tif", crop_databar=False)
    assert info.format == "TIFF"
    np.testing.assert_allclose(img, a / 255, atol=1e-6)


def test_png_jpeg_bmp(tmp_path):
    a = _texture(48, 64)
    a16 = a.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "a.png"), a)
    cv2.imwrite(str(tmp_path / "a16.png"), a16)
    cv2.imwrite(str(tmp_path / "a.bmp"), a)
    cv2.imwrite(str(tmp_path / "a.jpg"), a, [cv2.IMWRITE_JPEG_QUALITY, 95])
    Image.fromarray(a).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(np.dstack([a, a, a, np.full_like(a, 9)])).save(tmp_path / "rgba.png")

    for name, fmt, bits, ch, tol in [("a.png", "PNG", 8, 1, 1e-6), ("a16.png", "PNG", 16, 1, 1e-6),
                                     ("a.bmp", "BMP", 8, 1, 1e-6), ("a.jpg", "JPEG", 8, 1, 0.05),
                                     ("pal.png", "PNG", 8, 3, 0.02), ("rgba.png", "PNG", 8, 4, 0.01)]:
        img, info = read_image(tmp_path / name, crop_databar=False)
        assert (info.format, info.bit_depth, info.channels, info.shape) == (fmt, bits, ch, (48, 64)), name
        assert float(np.abs(img - a / 255).mean()) < tol, name


def test_format_is_sniffed_not_taken_from_suffix(tmp_path):
    a = _texture(32, 32)
    cv2.imwrite(str(tmp_path / "real.png"), a)
    (tmp_path / "renamed.tif").write_bytes((tmp_path / "real.png").read_bytes())
    img, info = read_image(tmp_path / "renamed.tif", crop_databar=False)
    assert info.format == "PNG" and img.shape == (32, 32)


def test_read_image_bytes_matches_read_image(tmp_path):
    a = _texture(40, 40)
    cv2.imwrite(str(tmp_path / "a.png"), a)
    data = (tmp_path / "a.png").read_bytes()
    img1, _ = read_image(tmp_path / "a.png")
    img2, info = read_image_bytes(data, "a.png")
    assert np.array_equal(img1, img2) and info.path == "a.png"


# --- bad input -----------------------------------------------------------------------------

def _problem(path: Path, **kw) -> str:
    with pytest.raises(ImageReadError) as ei:
        read_image(path, **kw)
    assert ei.value.path == str(path)
    assert "\n" not in ei.value.problem
    return ei.value.problem


def test_bad_files_each_give_one_precise_line(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    assert _problem(tmp_path / "empty.tif") == "empty file (0 bytes)"

    (tmp_path / "notes.png").write_text("hello, this is text\n")
    assert _problem(tmp_path / "notes.png").startswith("not an image (starts with b'hello, this")

    (tmp_path / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    assert "unsupported format GIF" in _problem(tmp_path / "anim.gif")

    assert _problem(tmp_path / "missing.png") == "file not found"
    assert "folder" in _problem(tmp_path)

    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((1, 1), np.uint8))
    assert _problem(tmp_path / "one.png").startswith("image too small: 1x1 pixels")


@pytest.mark.parametrize("ext", [".tif", ".png", ".jpg"])
def test_truncated_files(tmp_path, ext):
    a = _texture(120, 160)
    full = tmp_path / f"full{ext}"
    if ext == ".tif":
        tifffile.imwrite(full, a)
    else:
        cv2.imwrite(str(full), a)
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    assert "truncated" in _problem(cut)


def _png_header_only(cols: int, rows: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_decompression_bomb_refused_from_header(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    problem = _problem(tmp_path / "bomb.png")
    assert problem.startswith("image too large: 100000x100000") and "decompression bomb" in problem

    tifffile.imwrite(tmp_path / "big.tif", np.zeros((100, 100), np.uint8))
    assert "image too large" in _problem(tmp_path / "big.tif", max_pixels=5_000)
    (tmp_path / "zero.png").write_bytes(_png_header_only(0, 50))
    assert "invalid image size 0x50" in _problem(tmp_path / "zero.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    p = tmp_path / "secret.png"
    cv2.imwrite(str(p), _texture(16, 16))
    p.chmod(0)
    try:
        assert "permission denied" in _problem(p)
    finally:
        p.chmod(0o644)


# --- downscale on decode -------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".tif", ".png", ".jpg"])
def test_max_side_downscales(tmp_path, ext):
    a = cv2.resize(_texture(96, 128), (1024, 768), interpolation=cv2.INTER_CUBIC)
    p = tmp_path / f"big{ext}"
    tifffile.imwrite(p, a) if ext == ".tif" else cv2.imwrite(str(p), a)
    img, info = read_image(p, crop_databar=False, max_side=256)
    assert max(img.shape) == 256 and info.shape == (768, 1024)
    ref = cv2.resize(a, (256, 192), interpolation=cv2.INTER_AREA) / 255
    assert img.shape == ref.shape and float(np.abs(img - ref).mean()) < 0.03


# --- dtype rule ------------------------------------------------------------------------------

def test_to_gray_float_rules():
    twelve_bit = np.array([[0, 4095]], np.uint16)
    np.testing.assert_allclose(to_gray_float(twelve_bit), [[0, 4095 / 65535]], rtol=1e-6)
    assert to_gray_float(np.full((3, 3), 2.5, np.float32)).max() == 0.0
    out = to_gray_float(np.array([[1.0, 3.0]], np.float64))
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="expected an image of shape"):
        to_gray_float(np.zeros((2, 2, 2, 2)))


# --- data bar ------------------------------------------------------------------------------

def _with_bar(img: np.ndarray, rows: int, bg: int, fg: int, *, separator: int | None = None) -> np.ndarray:
    """Append an instrument-style bar: flat background, two lines of text and a scale bar."""
    cols = img.shape[1]
    bar = np.full((rows, cols), bg, np.uint8)
    scale = rows / 70
    cv2.putText(bar, "EHT = 5.00 kV   WD = 8.5 mm   Signal A = InLens", (8, int(rows * 0.35)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, fg, 1, cv2.LINE_AA)
    cv2.putText(bar, "Mag = 20.00 K X   Date: 12 Mar 2015", (8, int(rows * 0.8)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, fg, 1, cv2.LINE_AA)
    cv2.rectangle(bar, (cols - cols // 4, int(rows * 0.55)), (cols - 12, int(rows * 0.62)), fg, -1)
    if separator is not None:
        bar[0] = separator
    return np.vstack([img, bar])


def _contents() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    moon = skdata.moon()
    dark_bottom = _texture(400, 500).astype(np.float32)
    dark_bottom[250:] *= 0.08  # dark substrate ...
    for _ in range(40):          # ... with bright particles on it
        cv2.circle(dark_bottom, (int(rng.integers(0, 500)), int(rng.integers(260, 395))), 4, 230, -1)
    return {
        "camera": skdata.camera(),
        "grass": skdata.grass(),
        "moon": moon,
        "coins": skdata.coins(),
        "hubble": cv2.cvtColor(skdata.hubble_deep_field(), cv2.COLOR_RGB2GRAY)[:600, :700],
        "texture": cv2.resize(_texture(), (640, 480)),
        "dark_bottom": dark_bottom.clip(0, 255).astype(np.uint8),
    }


@pytest.fixture(scope="module")
def contents() -> dict[str, np.ndarray]:
    return _contents()


@pytest.mark.parametrize("rows_frac", [0.05, 0.08, 0.12])
@pytest.mark.parametrize("bg,fg", [(0, 255), (255, 0), (70, 240)])
def test_detects_bars(contents, rows_frac, bg, fg):
    for name, img in contents.items():
        rows = max(12, int(img.shape[0] * rows_frac))
        found = detect_databar(_with_bar(img, rows, bg, fg))
        if (name, bg) in _HARD:
            assert found == 0 or abs(found - rows) <= 2, (name, rows, bg, found)
        else:
            assert abs(found - rows) <= 2, (name, rows, bg, found)


# Bars whose background matches the content right above them: a miss is acceptable, a
# wrong crop is not (coins sit on this grey; the dark substrate is nearly black).
_HARD = {("coins", 70), ("dark_bottom", 0)}


def test_detects_bar_with_separator_line(contents):
    img = _with_bar(contents["camera"], 40, 0, 255, separator=255)
    assert abs(detect_databar(img) - 40) <= 2


def test_detects_bar_after_jpeg_and_in_16_bit(contents):
    img = _with_bar(contents["texture"], 40, 0, 255)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    jpeg = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    assert abs(detect_databar(jpeg) - 40) <= 2
    assert abs(detect_databar(img.astype(np.uint16) * 257) - 40) <= 2


def test_no_bar_no_crop(contents):
    rng = np.random.default_rng(11)
    rows = np.linspace(0, 1, 300, dtype=np.float32)[:, None]
    negatives = dict(contents)
    negatives.update({
        "noise": rng.integers(0, 256, (300, 400), dtype=np.uint8),
        "gradient_to_black": ((1 - rows) * np.ones((1, 400), np.float32) * 255).astype(np.uint8),
        "vignette": _vignette(_texture(300, 400)),
        "flat": np.full((200, 200), 128, np.uint8),
        "brick": skdata.brick(),
        "gravel": skdata.gravel(),
        "retina": cv2.cvtColor(skdata.retina(), cv2.COLOR_RGB2GRAY),
    })
    for name, img in negatives.items():
        assert detect_databar(img) == 0, name


def _vignette(img: np.ndarray) -> np.ndarray:
    r, c = np.mgrid[: img.shape[0], : img.shape[1]]
    d = np.hypot((r - img.shape[0] / 2) / img.shape[0], (c - img.shape[1] / 2) / img.shape[1])
    return (img * np.clip(1.2 - 2.2 * d, 0, 1)).astype(np.uint8)


def test_read_image_crops_bar_and_reports_original_rows(tmp_path, contents):
    img = _with_bar(cv2.resize(contents["texture"], (1024, 700)), 68, 0, 255)
    tifffile.imwrite(tmp_path / "bar.tif", img)
    out, info = read_image(tmp_path / "bar.tif")
    assert abs(info.databar_rows - 68) <= 2 and out.shape == (768 - info.databar_rows, 1024)
    small, info_small = read_image(tmp_path / "bar.tif", max_side=256)
    assert abs(info_small.databar_rows - 68) <= 8 and max(small.shape) == 256
    assert small.shape[0] <= round(700 * 256 / 1024) + 1
    full, info_off = read_image(tmp_path / "bar.tif", crop_databar=False)
    assert info_off.databar_rows == 0 and full.shape == (768, 1024)


def test_detect_databar_accepts_rgb(contents):
    img = _with_bar(contents["camera"], 40, 0, 255)
    assert abs(detect_databar(np.dstack([img] * 3)) - 40) <= 2
