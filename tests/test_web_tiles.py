"""The image page's viewer: tile pyramid geometry, the tile endpoints on a real catalog (levels,
bounds, 404s, a swapped file refused, cache hits, 16-bit stretch), a large image tiled band by band
in bounded memory, the scale bar's round lengths, and zoom + scale bar in Chromium."""
from __future__ import annotations

import os
import shutil
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from test_units import PIXEL, _fei_tiff
from test_web_apidocs import ARGS
from test_web_helpers import LiveServer, client, wait_until

from semcat.catalog import open_catalog
from semcat.scalebar import scale_bar, steps
from semcat.synth import generate_image
from semcat.units import length
from semcat.web.app import create_app
from semcat.web.pyramid import TILE, Pyramid, load_pyramid, make_pyramid, render_level, tile_path
from semcat.web.settings import Settings
from semcat.web.thumbs import stretch_limits, stretched

W, H = 1300, 700  # 4 levels of 256-px tiles: 163x88 (1 tile), 325x175 (2x1), 650x350 (3x2), 1300x700 (6x3)


def _png(content: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint8 and img.ndim == 2
    return img


def _dim16(rows: int, cols: int) -> np.ndarray:
    """A dim 16-bit picture (values 1000..5000 of 65535): black on screen unless stretched."""
    across = np.sin(np.arange(cols, dtype=np.float32) / 37)
    down = np.cos(np.arange(rows, dtype=np.float32) / 23)
    return (3000 + 2000 * down[:, None] * across[None, :]).astype(np.uint16)


def _serve(tmp_path: Path, img: np.ndarray):
    """A real SQLite catalog of one FEI TIFF of ``img`` (pixel size known) and the app on it."""
    (tmp_path / "a").mkdir()
    _fei_tiff(tmp_path / "a" / "fei.tif", img)
    cat = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert cat.ingest([tmp_path / "a"], progress=False).failed == 0
    app = create_app(Settings(db_url=cat.url, local_user="t", storage_dir=tmp_path / "s",
                              secret_file=tmp_path / "secret"), catalog=cat)
    return app, cat.search(limit=1)[0]


@pytest.fixture()
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SEMCAT_HOME", str(tmp_path / "home"))  # a fresh tile cache
    app, rec = _serve(tmp_path, _dim16(H, W))
    yield app, rec
    app.state.semcat.catalog.close()


def test_pyramid_levels_and_tile_grid() -> None:
    p = Pyramid(W, H, 0.0, 1.0)
    assert p.levels == 4 and [p.factor(lv) for lv in range(4)] == [8, 4, 2, 1]
    assert [p.size(lv) for lv in range(4)] == [(163, 88), (325, 175), (650, 350), (1300, 700)]
    assert [p.grid(lv) for lv in range(4)] == [(1, 1), (2, 1), (3, 2), (6, 3)]
    assert p.has(3, 5, 2) and not p.has(3, 6, 0) and not p.has(3, 0, 3) and not p.has(4, 0, 0) and not p.has(-1, 0, 0)
    assert p.stretch_level() == 2
    assert Pyramid(256, 256, 0, 1).levels == 1 and Pyramid(257, 10, 0, 1).levels == 2
    assert Pyramid(8192, 8192, 0, 1).levels == 6 and Pyramid(8192, 8192, 0, 1).stretch_level() == 2


def test_tiles_of_every_level_with_bounds_and_a_shared_stretch(served) -> None:
    app, rec = served
    c = client(app)
    info = c.get(f"/tiles/{rec.sha256}/info.json").json()
    assert {k: info[k] for k in ("width", "height", "tile", "levels")} == {"width": W, "height": H, "tile": TILE,
                                                                          "levels": 4}
    assert info["scale_bar"]["steps"][0] == [1e-10, "0.1 nm"] and info["scale_bar"]["max_px"] > 0
    whole = _dim16(H, W).astype(np.float32)
    for level, (nx, ny) in enumerate([(1, 1), (2, 1), (3, 2), (6, 3)]):
        k = 1 << (3 - level)
        for x, y in ((0, 0), (nx - 1, ny - 1)):
            r = c.get(f"/tiles/{rec.sha256}/{level}/{x}_{y}.png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", (level, x, y, r.text[:200])
            tile = _png(r.content)
            lw, lh = -(-W // k), -(-H // k)
            assert tile.shape == (min(TILE, lh - y * TILE), min(TILE, lw - x * TILE)), (level, x, y)
            if (x, y) == (0, 0):  # a whole period of the pattern: 16-bit 1000..5000 stretched to black..white
                assert tile.min() <= 5 and tile.max() >= 250, (level, tile.min(), tile.max())
    # full resolution is the image's own pixels under the one stretch (taken from level 2)
    pyramid = load_pyramid(rec.sha256)
    r = c.get(f"/tiles/{rec.sha256}/3/1_1.png")
    assert np.array_equal(_png(r.content), stretched(whole[256:512, 256:512], pyramid.lo, pyramid.hi))
    for bad in ("3/6_0", "3/0_3", "4/0_0", "40/0_0", "41/0_0", "1/99999999999999999999_0", "0/1_0"):
        r = c.get(f"/tiles/{rec.sha256}/{bad}.png", headers={"Accept": "application/json"})
        assert r.status_code == 404 and "\n" not in r.json()["detail"], (bad, r.text)
    for bad in ("-1/0_0", "1/0_-1", "1/a_0", "1/0_0.jpg", "1/../0_0"):
        assert c.get(f"/tiles/{rec.sha256}/{bad}.png").status_code == 404, bad
    assert c.get(f"/tiles/{'0' * 64}/0/0_0.png").status_code == 404
    assert c.get("/tiles/..%2F..%2Fetc/0/0_0.png").status_code in (400, 404)


def test_cached_tiles_are_served_and_a_swapped_file_is_refused(served, tmp_path: Path) -> None:
    app, rec = served
    c = client(app, raise_server_exceptions=False)
    first = c.get(f"/tiles/{rec.sha256}/3/2_1.png")
    assert first.status_code == 200 and tile_path(rec.sha256, 3, 5, 2).exists()  # the whole level was cached
    source = Path(rec.path)
    data = bytearray(source.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed: only the hash check sees it
    source.write_bytes(bytes(data))
    again = c.get(f"/tiles/{rec.sha256}/3/2_1.png")
    other = c.get(f"/tiles/{rec.sha256}/3/0_1.png")  # rendered with its level: a cache hit too
    assert again.status_code == other.status_code == 200 and again.content == first.content
    shutil.rmtree(tile_path(rec.sha256, 2, 0, 0).parent)  # level 2 gone from the cache: it needs the file
    fresh = c.get(f"/tiles/{rec.sha256}/2/0_0.png", headers={"Accept": "application/json"})
    assert fresh.status_code == 404 and "none of its files holds that content" in fresh.json()["detail"]
    assert bytes(data[:64]) not in fresh.content
    shutil.rmtree(tile_path(rec.sha256, 0, 0, 0).parents[1])  # no pyramid either: info needs the file too
    assert c.get(f"/tiles/{rec.sha256}/info.json").status_code == 404


def test_unknown_pixel_size_shows_a_note_instead_of_a_scale_bar(served, tmp_path: Path) -> None:
    app, rec = served
    page = client(app).get(f"/images/{rec.sha256}").text
    assert 'data-pixel-size="' in page and 'class="scalebar"' in page and "No scale bar" not in page
    assert '<img src="/images/' in page  # without JavaScript: the plain preview
    cat = app.state.semcat.catalog
    (tmp_path / "b").mkdir()
    tifffile.imwrite(tmp_path / "b" / "plain.tif", _dim16(64, 64))  # no vendor metadata
    assert cat.ingest([tmp_path / "b"], progress=False).failed == 0
    plain = next(r for r in cat.search(limit=10) if r.path.endswith("plain.tif"))
    page = client(app).get(f"/images/{plain.sha256}").text
    assert "No scale bar: the pixel size is unknown" in page and "data-pixel-size" not in page


def _encoded(kind: str, img16: np.ndarray) -> bytes:
    import io

    from PIL import Image

    img8 = (img16 >> 8).astype(np.uint8)
    if kind == "png-interlaced":  # cannot be read in parts: decoded whole instead
        buf = io.BytesIO()
        Image.fromarray(img8).save(buf, format="PNG", interlace=1)
        return buf.getvalue()
    if kind == "tiff-float":
        buf = io.BytesIO()
        tifffile.imwrite(buf, img16.astype(np.float32) / 7)
        return buf.getvalue()
    ext, img = {"png16": (".png", img16), "png8": (".png", img8), "jpeg": (".jpg", img8), "bmp": (".bmp", img8)}[kind]
    return cv2.imencode(ext, img)[1].tobytes()


@pytest.mark.parametrize("kind", ["png16", "png8", "png-interlaced", "jpeg", "bmp", "tiff-float"])
def test_every_format_tiles_to_the_stretched_pixels_of_a_whole_decode(kind: str, tmp_path: Path) -> None:
    """Bands (PNG, TIFF) or one whole decode (JPEG, BMP, interlaced PNG): the same picture; the stretch
    is taken in each path's own units, so the tiles match a whole decode stretched by its own percentiles."""
    from semcat.images import read_image_bytes

    data = _encoded(kind, _dim16(700, 900))
    pyramid = make_pyramid(data, f"x.{kind}", "cd" * 32, max_decode_bytes=256 * 2**20, root=tmp_path)
    assert (pyramid.width, pyramid.height, pyramid.levels) == (900, 700, 3)
    tile = _png(render_level(data, f"x.{kind}", "cd" * 32, pyramid, 2, max_decode_bytes=256 * 2**20, want=(1, 1),
                             root=tmp_path))
    whole, _ = read_image_bytes(data, f"x.{kind}", crop_databar=False)
    expected = stretched(whole, *stretch_limits(whole))[256:512, 256:512]
    assert np.abs(tile.astype(int) - expected.astype(int)).max() <= 1, kind


@pytest.mark.slow  # ~6 s: a 6144 x 6144 16-bit LZW TIFF, its pyramid and its full-resolution level (576 tiles)
def test_a_large_image_is_tiled_band_by_band_in_bounded_memory(tmp_path: Path) -> None:
    side = 6144  # 72 MiB of 16-bit samples and 144 MiB as float32 when decoded whole
    img = _dim16(side, side)
    img[::97] = 60000  # bright lines: the tiles are checked against the samples
    tifffile.imwrite(tmp_path / "big.tif", img, compression="lzw", rowsperstrip=64)  # strips decoded one by one
    data = (tmp_path / "big.tif").read_bytes()
    root, sha, budget = tmp_path / "cache", "ab" * 32, 256 * 2**20
    tracemalloc.start()  # numpy's buffers are traced too
    try:
        pyramid = make_pyramid(data, "big.tif", sha, max_decode_bytes=budget, root=root)
        _, made_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        want = render_level(data, "big.tif", sha, pyramid, pyramid.levels - 1, max_decode_bytes=budget,
                            want=(23, 23), root=root)
        _, level_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pyramid.levels == 6 and pyramid.stretch_level() == 2
    assert made_peak < 40 * 2**20 and level_peak < 64 * 2**20, (made_peak / 2**20, level_peak / 2**20)  # whole: 216
    assert len(list(root.rglob("5/*.png"))) == 24 * 24 and len(list(root.rglob("2/*.png"))) == 3 * 3
    assert np.array_equal(_png(want), stretched(img[-256:, -256:].astype(np.float32), pyramid.lo, pyramid.hi))


def test_scale_bar_is_the_longest_round_length_that_fits() -> None:
    assert scale_bar(PIXEL) == (2e-05, "20 µm", pytest.approx(2e-05 / PIXEL))  # 182 nm pixels, zoom 1
    assert scale_bar(PIXEL / 2)[1] == "10 µm"  # zoomed in 2x: a shorter bar
    assert scale_bar(1e-9, max_px=160)[:2] == (1e-07, "100 nm")  # 100 px wide
    assert scale_bar(1e-9, max_px=99.9)[:2] == (5e-08, "50 nm")  # 100 nm would be 100 px: too wide
    assert scale_bar(5e-6)[:2] == (5e-04, "500 µm") and scale_bar(1e-5)[:2] == (1e-3, "1 mm")
    assert scale_bar(2e-12)[:2] == (2e-10, "0.2 nm")
    for unknown in (None, 0.0, -1e-9, float("nan"), float("inf"), 1e-16):
        assert scale_bar(unknown) is None
    for metres_per_px in np.geomspace(1e-12, 1e-3, 200):
        metres, label, px = scale_bar(float(metres_per_px))
        assert px <= 160 * (1 + 1e-9) and px > 160 / 2.5 * (1 - 1e-9)  # round steps are at most 2.5x apart
        assert label.split()[0] in {"0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "50", "100", "200", "500"}
    assert [label for _, label in steps()][3:9] == ["1 nm", "2 nm", "5 nm", "10 nm", "20 nm", "50 nm"]
    assert length(1e-6) == "1 µm" and length(2e-4) == "200 µm" and length(5e-3) == "5 mm" and length(5e-10) == "0.5 nm"


def test_one_stretch_for_all_tiles_is_the_thumbnail_rule() -> None:
    img = _dim16(300, 200).astype(np.float32)
    lo, hi = stretch_limits(img)
    assert (lo, hi) == tuple(float(v) for v in np.percentile(img, (0.5, 99.5)))
    assert stretched(np.full((4, 4), 7.0), 7.0, 7.0).tolist() == [[128] * 4] * 4  # flat: mid-gray


@pytest.mark.browser
@pytest.mark.slow
def test_zoom_in_chromium_fetches_finer_tiles_and_the_scale_bar_follows(chromium_path: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("SEMCAT_HOME", str(tmp_path / "home"))
    small = generate_image("Particles", np.random.default_rng(5), size=1300, databar=True, bit_depth=16)
    img = cv2.resize(small, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # 2600 x 2808: 5 levels
    app, rec = _serve(tmp_path, img)  # fitted to the panel, level 2 or 3 is enough
    server = LiveServer(app)
    tiles: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda req: tiles.append(req.url.split("/tiles/", 1)[1]) if "/tiles/" in req.url else None)
            page.goto(f"{server.url}/images/{rec.sha256}")
            page.wait_for_selector(".viewer.live img.tile", timeout=20_000)
            page.wait_for_selector(".scalebar:not([hidden])")
            fitted = [t for t in tiles if t.endswith(".png")]
            label_fit = page.inner_text(".scalebar-label")
            width_fit = page.evaluate("document.querySelector('.scalebar-line').getBoundingClientRect().width")
            box = page.locator(".viewer").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            for _ in range(4):
                page.mouse.wheel(0, -400)  # zoom in at the cursor
                page.wait_for_timeout(100)
            wait_until(page, "[...document.querySelectorAll('.viewer img.tile.level-4')].some(i => i.complete)")
            label_zoomed = page.inner_text(".scalebar-label")
            zoom = page.inner_text(".zoom-level")
            page.mouse.move(box["x"] + 200, box["y"] + 200)
            page.mouse.down()
            page.mouse.move(box["x"] + 500, box["y"] + 400, steps=5)  # drag to pan
            page.mouse.up()
            page.keyboard.press("1")  # the viewer has focus after the click: 1 screen px = 1 image px
            page.wait_for_timeout(100)
            zoom_one = page.inner_text(".zoom-level")
            wait_until(page, "[...document.querySelectorAll('.viewer img.tile.level-4')].every(i => i.complete)")
            errors = page.evaluate("[...document.querySelectorAll('.viewer img.tile')].filter(i => !i.naturalWidth).length")
            shot = tmp_path / "image-viewer.png"  # the manual's picture: full resolution, with its scale bar
            page.screenshot(path=str(shot), full_page=False)
            page.dblclick(".viewer")  # back to fit
            page.wait_for_timeout(100)
            label_reset, zoom_fit = page.inner_text(".scalebar-label"), page.inner_text(".zoom-level")
            page.click('[data-zoom="in"]')
            zoom_button = page.inner_text(".zoom-level")
            browser.close()
    finally:
        server.stop()
        app.state.semcat.catalog.close()
    levels = {int(t.split("/")[1]) for t in tiles if t.endswith(".png")}
    assert fitted and all(int(t.split("/")[1]) <= 3 for t in fitted), fitted  # fitted: no full-resolution tile
    assert 4 in levels, tiles  # zoomed in: full-resolution tiles
    full = [t for t in tiles if t.split("/")[1:2] == ["4"]]
    assert len(full) < 11 * 11, full  # only the visible ones, not the 11 x 11 of the level
    assert label_zoomed != label_fit and label_reset == label_fit, (label_fit, label_zoomed, label_reset)
    assert 40 <= width_fit <= 160
    assert zoom != "" and zoom_one == "100 %" and errors == 0
    assert int(zoom_button.split()[0]) > int(zoom_fit.split()[0]), (zoom_fit, zoom_button)
    if os.environ.get("SEMCAT_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["SEMCAT_SCREENSHOTS"]) / "image-viewer.png")


REAL = Path(__file__).resolve().parents[2] / "shared" / "real-vendor-files"


@pytest.mark.skipif(not REAL.is_dir(), reason="real vendor files not present (../shared/real-vendor-files)")
def test_real_vendor_files_tile_to_the_pixels_of_a_whole_decode(tmp_path: Path) -> None:
    """Zeiss and FEI TIFFs (8/16-bit, multipage): the band path gives the samples a whole decode gives."""
    from semcat.images import read_image_bytes

    files = sorted(REAL.glob("*.tif"))
    assert files
    for i, path in enumerate(files):
        data = path.read_bytes()
        sha = f"{i:02x}" * 32
        pyramid = make_pyramid(data, path.name, sha, max_decode_bytes=256 * 2**20, root=tmp_path)
        top = pyramid.levels - 1
        tile = _png(render_level(data, path.name, sha, pyramid, top, max_decode_bytes=256 * 2**20, want=(0, 0),
                                 root=tmp_path))
        whole, info = read_image_bytes(data, path.name, crop_databar=False)
        assert (pyramid.width, pyramid.height) == (info.shape[1], info.shape[0]), path.name
        samples = whole[:TILE, :TILE] * (2 ** info.bit_depth - 1 if info.bit_depth in (8, 16) else 1)
        diff = np.abs(tile.astype(int) - stretched(samples, pyramid.lo, pyramid.hi).astype(int))
        assert diff.max() <= 1, (path.name, diff.max())
