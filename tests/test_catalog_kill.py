"""Killing an ingest (SIGKILL) midway and re-running catalogues every image exactly once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_catalog_helpers import catalog_url  # noqa: F401

from semcat.catalog import open_catalog
from semcat.catalog.schema import Image, ImagePath

pytestmark = pytest.mark.slow

N = 200


@pytest.fixture(scope="module")
def archive200(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from semcat.synth import write_dataset

    root = tmp_path_factory.mktemp("archive200")
    write_dataset(root, per_class=N // 10, size=64, seed=5)
    return root


def test_sigkill_midway_then_rerun_catalogues_each_image_once(catalog_url: str, archive200: Path) -> None:
    open_catalog(catalog_url).close()  # create the schema before the race starts
    cmd = [str(Path(sys.executable).with_name("semcat")), "ingest", str(archive200), "--db", catalog_url, "--batch-size", "4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cat = open_catalog(catalog_url)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while cat.count() < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    partial = cat.count()
    assert 0 < partial < N, f"the kill should land midway (catalogued {partial} of {N})"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{N - partial} new" in rerun.stderr
    with cat.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Image)).scalar_one() == N
        paths = conn.execute(sa.select(ImagePath.path)).scalars().all()
    assert len(paths) == len(set(paths)) == N
    cat.close()
