"""End to end in headless Chromium: fixed keys over 3 images, undo with Backspace, a new category
created on the review page and then suggested for an image like its examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_active import _store_features
from test_web_browser import ARGS
from test_web_helpers import LiveServer, make_catalog, write_archive

from semcat import CATEGORIES
from semcat.prototypes import MIN_EXAMPLES
from semcat.web.app import create_app
from semcat.web.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_keys_undo_and_a_new_category_in_chromium(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    cat = make_catalog(f"sqlite:///{tmp_path / 'c.db'}", write_archive(tmp_path / "archive"))
    queue = [r.sha256 for r in cat.review_queue(limit=100)]
    rng = np.random.default_rng(4)
    direction = rng.normal(size=16)
    like = queue[3:3 + MIN_EXAMPLES + 1]  # the 4th..9th images look alike (stored features)
    _store_features(cat, {s: direction + 0.2 * rng.normal(size=16) if s in like else rng.normal(size=16)
                          for s in queue})
    server = LiveServer(create_app(Settings(db_url=cat.url, local_user="Reviewer"), catalog=cat))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server.url}/review")

            def keys() -> dict[str, str]:
                return {b.get_attribute("data-key"): b.inner_text().split()[1]
                        for b in page.query_selector_all("#review button[data-key]")}

            seen = []
            for i in range(3):  # key 7 labels Nanowires on every image; each label can be undone
                assert page.get_attribute("#review", "data-sha") == queue[0]
                seen.append(keys())
                if i < 2:
                    with page.expect_navigation():
                        page.keyboard.press("7")
                    assert "labelled Nanowires" in " ".join(page.inner_text("#labelled").split())
                    assert cat.get(queue[0]).label == "Nanowires"
                    with page.expect_navigation():
                        page.keyboard.press("Backspace")
                    assert cat.get(queue[0]).label is None and page.query_selector("#labelled") is None
            assert seen[0] == seen[1] == seen[2] == dict(zip("1234567890", CATEGORIES))

            for _ in range(3):  # label the first three, so the alike ones come up
                with page.expect_navigation():
                    page.keyboard.press("2")
            assert page.get_attribute("#review", "data-sha") == like[0]
            page.keyboard.press("n")
            page.keyboard.type("Nanotubes")
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert cat.get(like[0]).label == "Nanotubes" and "Nanotubes" in cat.categories()
            for s in like[1:MIN_EXAMPLES]:
                assert page.get_attribute("#review", "data-sha") == s
                assert page.inner_text('button[data-key="a"]').split()[1] == "Nanotubes"
                with page.expect_navigation():
                    page.keyboard.press("a")
            assert page.get_attribute("#review", "data-sha") == like[-1]
            first = page.query_selector_all("#review button.candidate")
            assert any("Nanotubes" in b.inner_text() and "like its examples" in b.inner_text() for b in first)
            page.screenshot(path=str(tmp_path / "suggested.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    assert [cat.get(s).label for s in like[:MIN_EXAMPLES]] == ["Nanotubes"] * MIN_EXAMPLES
    assert cat.get(like[-1]).label is None
    cat.close()
