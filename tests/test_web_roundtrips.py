"""SQL statements per request on PostgreSQL, where each one is a network round trip.

Issue 18 item 12 (p95 < 300 ms at 50 clients) was missed on PostgreSQL while a catalog page sent
8 statements, an image page 14 and a label write 11. The pages' budgets below hold the cut; the
``+ 1`` is the category list, read again when its few-second cache (``CATEGORIES_TTL_S``) ran out.
Counted with a SQLAlchemy event on the app's own engine, on a real server.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event
from test_web_helpers import client, csrf, fresh_pg_url, make_catalog, write_archive

from semcat.web.app import create_app
from semcat.web.settings import Settings


def test_pages_take_a_few_statements(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    gen = fresh_pg_url(request)
    url = next(gen)
    request.addfinalizer(lambda: next(gen, None))
    cat = make_catalog(url, write_archive(tmp_path / "archive"))
    request.addfinalizer(cat.close)
    sha = cat.search(limit=1)[0].sha256
    cat.add_tag(sha, "batch-7")
    cat.add_note(sha, "charging", who="ana")
    app = create_app(Settings(db_url=url, local_user="tester", storage_dir=tmp_path / "storage"), catalog=cat)
    c = client(app)
    header = csrf(c)
    statements: list[str] = []
    event.listen(cat.db.engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: statements.append(sql))

    def sent(method: str, target: str, **kwargs) -> list[str]:
        statements.clear()
        r = c.request(method, target, **kwargs)
        assert r.status_code == 200, (target, r.text[:300])
        return list(statements)

    budget = {"/api/images?limit=20&offset=3": 1 + 1, f"/api/images/{sha}": 4 + 1, "/api/review?limit=10": 2 + 1,
              f"/thumbs/{sha}.png": 1}
    for target, most in budget.items():
        sent("GET", target)  # caches warm: category list, thumbnail, prepared statements
        assert len(sent("GET", target)) <= most, (target, statements)
    label = {"json": {"label": "Tips"}, "headers": header}
    sent("POST", f"/api/images/{sha}/label", **label)
    assert len(sent("POST", f"/api/images/{sha}/label", **label)) <= 4 + 1, statements
    page = c.get("/api/images", params={"limit": 20, "offset": 3}).json()["images"]
    assert [r["sha256"] for r in page] == [r.sha256 for r in cat.search(limit=20, offset=3)]
    assert c.get(f"/api/images/{sha}").json()["image"]["label"] == "Tips"
    for offset in (0, 1000):  # the queue's count rides on its records; an empty page counts on its own
        review = c.get("/api/review", params={"limit": 10, "offset": offset}).json()
        assert review["remaining"] == cat.review_count() > 0
        assert [r["sha256"] for r in review["queue"]] == [r.sha256 for r in cat.review_queue(limit=10, offset=offset)]
