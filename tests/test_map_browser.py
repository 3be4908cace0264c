"""The map page in headless Chromium: one lasso around a cluster labels its 20 images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_active import _store_features
from test_web_browser import ARGS
from test_web_helpers import LiveServer, client, csrf, make_catalog, write_archive

from semcat.layout import layout
from semcat.web.app import create_app
from semcat.web.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_layout_keeps_clusters_apart_and_fits_the_unit_square() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=32), rng.normal(size=32)
    feats = np.vstack([a + 0.1 * rng.normal(size=(20, 32)), b + 0.1 * rng.normal(size=(20, 32))])
    xy = layout(feats)  # 40 images: PCA (t-SNE from 50)
    assert xy.shape == (40, 2) and xy.min() >= 0 and xy.max() <= 1
    gap = np.linalg.norm(xy[:20].mean(0) - xy[20:].mean(0))
    spread = max(xy[:20].std(0).max(), xy[20:].std(0).max())
    assert gap > 4 * spread


def test_label_twenty_images_with_one_lasso(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    cat = make_catalog(f"sqlite:///{tmp_path / 'c.db'}", write_archive(tmp_path / "archive"))
    shas = sorted(r.sha256 for r in cat.search(limit=100))
    rng = np.random.default_rng(5)
    cluster, outlier = shas[:20], shas[20]
    direction = rng.normal(size=16)
    _store_features(cat, {**{s: direction + 0.3 * rng.normal(size=16) for s in cluster},
                          outlier: -direction + 0.3 * rng.normal(size=16)})
    app = create_app(Settings(db_url=cat.url, local_user="Mapper"), catalog=cat)
    api = client(app)
    assert api.post("/api/labels", json={"sha256": ["0" * 64], "label": "Tips"}, headers=csrf(api)).status_code == 404
    assert api.post("/api/labels", json={"sha256": cluster[:1], "label": "Nope"}, headers=csrf(api)).status_code == 400
    server = LiveServer(app)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server.url}/map")
            page.wait_for_selector("#map[data-ready='1']")  # (the page's CSP forbids eval-based waits)
            pts = page.evaluate("() => { const m = window.semcatMap; return m.sha256.map((s, i) => [s, m.px[i], m.py[i]]); }")
            inner = [(x, y) for s, x, y in pts if s in cluster]
            x0, x1 = min(x for x, _ in inner) - 4, max(x for x, _ in inner) + 4
            y0, y1 = min(y for _, y in inner) - 4, max(y for _, y in inner) + 4
            far = next((x, y) for s, x, y in pts if s == outlier)
            assert not (x0 <= far[0] <= x1 and y0 <= far[1] <= y1)
            box = page.query_selector("#map").bounding_box()
            page.mouse.move(box["x"] + x0, box["y"] + y0)
            page.mouse.down()
            for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0)]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
            page.mouse.up()
            assert page.inner_text("#map-status").startswith("20 selected of 21")
            page.select_option("#map-label select", "Fibres")
            page.click("#map-label button")
            page.wait_for_selector("#map[data-ready='2']")
            assert "labelled 20 images Fibres" in page.inner_text("#map-status")
            page.mouse.move(box["x"] + far[0], box["y"] + far[1])
            assert not page.query_selector("#map-tip").is_hidden()
            page.wait_for_selector("#map-tip img[src^='/thumbs/']")
            page.screenshot(path=str(tmp_path / "map.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    assert [cat.get(s).label for s in cluster] == ["Fibres"] * 20 and cat.get(outlier).label is None
    assert {cat.get(s).label_who for s in cluster} == {"Mapper"}
    cat.close()
