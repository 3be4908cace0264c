"""API docs (/docs, /redoc) served from the package, rendered offline in Chromium; the image page in
operators' units, no wider than the window, long ids copied on click."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_units import LONG_MODEL_ID, _fei_tiff
from test_web_helpers import LiveServer, add_predictions, client, wait_until

from semcat.catalog import open_catalog
from semcat.synth import generate_image
from semcat.web.app import create_app
from semcat.web.settings import Settings

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


@pytest.fixture()
def app(tmp_path: Path):
    cat = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    yield create_app(Settings(db_url=cat.url, local_user="docs", storage_dir=tmp_path / "s"), catalog=cat)
    cat.close()


def test_docs_pages_reference_only_local_assets(app) -> None:
    c = client(app)
    for page, assets in (("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]), ("/redoc", ["redoc.standalone.js"])):
        html = c.get(page).text
        assert "cdn." not in html and "fonts.googleapis" not in html and "http" not in html.replace("/openapi.json", "")
        for name in assets:
            assert f"/docs/assets/{name}" in html
            r = c.get(f"/docs/assets/{name}")
            assert r.status_code == 200 and len(r.content) > 50_000
    assert c.get("/openapi.json").json()["paths"]["/api/images"]


@pytest.mark.browser
@pytest.mark.slow
def test_swagger_ui_and_image_page_offline_in_chromium(app, chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    cat = app.state.semcat.catalog
    (tmp_path / "a").mkdir()
    _fei_tiff(tmp_path / "a" / "fei.tif", generate_image("Particles", np.random.default_rng(3), size=512, databar=True))
    assert cat.ingest([tmp_path / "a"], progress=False).failed == 0
    add_predictions(cat, model_id=LONG_MODEL_ID)
    rec = cat.search(limit=1)[0]
    server = LiveServer(app)
    outside: list[str] = []

    def only_local(route) -> None:  # the network is "off": anything not our server fails
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_local)
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            shot = tmp_path / "api-docs.png"
            page.screenshot(path=str(shot), full_page=False)

            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
            image_page = context.new_page()
            image_page.route("**/*", only_local)
            image_page.goto(f"{server.url}/images/{rec.sha256}")
            image_page.wait_for_selector(".scalebar:not([hidden])")  # the viewer is live: tiles and scale bar
            wait_until(image_page, "[...document.querySelectorAll('.viewer img.tile')].every(i => i.complete)")
            table = image_page.inner_text("table.kv")
            too_wide = image_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            image_page.click(f'code[data-copy="{rec.model_id}"]')
            copied = image_page.evaluate("navigator.clipboard.readText()")
            image_page.screenshot(path=str(tmp_path / "image-page.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    assert outside == []
    assert any("/api/images" in p for p in paths) and any("/api/review" in p for p in paths)
    assert shot.stat().st_size > 20_000
    assert "182 nm" in table and "×13.2 k" in table and "7.61 mm" in table and "e-07" not in table
    assert too_wide <= 0, f"the image page is {too_wide} px wider than a 1280 px window"
    assert copied == rec.model_id == LONG_MODEL_ID
    if os.environ.get("SEMCAT_SCREENSHOTS"):  # docs/img: the manual's pictures of these two pages
        for name in ("api-docs.png", "image-page.png"):
            shutil.copy(tmp_path / name, Path(os.environ["SEMCAT_SCREENSHOTS"]) / name)
