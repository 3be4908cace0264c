"""Issue 6 acceptance on SQLite and PostgreSQL: 500 images, re-ingest, 10 renames, filters."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_catalog_helpers import METADATA_SET, catalog_url, table_counts, write_metadata_set  # noqa: F401

from semcat import CATEGORIES
from semcat.catalog import open_catalog

pytestmark = pytest.mark.slow

PER_CLASS = 49  # 490 synthetic + 10 with FEI metadata = 500 images


@pytest.fixture(scope="module")
def archive500(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcat.synth import write_dataset

    root = tmp_path_factory.mktemp("archive500")
    write_dataset(root / "synth", per_class=PER_CLASS, size=96, seed=11, metadata=False)  # filters count the FEI set only
    write_metadata_set(root / "fei" / "run1")
    write_metadata_set(root / "fei" / "run2", seed=100)  # same settings, other pixels
    return root


@pytest.fixture()
def archive(archive500: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "archive"
    shutil.copytree(archive500, dst)
    return dst


def test_500_images_reingest_rename_and_filters(catalog_url: str, archive: Path) -> None:
    cat = open_catalog(catalog_url)
    first = cat.ingest([archive], batch_size=64, progress=False)
    assert (first.seen, first.new, first.failed) == (500, 500, 0)
    counts = table_counts(cat)
    assert counts["images"] == 500 and counts["image_paths"] == 500

    again = cat.ingest([archive], progress=False)
    assert (again.new, again.known, again.moved, again.failed) == (0, 500, 0, 0)
    assert table_counts(cat) == counts

    victims = sorted((archive / "synth" / "Powder").iterdir())[:10]
    for p in victims:
        p.rename(p.with_name("renamed_" + p.name))
    moved = cat.ingest([archive], progress=False)
    assert (moved.new, moved.moved, moved.known) == (0, 10, 490)
    assert cat.count() == 500 and cat.count(text="renamed_") == 10

    for cat_name in CATEGORIES:
        assert cat.count(text=f"/{cat_name}/") == PER_CLASS
    n_high = sum(m >= 20_000 for _, m, _, _ in METADATA_SET)
    assert cat.count(mag_min=20_000) == 2 * n_high
    assert cat.count(pixel_size_max=2e-9) == 2 * sum(p <= 2e-9 for _, _, p, _ in METADATA_SET)
    assert cat.count(text="run2", mag_min=20_000) == n_high
    cat.close()
