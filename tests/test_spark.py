"""The Spark engine on a real local[2] session (Java 17), checked against the local engine."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import flat_subset, missing_service

pytestmark = pytest.mark.slow

TOP_K = 3


@pytest.fixture(scope="module")
def spark():
    """One real Spark session for the module (startup costs several seconds)."""
    if shutil.which("java") is None:
        missing_service("Java is not installed (Spark needs Java 17)")
    from semcat.engines.spark import spark_session

    session = spark_session("local[2]", app_name="semcat-test")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def images(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 synthetic images: 49 good ones (5 per class, one fewer for the last) and one corrupted."""
    root = flat_subset(small_dataset, tmp_path_factory.mktemp("spark_images"), 5)
    sorted(root.iterdir())[-1].unlink()
    (root / "zz_corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 40)  # a TIFF header, nothing else
    assert len(list(root.iterdir())) == 50
    return root


@pytest.fixture(scope="module")
def model_path(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model: softmax head trained on cached features of the synthetic set."""
    from semcat._io import iter_image_files
    from semcat.head import SoftmaxHead
    from semcat.featurespec import FeatureSpec
    from semcat.model import SemcatModel

    paths = [str(p) for p in iter_image_files([small_dataset])]
    res = FeatureSpec.resolve("efficientnet_lite0").extract(paths)
    ok, X, errors = res.paths, res.features, res.errors
    assert not errors
    y = [Path(p).parent.name for p in ok]
    head = SoftmaxHead().fit(X, y)
    out = tmp_path_factory.mktemp("spark_model") / "model.semcat"
    SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), head).save(out)
    return out


def _local(model_path: Path, paths: list[str]) -> dict[str, object]:
    from semcat.engines.local import classify as local_classify
    from semcat.model import load_model

    preds = local_classify(load_model(model_path), paths, top_k=TOP_K, store=None)
    return {p.path: p for p in preds}


def test_classify_matches_local_engine_and_reports_the_bad_file(spark, images, model_path, tmp_path):
    from semcat.engines.spark import classify, read_inputs, read_results

    out = tmp_path / "out.parquet"
    summary = classify(model_path, images, out=out, top_k=TOP_K, spark=spark, progress=False)
    assert (summary.total, summary.ok, summary.failed, summary.skipped) == (50, 49, 1, 0)

    rows = read_results(out)
    assert len(rows) == 50 and set(rows["path"]) == set(read_inputs(images))
    local = _local(model_path, list(rows["path"]))
    bad = rows[rows["error"].notna()]
    assert len(bad) == 1 and bad.iloc[0]["path"].endswith("zz_corrupt.tif")
    assert local[bad.iloc[0]["path"]].error is not None
    for r in rows[rows["error"].isna()].itertuples():
        ref = local[r.path]
        assert r.sha256 == ref.sha256
        assert [getattr(r, f"label_{i + 1}") for i in range(TOP_K)] == [c for c, _ in ref.top]
        np.testing.assert_allclose([getattr(r, f"score_{i + 1}") for i in range(TOP_K)],
                                   [s for _, s in ref.top], atol=1e-5, rtol=0)
        assert r.decision == ref.decision
        assert r.candidates == "|".join(ref.candidates)

    # resume: finished images are skipped, only the failed one is tried again
    again = classify(model_path, images, out=out, top_k=TOP_K, spark=spark, progress=False)
    assert (again.skipped, again.ok, again.failed) == (49, 0, 1)


def test_inputs_as_file_list_and_parquet_table(images, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from semcat.engines.spark import read_inputs

    paths = read_inputs(images)
    assert len(paths) == 50 and all(Path(p).is_absolute() for p in paths)
    listing = tmp_path / "files.txt"
    listing.write_text("# images\n" + "\n".join(paths[:10]) + "\n\n" + paths[0] + "\n")
    assert read_inputs(listing) == paths[:10]
    table = tmp_path / "paths.parquet"
    pq.write_table(pa.table({"path": paths[10:20]}), table)
    assert read_inputs(table) == paths[10:20]
    pq.write_table(pa.table({"file": paths[:2]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="'path' column"):
        read_inputs(tmp_path / "bad.parquet")
    with pytest.raises(FileNotFoundError, match="input not found"):
        read_inputs(tmp_path / "nowhere")


def test_features_match_local_extraction(spark, images, tmp_path):
    """Executors compute the local features, and write them to a given cache folder (``store``)."""
    from semcat.engines.spark import features, read_results
    from semcat.features import FeatureStore
    from semcat.featurespec import FeatureSpec

    out = tmp_path / "feats.parquet"
    subset = sorted(images.iterdir())[-10:]  # 9 good files and the corrupted one, to keep it quick
    cache = FeatureStore(tmp_path / "shared-cache")
    summary = features(subset, out, spark=spark, progress=False, store=cache)
    assert (summary.ok, summary.failed) == (9, 1)
    rows = read_results(out).set_index("path")
    spec = FeatureSpec.resolve("efficientnet_lite0")
    res = spec.extract(list(rows.index), store=None)
    ok, X = res.paths, res.features
    got = np.stack([np.asarray(rows.loc[p, "features"], np.float32) for p in ok])
    np.testing.assert_allclose(got, X, atol=1e-5, rtol=0)
    cached = FeatureStore(cache.root).get(spec.key, res.hashes)
    assert len(cached) == 9
    np.testing.assert_allclose(np.stack([cached[h] for h in res.hashes]), X, atol=1e-5, rtol=0)


def test_ingest_writes_spark_results_into_the_catalog(spark, images, model_path, tmp_path):
    from semcat.catalog import open_catalog
    from semcat.engines.spark import ingest

    db = f"sqlite:///{tmp_path / 'cat.db'}"
    summary = ingest(images, db, model_path, out=tmp_path / "ing.parquet", spark=spark, progress=False)
    assert summary.failed == 1 and summary.classified == 49 and summary.new == 49
    local = _local(model_path, [str(p) for p in sorted(images.iterdir())])
    with open_catalog(db) as cat:
        assert cat.count() == 49
        for p in list(local.values())[:10]:
            if p.error:
                continue
            rec = cat.get(p.sha256)
            assert rec.top[0][0] == p.top[0][0]
            assert rec.top[0][1] == pytest.approx(p.top[0][1], abs=1e-5)
        # feature vectors were stored too: similarity search works on Spark-ingested images
        first = next(p for p in local.values() if p.error is None)
        assert len(cat.similar(first.sha256, k=3)) == 3


def test_tasks_are_small_enough_to_balance_the_cores():
    """One task per core for a small chunk (each task has a fixed cost); a big chunk is cut into
    tasks of about 128 images."""
    from semcat.engines.spark import _auto_partitions

    assert _auto_partitions(50, 2) == 2
    assert _auto_partitions(1, 2) == 1
    assert _auto_partitions(5000, 2) == 40 and 5000 / 40 <= 128
    assert _auto_partitions(5000, 64) == 64


def test_files_left_by_a_killed_driver_are_not_committed_twice(spark, images, model_path, tmp_path):
    """A driver killed mid-chunk leaves finished task files under ``_temporary``; the next job must
    not commit them next to its own rows for the same images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from semcat.engines.spark import classify, classify_schema, read_inputs, read_results

    out = tmp_path / "out.parquet"
    paths = read_inputs(images)[:4]
    stale = out / "_temporary" / "0" / "task_202611290000_0000_m_000000"
    stale.mkdir(parents=True)
    schema = pa.schema([(c, pa.float64() if t == "double" else pa.string())
                        for c, t in (col.split() for col in classify_schema(TOP_K).split(", "))])
    pq.write_table(pa.table({f.name: [p if f.name == "path" else None for p in paths] for f in schema},
                            schema=schema), stale / "part-00000-stale.snappy.parquet")
    s = classify(model_path, paths, out=out, top_k=TOP_K, spark=spark, progress=False)
    rows = read_results(out)
    assert s.ok == 4 and sorted(rows["path"]) == sorted(paths)
