"""Data-bar detection on the vendor layout gallery and on real instrument files (issue 16).

The bars the issue sets: every layout found on most content, no image content ever cut (on bar
images or bar-free ones, including naturally flat dark and bright bottoms), the white Zeiss data
zone of the real file found, and the gallery itself honest (bars where it says, of the size it says).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from semcat import CATEGORIES
from semcat.images import detect_databar, read_image, read_image_bytes
from semcat.synth import generate_image
from semcat.synth.layouts import BAR_FREE_KINDS, LAYOUTS, bar_outcome, gallery, render_layout

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-vendor-files"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Counter]:
    """Outcome counts per layout (or ``free:<kind>``), at full size and ``@448`` as ``semcat
    features`` reads files (PNG bytes through ``read_image_bytes`` with ``max_side=448``)."""
    found: dict[str, Counter] = defaultdict(Counter)
    for case in gallery(((480, 640), (768, 1024)), repeats=1, bar_free=2, seed=1):
        key = case.layout or f"free:{case.kind}"
        found[key][bar_outcome(detect_databar(case.image), case)] += 1
        _, info = read_image_bytes(cv2.imencode(".png", case.image)[1].tobytes(), max_side=448)
        found[key + "@448"][bar_outcome(info.databar_rows, case)] += 1
    return found


def test_gallery_has_enough_layouts_and_kinds():
    assert len(LAYOUTS) >= 14
    assert {"dark_floor", "bright_floor", "straight_edge"} <= set(BAR_FREE_KINDS)


def test_render_layout_puts_the_bar_where_it_says():
    rng = np.random.default_rng(0)
    content = np.full((300, 400), 128, np.uint8)
    for name in LAYOUTS:
        img, bar_rows = render_layout(content, name, rng)
        assert 8 <= bar_rows <= 0.2 * img.shape[0], name
        assert np.array_equal(img[: img.shape[0] - bar_rows], content[: img.shape[0] - bar_rows]), name
        assert (img[img.shape[0] - bar_rows:] != 128).any(axis=1).mean() > 0.5, name


@pytest.mark.slow
def test_no_content_is_ever_cut(outcomes):
    cut = {k: v["cut"] for k, v in outcomes.items() if v["cut"]}
    assert not cut, cut


@pytest.mark.slow
@pytest.mark.parametrize("path,overall,per_layout", [("", 0.85, 0.6), ("@448", 0.75, 0.5)])
def test_recall_per_layout_and_overall(outcomes, path, overall, per_layout):
    bars = {k: v for k, v in outcomes.items() if not k.startswith("free:") and k.endswith(path)}
    bars = {k: v for k, v in bars.items() if path or "@" not in k}
    assert set(bars) == {name + path for name in LAYOUTS}
    hits = sum(v["hit"] for v in bars.values())
    total = sum(sum(v.values()) for v in bars.values())
    assert hits / total >= overall, (hits, total)
    weak = {k: dict(v) for k, v in bars.items() if v["hit"] < per_layout * sum(v.values())}
    assert not weak, weak


@pytest.mark.skipif(not REAL.is_dir(), reason="real vendor files not present (../shared/real-vendor-files)")
@pytest.mark.parametrize("name,rows,source", [
    ("test_tiff_Zeiss_SEM_1k.tif", 77, "image"),        # white data zone, one image row below it
    ("test_tiff_Zeiss_SEM_512pix.tif", 34, "image"),
    ("ZEISS_SEM_multipage.tif", 0, None),
    ("FEI-Helios-Ebeam-8bits.tif", 29, "metadata"),
])
def test_real_vendor_files(name, rows, source):
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{name} not present")
    _, info = read_image(path)
    assert (info.databar_rows, info.databar_source) == (rows, source)


def test_the_projects_own_synthetic_bars_are_found():
    """``semcat synth --databar`` images (Zeiss, FEI and white styles) feed the demo's training:
    their bars must be found at full size and as ``semcat features`` reads them."""
    rng = np.random.default_rng(5)
    found = full = 0
    for i, category in enumerate(CATEGORIES * 2):
        size = (256, 384, 512)[i % 3]
        img = generate_image(category, rng, size, databar=True)
        bar = img.shape[0] - size
        full += abs(detect_databar(img) - bar) <= 2
        _, info = read_image_bytes(cv2.imencode(".png", img)[1].tobytes(), max_side=448)
        found += abs(info.databar_rows - bar) <= 3
    assert full >= 19 and found >= 18, (full, found)
