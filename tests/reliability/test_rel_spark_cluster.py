"""The Spark engine on a real standalone cluster: a master and two one-core workers on loopback,
started with the manual's ``spark-class`` commands (docs/how-to/spark.md) (``semcat.engines.standalone``).

One cluster for the module (JVMs start slowly). In order: the README's packed-environment
ingest through the CLI with its driver SIGKILLed mid-run and re-run, the README's classify
command, then one driver session for
classify/features/ingest against the local engine, ending with a worker SIGKILLed mid-job (the
cluster keeps one worker after that, so it runs last). Every result is compared with the local
engine on the same images.
"""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from reliability.conftest import SEMCAT, assert_clean
from tests.conftest import flat_subset, missing_service

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.xdist_group("spark-cluster")]

TOP_K = 3


JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""For every JVM of this module (master, workers, executors, drivers): these JVMs live seconds and
move Arrow batches while Python does the work, so the C2 JIT and parallel GC threads only burn
CPU. Measured here: cluster start + session + a 20-image job took 41 CPU-s instead of 73."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """Master + 2 workers (1 core, 1 GB each); executors import semcat as installed or from a
    shipped archive (the cluster drops any PYTHONPATH)."""
    if shutil.which("java") is None:
        missing_service("Java is not installed (Spark needs Java 17)")
    from semcat.engines.standalone import StandaloneCluster

    saved = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = JVM_OPTIONS  # inherited by the cluster, CLI drivers and the session
    c = StandaloneCluster(tmp_path_factory.mktemp("spark_cluster"))
    try:
        c.start()
        c.add_workers(2, cores=1, memory="1g")
        yield c
    finally:
        c.stop()
        if saved is None:
            os.environ.pop("JAVA_TOOL_OPTIONS", None)
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = saved


@pytest.fixture(scope="module")
def images(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic images, 4 per class (flat folder)."""
    return flat_subset(small_dataset, tmp_path_factory.mktemp("cluster_images"), 4)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path) -> Path:
    """A real model (softmax head on efficientnet_lite0 features); converts the OpenVINO IR into
    SEMCAT_HOME, which the workers share with this process."""
    from semcat._io import iter_image_files
    from semcat.head import SoftmaxHead
    from semcat.featurespec import FeatureSpec
    from semcat.model import SemcatModel

    paths = [str(p) for p in iter_image_files([small_dataset])][::3]
    res = FeatureSpec.resolve("efficientnet_lite0").extract(paths)
    ok, X, errors = res.paths, res.features, res.errors
    assert not errors
    head = SoftmaxHead().fit(X, [Path(p).parent.name for p in ok])
    out = tmp_path_factory.mktemp("cluster_model") / "model.semcat"
    SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), head).save(out)
    return out


@pytest.fixture(scope="module")
def local(model_path: Path, images: Path) -> dict:
    """The local engine's predictions (with feature vectors) for every image: the reference."""
    from semcat.model import load_model

    paths = [str(p.absolute()) for p in sorted(images.iterdir())]
    return {p.path: p for p in load_model(model_path).predict(paths, top_k=TOP_K, store=None, progress=False,
                                                              with_features=True)}


def _mismatches(rows, local: dict) -> int:
    """Rows whose path, hash, classes, scores (1e-5) or decision differ from the local engine."""
    bad = 0
    for r in rows.itertuples():
        ref = local.get(r.path)
        same = (ref is not None and r.error is None and ref.error is None and r.sha256 == ref.sha256
                and [getattr(r, f"label_{i + 1}") for i in range(TOP_K)] == [c for c, _ in ref.top]
                and np.allclose([getattr(r, f"score_{i + 1}") for i in range(TOP_K)], [s for _, s in ref.top],
                                atol=1e-5, rtol=0)
                and r.decision == ref.decision)
        bad += not same
    return bad


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")  # the driver runs the code under test
    return {**env, "COLUMNS": "200", **extra}


# --------------------------------------------------------------------------- driver killed, packed env


def test_driver_killed_mid_ingest_resumes_on_the_packed_environment(cluster, model_path, images, tmp_path,
                                                                      figures):
    """The README's commands: ``semcat spark pack-env``, then ``semcat ingest`` with the archive as the
    executors' Python; the driver SIGKILLed after its first chunk, then the same command again.

    The archive holds the interpreter link and semcat only (``--semcat-only``): the ~380 MB of
    executor dependencies (numpy, pandas, pyarrow, OpenVINO...) take ~30 s to pack, so here
    executors reach them through PYTHONPATH to this venv's site-packages. semcat itself is importable only from the
    archive (an editable install is a .pth file, which PYTHONPATH ignores), and ``PYSPARK_PYTHON``
    names ``./environment/bin/python``, which exists only where the archive was unpacked. The
    archive holds no bytecode, and executors may write it (``PYTHONDONTWRITEBYTECODE`` emptied), so
    ``semcat/engines/__pycache__/spark.*.pyc`` in an unpacked archive shows an executor imported
    the engine from it.
    """
    site = sysconfig.get_paths()["purelib"]
    base_python = os.path.realpath(Path(sys.base_prefix) / "bin" / "python3")
    probe = subprocess.run([base_python, "-c", "import semcat"], env={"PYTHONPATH": site}, capture_output=True)
    assert probe.returncode != 0, "semcat importable from site-packages alone: the test could not tell"
    pack = subprocess.run([*SEMCAT, "spark", "pack-env", "env.tar.gz", "--semcat-only"], cwd=tmp_path,
                          env=_cli_env(), capture_output=True, text=True, timeout=120)
    assert pack.returncode == 0, pack.stderr

    db = tmp_path / "cat.db"
    cmd = [*SEMCAT, "ingest", str(images), "--model", str(model_path), "--engine", "spark", "--master",
           cluster.url, "--conf", "spark.archives=env.tar.gz#environment", "--conf",
           f"spark.executorEnv.PYTHONPATH={site}", "--conf", "spark.cores.max=1",  # one executor: CI time
           "--conf", "spark.executorEnv.PYTHONDONTWRITEBYTECODE=",
           "--db", f"sqlite:///{db}", "--chunk-size", "8"]
    env = _cli_env(PYSPARK_PYTHON="./environment/bin/python")
    n = len(list(images.iterdir()))
    from semcat.model import load_model

    out = Path(os.environ["SEMCAT_HOME"]) / "spark" / f"ingest-{load_model(model_path).model_id[:16]}"
    shutil.rmtree(out, ignore_errors=True)

    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    end = time.monotonic() + 240
    while time.monotonic() < end and proc.poll() is None and not any(out.glob("*.parquet")):
        time.sleep(0.2)
    assert proc.poll() is None, "the driver finished before it could be killed: " + proc.communicate()[1][-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the Python driver and its JVM
    proc.communicate()
    done_before = set(_parquet_paths(out))
    assert 0 < len(done_before) < n

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert_clean(again)
    assert again.returncode == 0, again.stderr[-3000:]
    reused = _reused(again.stderr)
    paths = _parquet_paths(out)
    with sqlite3.connect(db) as con:
        images_, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT sha256) FROM images").fetchone()
        preds = con.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        locations = con.execute("SELECT COUNT(*) FROM image_paths").fetchone()[0]
    unpacked = list(cluster.workdir.glob("worker-*/app-*/*/environment/lib/python*/site-packages/semcat"))
    ran = [u for u in unpacked if any((u / "engines" / "__pycache__").glob("spark.*.pyc"))]
    dup = (len(paths) - len(set(paths))) + (images_ - distinct) + (preds - n) + (locations - n)
    figures.add("spark cluster: driver SIGKILLed mid-ingest, re-run (packed env, sqlite)", inputs=n,
                failures=int(reused != len(done_before)) + int(not ran),
                lost=n - min(distinct, len(set(paths))), duplicated=dup,
                notes=f"{len(done_before)} images classified before the kill were reused, {n - reused} "
                      f"classified by the re-run; {len(ran)} of {len(unpacked)} executors that unpacked the "
                      "archive imported the Spark engine from it")
    assert unpacked, "no executor unpacked the archive"
    assert ran, "no executor imported semcat from the unpacked archive (no bytecode written there)"
    assert reused == len(done_before)
    assert sorted(set(paths)) == sorted(str(p.absolute()) for p in images.iterdir())
    assert len(paths) == n, "an image was classified twice (duplicate rows in the Spark output)"
    assert (images_, distinct, preds, locations) == (n, n, n, n)


def test_classify_command_on_the_cluster_matches_local(cluster, model_path, images, local, tmp_path):
    """The README's ``semcat classify ... --engine spark --master spark://...`` line as a user runs it."""
    from semcat.engines.spark import read_results

    out = tmp_path / "predictions"
    run = subprocess.run([*SEMCAT, "classify", str(model_path), str(images), "--engine", "spark", "--master",
                          cluster.url, "--conf", "spark.cores.max=1", "--output", str(out)],
                         env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert_clean(run)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = read_results(out)
    assert len(rows) == len(local) and _mismatches(rows, local) == 0


def _parquet_paths(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [p for f in sorted(out.glob("*.parquet")) for p in pq.read_table(f, columns=["path"]).column("path").to_pylist()]


def _reused(stderr: str) -> int:
    """The count in the ingest command's ``spark: N classified on ..., M reused`` line."""
    line = next(ln for ln in stderr.splitlines() if ln.startswith("spark: "))
    return int(line.split(", ", 1)[1].split(" reused")[0])


# --------------------------------------------------------------------------- one driver session


class TestOneDriverSession:
    """classify, features and ingest through the Python API on one session, then a worker kill."""

    @pytest.fixture(scope="class")
    @classmethod
    def spark(cls, cluster):
        from semcat.engines.spark import spark_session

        session = spark_session(cluster.url, app_name="semcat-cluster-test")
        yield session
        session.stop()

    def test_classify_matches_local_and_executor_read_errors_become_rows(self, spark, model_path, images,
                                                                        local, tmp_path, figures):
        from semcat.engines.spark import classify, read_results

        gone = tmp_path / "gone.tif"  # listed for the executors, not on their filesystem
        corrupt = tmp_path / "corrupt.tif"
        corrupt.write_bytes(b"II*\x00" + b"\x00" * 40)
        listing = tmp_path / "files.txt"
        listing.write_text("\n".join([*local, str(gone), str(corrupt)]) + "\n", encoding="utf-8")
        out = tmp_path / "out.parquet"
        s = classify(model_path, listing, out=out, top_k=TOP_K, spark=spark, progress=False)
        rows = read_results(out)
        errors = dict(zip(rows["path"], rows["error"]))
        named = sum(bool(errors.get(str(p))) for p in (gone, corrupt))
        mismatches = _mismatches(rows[rows["error"].isna()], local)
        figures.add("spark cluster: unreadable files on executors (missing, corrupt) + good ones", inputs=len(rows),
                    failures=mismatches + (2 - named), lost=len(local) + 2 - len(rows),
                    notes="each bad file is a row naming its error; good rows equal the local engine")
        assert (s.total, s.ok, s.failed) == (len(local) + 2, len(local), 2)
        assert named == 2
        assert mismatches == 0 and len(rows) == len(local) + 2

    def test_features_match_local(self, spark, images, local, tmp_path):
        from semcat.engines.spark import features, read_results

        s = features(images, tmp_path / "f.parquet", spark=spark, progress=False)
        assert (s.ok, s.failed) == (len(local), 0)
        rows = read_results(tmp_path / "f.parquet").set_index("path")
        got = np.stack([np.asarray(rows.loc[p, "features"], np.float32) for p in local])
        np.testing.assert_allclose(got, np.stack([p.features for p in local.values()]), atol=1e-5, rtol=0)

    def test_ingest_matches_local(self, spark, model_path, images, local, tmp_path):
        from semcat.catalog import open_catalog
        from semcat.engines.spark import ingest

        db = f"sqlite:///{tmp_path / 'cat.db'}"
        summary = ingest(images, db, model_path, out=tmp_path / "ing.parquet", spark=spark, progress=False)
        assert (summary.new, summary.classified, summary.failed) == (len(local), len(local), 0)
        with open_catalog(db) as cat:
            assert cat.count() == len(local)
            for p in local.values():
                rec = cat.get(p.sha256)
                assert [c for c, _ in rec.top] == [c for c, _ in p.top][:len(rec.top)]
                assert rec.top[0][1] == pytest.approx(p.top[0][1], abs=1e-5)

    def test_worker_killed_mid_job_the_other_finishes_it(self, spark, cluster, model_path, images, local,
                                                         tmp_path, figures):
        from semcat.engines.spark import classify, read_results

        out = tmp_path / "out.parquet"
        result: dict = {}
        job = threading.Thread(target=lambda: result.update(s=classify(
            model_path, images, out=out, top_k=TOP_K, spark=spark, progress=False, partitions=len(local) // 2)))
        job.start()
        staged = out / "_temporary"
        end = time.monotonic() + 240
        while job.is_alive() and time.monotonic() < end and not any(staged.rglob("*.parquet")):
            time.sleep(0.05)
        assert job.is_alive(), "the job finished before a worker could be killed"
        cluster.kill_worker(1)  # worker and executor JVMs; the executor's Python workers follow
        job.join(timeout=300)
        rows = read_results(out)
        mismatches = _mismatches(rows, local)
        figures.add("spark cluster: worker SIGKILLed mid-job (2 → 1 workers)", inputs=len(local),
                    failures=mismatches, lost=len(local) - rows["path"].nunique(),
                    duplicated=len(rows) - rows["path"].nunique(),
                    notes="the job finished on the remaining worker; rows equal the local engine")
        assert result["s"].ok == len(local)
        assert len(rows) == rows["path"].nunique() == len(local) and mismatches == 0
