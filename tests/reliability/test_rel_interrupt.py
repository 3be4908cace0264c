"""Interruption: SIGINT and SIGKILL at seeded random points during feature extraction and ingest,
then resume. Every image must end up processed exactly once: no missing and no duplicated feature
rows or catalog rows, caches loadable (no CacheError), the database consistent.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from reliability.conftest import SEMCAT, assert_clean
from semcat.synth import write_dataset

SEED = 20260101
N_PER_CLASS = 2  # 20 images



@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interrupt_images")
    write_dataset(root, per_class=N_PER_CLASS, size=96, seed=5, databar=True)
    return root


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SEMCAT_HOME": str(home), "COLUMNS": "200"}


def _interrupt(cmd: list[str], env: dict, sig: int, delay: float, started) -> tuple[int, str]:
    """Start ``cmd``, wait until ``started(proc)`` says work began, then ``delay`` s, then ``sig``."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    started(proc)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _wait_for_shards(home: Path, deadline_s: float = 120):
    """``started`` callback: returns once the child wrote a feature shard (one more than now)."""
    def shards() -> int:
        return sum(1 for _ in (home / "features").rglob("*.fshard")) if (home / "features").is_dir() else 0

    before = shards()

    def started(proc: subprocess.Popen) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and proc.poll() is None and shards() <= before:
            time.sleep(0.1)
    return started


def _shard_rows(home: Path) -> tuple[int, int]:
    """(rows stored, distinct images) over every shard of every key; raises CacheError if corrupt."""
    from semcat.features import FeatureStore

    store = FeatureStore(home / "features")
    rows = distinct = 0
    for key in store.keys():
        distinct += store.count(key)
        rows += sum(len(s.hashes) for s in store._shards[key].values())
    return rows, distinct


def test_features_survive_sigint_and_sigkill(images, tmp_path, figures) -> None:
    home = tmp_path / "home"
    env = _env(home)
    rng = np.random.default_rng(SEED)
    cmd = [*SEMCAT, "features", str(images), "--batch-size", "2"]
    kills = 0
    for sig in (signal.SIGKILL, signal.SIGINT):
        rc, err = _interrupt(cmd, env, sig, float(rng.uniform(0.0, 0.3)), _wait_for_shards(home))
        kills += rc in (-9, 130)
        # -2: the signal landed after the work and its summary, while the interpreter was exiting
        assert rc in (0, -9, 130) or (rc == -2 and "summary:" in err), err[-2000:]
        if sig == signal.SIGINT and rc == 130:
            assert "Traceback" not in err and "interrupted" in err, err[-2000:]
    assert kills >= 1, "no run was interrupted mid-work: the scenario tested nothing"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert_clean(done)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout.strip().splitlines()[-1])
    computed, cached, errors = res["computed"], res["cached"], res["failed"]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    recomputed = json.loads(again.stdout.strip().splitlines()[-1])["computed"]
    n = 10 * N_PER_CLASS
    rows, distinct = _shard_rows(home)
    figures.add("interrupt: semcat features (SIGKILL, SIGINT, resume)", inputs=n, failures=errors,
                lost=n - distinct, duplicated=rows - distinct,
                notes=f"{kills} runs interrupted mid-work; resume computed {computed}, reused {cached}; "
                      f"a further run recomputed {recomputed}")
    assert errors == 0 and computed + cached == n
    assert distinct == n and rows == distinct, (rows, distinct)
    assert recomputed == 0


def _catalog_counts(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from semcat.catalog import open_catalog
    from semcat.catalog.schema import Feature, Image, ImagePath, IngestError, Prediction

    with open_catalog(url) as cat, cat.db.read() as conn:
        def n(q) -> int:
            return int(conn.execute(q).scalar_one())

        return {
            "images": n(sa.select(sa.func.count()).select_from(Image)),
            "paths": n(sa.select(sa.func.count()).select_from(ImagePath)),
            "distinct_paths": n(sa.select(sa.func.count(sa.distinct(ImagePath.path)))),
            "predictions": n(sa.select(sa.func.count()).select_from(Prediction)),
            "features": n(sa.select(sa.func.count()).select_from(Feature)),
            "unclassified": n(sa.select(sa.func.count()).select_from(Image).where(Image.prediction_id.is_(None))),
            "errors": n(sa.select(sa.func.count()).select_from(IngestError)),
        }


def _wait_for_rows(url: str, deadline_s: float = 120):
    """``started`` callback: returns once the child committed a batch (more images than now)."""
    def images() -> int:
        try:
            return _catalog_counts(url)["images"]
        except Exception:  # no catalog yet, or the child is creating the schema
            return 0

    before = images()

    def started(proc: subprocess.Popen) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end and proc.poll() is None and images() <= before:
            time.sleep(0.2)
    return started


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ingest_survives_sigint_and_sigkill(backend, images, tiny_model, tmp_path, figures, request) -> None:
    url = f"sqlite:///{tmp_path / 'cat.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg")
    env = _env(tmp_path / "home")
    rng = np.random.default_rng(SEED + 1)
    cmd = [*SEMCAT, "ingest", str(images), "--db", url, "--model", str(tiny_model), "--batch-size", "2"]
    signals = (signal.SIGKILL, signal.SIGINT) if backend == "sqlite" else (signal.SIGKILL,)
    kills = 0
    for sig in signals:
        rc, err = _interrupt(cmd, env, sig, float(rng.uniform(0.0, 0.5)), _wait_for_rows(url))
        kills += rc in (-9, 130)
        # -2: the signal landed after the work and its summary, while the interpreter was exiting
        assert rc in (0, -9, 130) or (rc == -2 and "summary:" in err), err[-2000:]
        if sig == signal.SIGINT and rc == 130:
            assert "Traceback" not in err and "interrupted" in err, err[-2000:]
    assert kills >= 1, "no run was interrupted mid-work: the scenario tested nothing"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert_clean(done)
    assert done.returncode == 0, done.stderr[-2000:]
    c = _catalog_counts(url)
    n = 10 * N_PER_CLASS
    dup = (c["paths"] - c["distinct_paths"]) + max(0, c["predictions"] - c["images"]) + max(0, c["features"] - c["images"])
    figures.add(f"interrupt: semcat ingest on {backend} ({'+'.join(signal.Signals(x).name for x in signals)}, resume)", inputs=n,
                failures=c["errors"], lost=n - c["images"] + c["unclassified"], duplicated=dup,
                notes=f"{kills} runs interrupted mid-work; final: {c['images']} images, {c['predictions']} "
                      f"predictions, {c['features']} feature rows")
    assert c["images"] == c["paths"] == c["distinct_paths"] == c["predictions"] == c["features"] == n, c
    assert c["unclassified"] == 0 and c["errors"] == 0
    assert "0 new" in done.stderr or "summary" in done.stderr
