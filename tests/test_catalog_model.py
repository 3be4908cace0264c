"""Ingest with a real model (head trained on cached features of ``small_dataset``) and ``similar``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_catalog_helpers import catalog_url, table_counts  # noqa: F401
from typer.testing import CliRunner

from semcat import CATEGORIES
from semcat.catalog import open_catalog
from semcat.catalog import similar as similar_mod
from semcat.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def train_and_query(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(model file, folder of 20 images to ingest, folder of 10 more) from the synthetic set."""
    from semcat._io import iter_image_files
    from semcat.head import SoftmaxHead
    from semcat.featurespec import FeatureSpec
    from semcat.model import SemcatModel

    root = tmp_path_factory.mktemp("catalog_model")
    train, first, later = [], root / "first", root / "later"
    for cls in CATEGORIES:
        files = sorted((small_dataset / cls).iterdir())
        train += files[:3]
        for f in files[:2]:
            (first / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, first / cls / f.name)
        (later / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(files[3], later / cls / files[3].name)
    res = FeatureSpec.resolve("efficientnet_lite0").extract([str(p) for p in iter_image_files(train)])
    ok, X, errors = res.paths, res.features, res.errors
    assert not errors
    head = SoftmaxHead().fit(X, [Path(p).parent.name for p in ok])
    model_path = SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), head).save(root / "m.semcat")
    return Path(model_path), first, later


def test_ingest_classifies_once_and_finds_similar(catalog_url: str, train_and_query, monkeypatch, tmp_path) -> None:
    from semcat.model import load_model

    model_path, first, later = train_and_query
    model = load_model(model_path)
    cat = open_catalog(catalog_url)
    s = cat.ingest([first], model, batch_size=8, progress=False)
    assert (s.new, s.classified, s.failed) == (20, 20, 0)
    records = cat.search(limit=100)
    assert all(r.model_id == model.model_id and len(r.top) == 3 for r in records)
    for cls in CATEGORIES:
        assert cat.count(category=cls) == sum(r.top[0][0] == cls for r in records)
    correct = sum(r.top[0][0] == Path(r.path).parent.name for r in records)
    assert correct >= 14, f"a head trained on these classes should get most right ({correct}/20)"
    counts = table_counts(cat)
    assert counts["features"] == 20 and counts["predictions"] == 20
    again = cat.ingest([first], model, progress=False)
    assert (again.classified, again.new) == (0, 0) and table_counts(cat) == counts

    # similar: exact NumPy scan agrees with a brute-force check on the model's own features
    query = records[0]
    feats = {p.sha256: p.features for p in model.predict([r.path for r in records], with_features=True)}
    brute = sorted(((float(feats[query.sha256] @ v / np.linalg.norm(feats[query.sha256]) / np.linalg.norm(v)), sha)
                    for sha, v in feats.items() if sha != query.sha256), reverse=True)
    hits = cat.similar(query.sha256, k=5)
    assert [h for h, _ in hits] == [sha for _, sha in brute[:5]]
    assert [s for _, s in hits] == pytest.approx([s for s, _ in brute[:5]], abs=2e-3)

    # the ANN path (forced by a zero threshold) gives the same neighbours, and updates incrementally
    monkeypatch.setattr(similar_mod, "EXACT_MAX", 0)
    assert [h for h, _ in cat.similar(query.sha256, k=5)] == [h for h, _ in hits]
    cat.ingest([later], model, progress=False)
    assert cat.count() == 30
    new_sha = cat.search(text="/later/", limit=1)[0].sha256
    ann = cat.similar(new_sha, k=29)
    assert len(ann) == 29 and new_sha not in [h for h, _ in ann]
    monkeypatch.setattr(similar_mod, "EXACT_MAX", 10**9)
    assert {h for h, _ in cat.similar(new_sha, k=29)} == {h for h, _ in ann}
    cat.close()


def test_cli_ingest_with_model_and_similar(train_and_query, tmp_path: Path) -> None:
    model_path, first, _ = train_and_query
    db = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(first), "--model", str(model_path), "--db", db])
    assert result.exit_code == 0, result.output
    assert "20 classified" in result.output
    image = sorted((first / "Particles").iterdir())[0]
    result = runner.invoke(app, ["similar", str(image), "-k", "3", "--db", db, "--format", "json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and hits[0]["similarity"] >= hits[-1]["similarity"]
    assert all(Path(h["path"]).exists() for h in hits)
    bad = runner.invoke(app, ["ingest", str(first), "--model", str(tmp_path / "nope.semcat"), "--db", db])
    assert bad.exit_code == 2
