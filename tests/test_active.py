"""Active-learning order, new categories, undo and fixed keys: library, CLI and JSON API."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_web_helpers import client, csrf, fresh_pg_url, make_catalog, write_archive
from typer.testing import CliRunner

from semcat import CATEGORIES
from semcat.active import k_center, margin_uncertainty, order_queue, review_order, uncertainty_from_top
from semcat.catalog import CatalogError
from semcat.catalog.schema import Feature
from semcat.catalog.similar import vector_to_bytes
from semcat.cli import app
from semcat.prototypes import MIN_EXAMPLES, suggest
from semcat.web.app import create_app
from semcat.web.settings import Settings

runner = CliRunner()


def test_margin_and_entropy_by_hand() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])
    assert np.allclose(margin_uncertainty(p), [1.0, 0.15, 0.7])
    assert np.allclose(uncertainty_from_top([[("a", 0.6), ("b", 0.3)], None, [("a", 0.9)]]), [0.7, 1.0, 0.1])


def test_k_center_covers_every_direction_before_repeating_one() -> None:
    angles = np.repeat(np.arange(4) * np.pi / 2, 10) + np.tile(np.linspace(-0.05, 0.05, 10), 4)
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    picked = k_center(x, 4)
    assert sorted(i // 10 for i in picked) == [0, 1, 2, 3]
    first, second = (i // 10 for i in k_center(x, 2, centers=x[:1]))  # already labelled: direction 0
    assert first == 2 and second in (1, 3)


def test_hybrid_gives_each_predicted_class_its_quota_and_random_is_seeded() -> None:
    rng = np.random.default_rng(0)
    predicted = np.array([0] * 80 + [1] * 10 + [2] * 10)
    unc = rng.random(100)
    unc[:80] += 1.0  # class 0 is the most uncertain: uncertainty alone would pick only it
    feats = rng.normal(size=(100, 16))
    assert set(predicted[order_queue("uncertainty", 9, uncertainty=unc)]) == {0}
    hybrid = order_queue("hybrid", 9, uncertainty=unc, predicted=predicted, features=feats)
    assert len(set(hybrid)) == 9 and np.bincount(predicted[hybrid]).tolist() == [3, 3, 3]
    assert order_queue("random", 5, uncertainty=unc, seed=3) == order_queue("random", 5, uncertainty=unc, seed=3)
    with pytest.raises(ValueError, match="strategy must be one of"):
        order_queue("smart", 5, uncertainty=unc)
    with pytest.raises(ValueError, match="needs features"):
        order_queue("diversity", 5, uncertainty=unc)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("active_archive"))


@pytest.fixture(params=["sqlite", "postgresql"])
def cat(request: pytest.FixtureRequest, archive: Path, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'c.db'}"
    else:
        gen = fresh_pg_url(request)
        url = next(gen)
        request.addfinalizer(lambda: next(gen, None))
    catalog = make_catalog(url, archive)
    yield catalog
    catalog.close()


def _store_features(cat, vectors: dict[str, np.ndarray]) -> None:
    """Feature rows as an ingest with a model would write them."""
    with cat.db.write() as conn:
        for sha, v in vectors.items():
            conn.execute(Feature.__table__.insert().values(key="test-key", sha256=sha, vector=vector_to_bytes(v)))


def test_unknown_labels_are_refused_until_created_and_undo_restores(cat) -> None:
    sha = cat.review_queue(limit=1)[0].sha256
    with pytest.raises(ValueError, match="not a known category.*semcat category add"):
        cat.confirm(sha, "Nanotubes", who="ana")
    assert cat.get(sha).label is None
    assert cat.add_category(" Nanotubes ", who="ana") == "Nanotubes" and cat.categories() == ["Nanotubes"]
    assert "Nanotubes" in cat.known_labels() and set(CATEGORIES) <= set(cat.known_labels())
    cat.confirm(sha, "Tips", who="ana")
    cat.confirm(sha, "Nanotubes", who="ana")
    with pytest.raises(CatalogError, match="not you"):
        cat.undo_label(sha, who="ben")
    assert cat.undo_label(sha, who="ana") == "Tips" and cat.get(sha).label == "Tips"
    assert cat.undo_label(sha) is None
    rec = cat.get(sha)
    assert rec.label is None and sha in {r.sha256 for r in cat.review_queue(limit=100)}
    assert cat.search(category=rec.top[0][0], limit=100) and rec.category == rec.top[0][0]
    with pytest.raises(CatalogError, match="no label to undo"):
        cat.undo_label(sha)
    with pytest.raises(ValueError, match="printable"):
        cat.add_category("bad\nname", who="x")


def test_review_order_strategies_and_the_queue_command(cat) -> None:
    pool = cat.review_queue(limit=100)
    unc = uncertainty_from_top([r.top for r in pool])
    by_margin = [r.sha256 for r in review_order(cat, "uncertainty", 5)]
    assert by_margin == [pool[i].sha256 for i in np.argsort(-unc, kind="stable")[:5]]
    with pytest.raises(ValueError, match="needs stored features"):
        review_order(cat, "diversity", 5)
    web = client(create_app(Settings(db_url=cat.url, local_user="t"), catalog=cat))
    page = web.get("/review", params={"strategy": "diversity"}, headers={"accept": "text/html"})
    assert page.status_code == 400 and "ingest with --model" in page.text and "<html" in page.text
    rng = np.random.default_rng(1)
    _store_features(cat, {r.sha256: rng.normal(size=8) for r in pool})
    div = review_order(cat, "diversity", 5)
    hybrid = review_order(cat, "hybrid", 6)
    assert len({r.sha256 for r in div}) == 5 and len({r.sha256 for r in hybrid}) == 6
    result = runner.invoke(app, ["queue", "--db", cat.url, "--strategy", "uncertainty", "--limit", "5",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [r["sha256"] for r in json.loads(result.stdout)] == by_margin
    bad = runner.invoke(app, ["queue", "--db", cat.url, "--strategy", "smart"])
    assert bad.exit_code == 2


def test_cli_label_refuses_then_category_add_allows(cat, archive: Path) -> None:
    image = str(next((archive / "Tips").iterdir()))
    refused = runner.invoke(app, ["label", image, "Nanotubes", "--db", cat.url])
    assert refused.exit_code == 1 and "semcat category add" in refused.stderr
    assert runner.invoke(app, ["category", "add", "Nanotubes", "--db", cat.url]).exit_code == 0
    assert runner.invoke(app, ["label", image, "Nanotubes", "--db", cat.url]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["category", "list", "--db", cat.url]).stdout)
    assert listed["created"] == ["Nanotubes"] and "Nanotubes" in listed["known"]


def test_web_keys_stay_fixed_new_category_is_suggested_and_undo(cat, tmp_path: Path) -> None:
    """Fixed keys over 3 images; create a category from the review page, label 5 images with it,
    and it is offered for an image like them; undo brings the last image back."""
    web = client(create_app(Settings(db_url=cat.url, local_user="tester", storage_dir=tmp_path / "s"), catalog=cat))
    keys = []
    for offset in range(3):
        q = web.get("/api/review", params={"offset": offset}).json()
        keys.append({ch["label"]: ch["key"] for ch in q["choices"]})
    assert keys[0] == keys[1] == keys[2] == dict(zip(CATEGORIES, "1234567890"))

    pool = [r.sha256 for r in cat.review_queue(limit=100)]
    rng = np.random.default_rng(2)
    direction = rng.normal(size=16)
    like = pool[:MIN_EXAMPLES + 1]  # five examples and one more image like them
    _store_features(cat, {s: (direction + 0.2 * rng.normal(size=16)) if s in like else rng.normal(size=16)
                          for s in pool})
    r = web.post("/api/categories", json={"name": "Nanotubes", "sha256": like[0]}, headers=csrf(web))
    assert r.status_code == 200 and r.json()["categories"][-1] == "Nanotubes"
    for s in like[1:MIN_EXAMPLES]:
        assert web.post(f"/api/images/{s}/label", json={"label": "Nanotubes"}, headers=csrf(web)).status_code == 200
    assert suggest(cat, like[-1], ["Nanotubes"]) == ["Nanotubes"]
    assert suggest(cat, pool[-1], ["Nanotubes"]) == []
    offset = [x["sha256"] for x in web.get("/api/review", params={"limit": 100}).json()["queue"]].index(like[-1])
    q = web.get("/api/review", params={"offset": offset}).json()
    assert q["current"]["sha256"] == like[-1]
    offered = [ch for ch in q["choices"] if ch["candidate"]]
    assert any(ch["label"] == "Nanotubes" and ch["suggested"] and ch["key"] == "a" for ch in offered)

    r = web.post(f"/api/images/{like[-1]}/label", json={"label": "Nanotubes"}, headers=csrf(web))
    page = web.get("/review", params={"done": like[-1]}).text
    assert 'id="undo"' in page and "Nanotubes" in page
    assert web.post(f"/api/images/{like[-1]}/label/undo", json={}, headers=csrf(web)).json()["image"]["label"] is None
    assert like[-1] in [x["sha256"] for x in web.get("/api/review", params={"limit": 100}).json()["queue"]]
    assert web.post("/api/images/" + like[-1] + "/label", json={"label": "Typo"}, headers=csrf(web)).status_code == 400
    assert web.post("/api/categories", json={"name": "  "}, headers=csrf(web)).status_code == 400
