"""Near-duplicate groups on generated re-saves, crops, re-scans and other data bars; splits; catalog."""
from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from test_web_helpers import client, fresh_pg_url
from typer.testing import CliRunner

from semcat.catalog import open_catalog
from semcat.cli import app
from semcat.dataset import scan_dataset
from semcat.duplicates import group_pairs, near_pairs, perceptual_hash, scan_duplicates
from semcat.synth.duplicates import score_groups, write_duplicate_set

runner = CliRunner()


@pytest.fixture(scope="module")
def dup_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 fields (every category, two twice) x (original, re-save, other bar, crop, re-scan, sibling)."""
    return write_duplicate_set(tmp_path_factory.mktemp("dups"), fields=12, size=192, seed=5).parent


def test_perceptual_hash_ignores_brightness_and_noise_not_content() -> None:
    rng = np.random.default_rng(0)
    img = cv2_blur(rng.random((96, 128)).astype(np.float32))
    other = cv2_blur(rng.random((96, 128)).astype(np.float32))
    h = perceptual_hash(img)
    assert bin(h ^ perceptual_hash(img * 0.7 + 0.1 + rng.normal(0, 0.01, img.shape))).count("1") <= 4
    assert bin(h ^ perceptual_hash(other)).count("1") > 16
    assert near_pairs([h, None, h ^ 0b111, h ^ (2**40 - 1)], max_distance=3) == [(0, 2)]
    assert group_pairs(5, [(3, 1), (1, 4)]) == [[1, 3, 4]]


def cv2_blur(a: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(a, (0, 0), 3)


@pytest.mark.slow
def test_recall_on_resaves_crops_rescans_without_false_merges(dup_set: Path) -> None:
    """Acceptance: recall >= 0.95 over all variants, and siblings (another field of the same
    sample, same look) are never merged with their field."""
    found = scan_duplicates(dup_set, progress=False)
    score = score_groups(found.path_groups(), dup_set / "truth.csv")
    assert score["recall_all"] >= 0.95, score
    assert min(score["recall"].values()) >= 0.9, score
    assert score["false_merges"] == 0, score
    assert not found.errors


def test_without_features_resaves_are_found_and_nothing_is_merged_wrongly(dup_set: Path) -> None:
    score = score_groups(scan_duplicates(dup_set, features=False).path_groups(), dup_set / "truth.csv")
    assert score["recall"]["resave"] == 1.0 and score["false_merges"] == 0, score


def test_split_keeps_each_near_duplicate_group_on_one_side(dup_set: Path, tmp_path: Path) -> None:
    """Originals, re-saves and re-bars of one field go to one split; without the near-duplicate
    merge they straddle splits (so the test can fail)."""
    root = tmp_path / "data"
    for f in sorted(dup_set.glob("field_*")):
        cat = ("A", "B")[int(f.name.split("_")[1]) % 2]
        (root / cat).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / cat / f.name)

    def straddling(ds) -> int:
        splits = defaultdict(set)
        for s in ds.samples:
            field, variant = s.path.stem.split("_")[1:3]
            if variant in ("original", "resave"):
                splits[field].add(s.split)
        return sum(len(v) > 1 for v in splits.values())

    merged = scan_dataset(root, fractions=(0.5, 0.25, 0.25))
    assert straddling(merged) == 0 and merged.near_groups >= 12
    assert merged.to_dict()["near_duplicate_groups_merged"] == merged.near_groups
    found = scan_duplicates(root, features=False)
    split_of = {str(s.path): s.split for s in merged.samples}
    assert all(len({split_of[p] for p in g}) == 1 for g in found.path_groups())
    plain = scan_dataset(root, fractions=(0.5, 0.25, 0.25), near_duplicates=False)
    assert straddling(plain) > 0 and plain.near_groups == 0


def test_cli_prints_json_groups_and_reports_bad_files(dup_set: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(dup_set, folder)
    (folder / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    result = runner.invoke(app, ["duplicates", str(folder), "--format", "json", "--no-features"])
    assert result.exit_code == 1
    assert "broken.tif" in result.stderr and "1 failed" in result.stderr
    groups = json.loads(result.stdout)
    assert groups and all(isinstance(g, list) and len(g) >= 2 for g in groups)
    assert [str(folder / "field_0000_original.tif"), str(folder / "field_0000_resave.jpg")] == \
        [p for p in groups[0] if "original" in p or "resave" in p]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'c.db'}"
    else:
        yield from fresh_pg_url(request)


def test_catalog_stores_groups_and_the_image_page_shows_them(dup_set: Path, db_url: str, tmp_path: Path) -> None:
    from semcat.web.app import create_app
    from semcat.web.settings import Settings

    with open_catalog(db_url) as cat:
        cat.ingest([dup_set], progress=False)
        result = runner.invoke(app, ["duplicates", "--db", db_url, "--format", "json", "--no-features"])
        assert result.exit_code == 0, result.output
        groups = json.loads(result.stdout)
        original = _sha(dup_set / "field_0003_original.tif")
        resave = cat.get(cat.resolve(_sha(dup_set / "field_0003_resave.jpg")))
        assert resave.sha256 in cat.duplicates_of(original)
        assert any(str(dup_set / "field_0003_resave.jpg") in g for g in groups)
        sibling = _sha(dup_set / "field_0003_sibling.tif")
        assert sibling not in cat.duplicates_of(original) and cat.duplicates_of(sibling) == []
        web = client(create_app(Settings(db_url=db_url, local_user="t", storage_dir=tmp_path / "s"), catalog=cat))
        page = web.get(f"/api/images/{original}").json()
        assert resave.sha256 in page["duplicates"]
        assert f'href="/images/{resave.sha256}"' in web.get(f"/images/{original}").text
        assert cat.set_duplicate_groups([]) == 0 and cat.duplicates_of(original) == []


def _sha(path: Path) -> str:
    from semcat._io import sha256_file

    return sha256_file(path)


def test_training_from_the_catalog_keeps_stored_groups_in_one_split(dup_set: Path, tmp_path: Path) -> None:
    from semcat.commands.train import _from_catalog

    url = f"sqlite:///{tmp_path / 'c.db'}"
    with open_catalog(url) as cat:
        cat.ingest([dup_set], progress=False)
        for rec in cat.search(limit=1000):
            cat.confirm(rec.sha256, "Tips", who="t")
        stored = cat.set_duplicate_groups(g for g in [[_sha(p) for p in group] for group in
                                                      scan_duplicates(dup_set, features=False).path_groups()])
        keys = cat.duplicate_keys()
    data = _from_catalog(url, None)
    split_of = dict(zip(data.paths, data.splits))
    by_group = defaultdict(set)
    for path, split in split_of.items():
        by_group[keys.get(_sha(Path(path)), path)].add(split)
    assert stored >= 12 and all(len(v) == 1 for v in by_group.values())


def test_a_version_3_catalog_is_upgraded_with_groups_and_categories(db_url: str) -> None:
    import sqlalchemy as sa

    from semcat.catalog.schema import SCHEMA_VERSION

    open_catalog(db_url).close()
    cat = open_catalog(db_url)
    with cat.db.write() as conn:  # back to version 3: no dup_group, no categories
        conn.exec_driver_sql("DROP INDEX ix_images_dup_group")
        conn.exec_driver_sql("ALTER TABLE images DROP COLUMN dup_group")
        conn.exec_driver_sql("DROP TABLE categories")
        conn.exec_driver_sql("UPDATE schema_version SET version = 3")
    cat.close()
    with open_catalog(db_url) as cat, cat.db.read() as conn:
        insp = sa.inspect(conn)
        assert "dup_group" in {c["name"] for c in insp.get_columns("images")}
        assert "categories" in insp.get_table_names()
        assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == SCHEMA_VERSION == 4
