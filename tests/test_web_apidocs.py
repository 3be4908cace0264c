"""API docs (/docs, /redoc) served from the package: no CDN request, rendered offline in Chromium."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_web_helpers import LiveServer, client

from semcat.catalog import open_catalog
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
def test_swagger_ui_renders_offline_in_chromium(app, chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

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
            browser.close()
    finally:
        server.stop()
    assert outside == []
    assert any("/api/images" in p for p in paths) and any("/api/review" in p for p in paths)
    assert shot.stat().st_size > 20_000
    if os.environ.get("SEMCAT_SCREENSHOTS"):  # e.g. docs/images, for the manual
        shutil.copy(shot, Path(os.environ["SEMCAT_SCREENSHOTS"]) / shot.name)
