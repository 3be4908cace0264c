"""End to end in real headless Chromium: sign in, review 5 images with the keyboard, check the catalog."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_web_helpers import HOSTILE_NAME, LiveServer, make_catalog, write_archive

from semcat.web.app import create_app
from semcat.web.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


def test_review_five_images_with_the_keyboard(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    cat = make_catalog(f"sqlite:///{tmp_path / 'c.db'}", write_archive(tmp_path / "archive"))
    queue_before = [r.sha256 for r in cat.review_queue(limit=100)]
    assert len(queue_before) >= 5
    server = LiveServer(create_app(Settings(db_url=cat.url, local_user="nobody"), catalog=cat))
    dialogs: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{server.url}/login?next=/review")
            page.fill("input[name=name]", "Browser Reviewer")
            page.click("button[type=submit]")
            page.wait_for_url("**/review")
            page.wait_for_function("document.querySelector('#review img').naturalWidth > 0")
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)

            chosen = []
            for i in range(5):
                sha = page.get_attribute("#review", "data-sha")
                label = page.inner_text('button[data-key="1"]').split(maxsplit=1)[1].strip().split()[0]
                assert sha == queue_before[i], "the queue is shown lowest confidence first"
                with page.expect_navigation():
                    page.keyboard.press("1")
                chosen.append((sha, label))
            with page.expect_navigation():
                page.keyboard.press("ArrowRight")  # skip one: the queue position moves, nothing is stored
            assert page.get_attribute("#review", "data-sha") == queue_before[6]

            rec = next(r for r in cat.search(limit=100) if r.path and r.path.endswith(HOSTILE_NAME))
            page.goto(f"{server.url}/images/{rec.sha256}")
            page.fill("input[name=tag]", "<script>alert('tag')</script>")
            with page.expect_navigation():
                page.click("text=Add tag")
            assert "<script>alert('tag')</script>" in page.inner_text("ul.tags")
            page.goto(f"{server.url}/dashboard")
            page.wait_for_function("[...document.querySelectorAll('.plots img')].every(i => i.naturalWidth > 0)")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            browser.close()
    finally:
        server.stop()

    assert dialogs == [], "no injected script may run"
    assert cat.stats()["confirmed"] == 5
    for sha, label in chosen:
        rec = cat.get(sha)
        assert (rec.label, rec.label_who, rec.label_source) == (label, "Browser Reviewer", "human")
        assert rec.label_time is not None
    assert sorted(s for _, s, _ in cat.confirmed_labels()) == sorted(s for s, _ in chosen)
    cat.close()
