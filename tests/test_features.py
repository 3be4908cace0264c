"""Feature extraction end to end: preprocessing, caching/resume, bad files, interruption, CLI."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from semcat.backbones import get_backbone
from semcat.cli import app
from semcat.features import FeatureStore, extract_features, feature_key, iter_features, preprocess
from semcat.runtime import TorchRuntime
from semcat.synth import generate_image, write_dataset

CATS = ["Particles", "Fibres", "Nanowires"]


@pytest.fixture(scope="module")
def spec():
    return get_backbone("efficientnet_lite0")


@pytest.fixture()
def rt(spec) -> TorchRuntime:
    """A fresh runtime per test: its ``images`` counter is the forward-pass count."""
    return TorchRuntime(spec, device="cpu")


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_dataset(root, per_class=3, size=160, seed=3, databar=True, categories=CATS)
    return root


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.tif"))


# --- preprocessing -----------------------------------------------------------------------------

def test_preprocess_views_shapes_and_normalisation(spec) -> None:
    img = generate_image("Particles", np.random.default_rng(0), shape=(300, 400)).astype(np.float32) / 255
    for view, v in (("full", 1), ("center", 1), ("tiles5", 5), ("clean", 1)):
        x = preprocess(img, spec, view=view)
        assert x.shape == (v, 3, 224, 224) and x.dtype == np.float32
        assert x.min() >= -1.0 and x.max() <= 1.0  # [0,1] through mean/std 0.5
        np.testing.assert_array_equal(x[:, 0], x[:, 2])  # gray replicated
    with pytest.raises(ValueError, match="2-D gray"):
        preprocess(np.zeros((10, 10, 3), np.float32), spec)
    with pytest.raises(ValueError, match="view must be one of"):
        preprocess(img, spec, view="zoom")
    assert np.all(preprocess(np.full((50, 60), 0.3, np.float32), spec) == 0.0)  # flat → mid-gray


def test_contrast_normalisation_makes_12_bit_and_dim_images_look_alike(spec) -> None:
    """12-bit data in a 16-bit file (0..4095 of 65535) and a dim, offset copy → same input."""
    img8 = generate_image("Fibres", np.random.default_rng(1), size=256).astype(np.float32) / 255
    twelve_bit = np.round(img8 * 4095) / 65535
    dim = 0.1 + 0.2 * img8
    ref = preprocess(img8, spec)
    assert np.abs(preprocess(twelve_bit, spec) - ref).mean() < 0.01
    assert np.abs(preprocess(dim, spec) - ref).mean() < 0.01


def test_contrast_range_from_histogram_equals_numpy_percentile() -> None:
    """The histogram shortcut gives np.percentile's values for 8-bit, 16-bit and arbitrary [0, 1]
    images, strided views and single pixels; out-of-range or NaN images take np.percentile itself."""
    from semcat.contrast import HIGH_PCT as _HIGH_PCT, LOW_PCT as _LOW_PCT, robust_range as _robust_range

    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (97, 131)) / np.float32(255), rng.integers(0, 65536, (64, 300)) / np.float32(65535),
              rng.random((120, 80), dtype=np.float32), np.clip(rng.normal(0.5, 0.3, (90, 150)), 0, 1)[::2, ::3],
              np.full((1, 1), 0.25, np.float32), (np.arange(4000, dtype=np.float32) % 7 / 6).reshape(40, 100)]
    for img in images:
        img = img.astype(np.float32)
        np.testing.assert_allclose(_robust_range(img), np.percentile(img, (_LOW_PCT, _HIGH_PCT)), rtol=0, atol=1e-7)
    shifted = images[2] * 3 - 1
    np.testing.assert_allclose(_robust_range(shifted), np.percentile(shifted, (_LOW_PCT, _HIGH_PCT)), atol=1e-7)
    with_nan = images[2].copy()
    with_nan[0, :5] = np.nan
    finite = with_nan[np.isfinite(with_nan)]
    np.testing.assert_allclose(_robust_range(with_nan), np.percentile(finite, (_LOW_PCT, _HIGH_PCT)), atol=1e-7)


# --- extraction and caching --------------------------------------------------------------------

def test_rerun_computes_nothing_and_adding_n_computes_n(data: Path, tmp_path: Path, rt, spec) -> None:
    store = FeatureStore(tmp_path / "cache")
    first = extract_features(data, spec, runtime=rt, store=store, batch_size=4, progress=False)
    n = len(_files(data))
    assert (first.computed, first.cached, len(first.paths), rt.images) == (n, 0, n, n)
    assert first.features.shape == (n, 1280) and np.isfinite(first.features).all()
    assert [Path(p).name for p in first.paths] == [p.name for p in _files(data)]

    again = extract_features(data, spec, runtime=rt, store=store, batch_size=4, progress=False)
    assert (again.computed, again.cached, rt.images) == (0, n, n)  # zero forward passes
    np.testing.assert_array_equal(again.features, first.features)

    write_dataset(data, per_class=4, size=160, seed=3, databar=True, categories=CATS)  # +1 per class
    more = extract_features(data, spec, runtime=rt, store=store, batch_size=4, progress=False)
    assert (more.computed, more.cached, rt.images) == (len(CATS), n, n + len(CATS))

    other = tmp_path / "copy_elsewhere"  # same images in another dataset: computed once
    shutil.copytree(data, other)
    assert extract_features(other, spec, runtime=rt, store=store, progress=False).computed == 0
    assert extract_features(data, spec, runtime=rt, store=store, view="full", progress=False).computed == n + 3


def test_cache_is_not_reused_when_a_sidecar_appears_or_changes(tmp_path: Path, rt, spec) -> None:
    """A JEOL sidecar's scanned height changes the data-bar crop: the features cached for the
    same image bytes without it (or with another sidecar) must not be served."""
    img = np.random.default_rng(2).integers(0, 256, (212, 256), dtype=np.uint8)
    img[192:] = 90  # a plain strip: only the sidecar's scanned height (192 rows) makes it a bar
    tifffile.imwrite(tmp_path / "wafer.tif", img)
    sidecar = tmp_path / "wafer.txt"
    jeol = "\r\n".join(["$CM_FORMAT JEOL/SEM", "$CM_MAG 5000", "$CM_ACCEL_VOLT 15.00", "$CM_FULL_SIZE 256 {}",
                         "$$SM_MICRON_BAR 128", "$$SM_MICRON_MARKER 2um", ""])
    store = FeatureStore(tmp_path / "cache")

    def run() -> tuple[int, np.ndarray]:
        res = extract_features(tmp_path / "wafer.tif", spec, runtime=rt, store=store, progress=False)
        assert not res.errors and len(res.paths) == 1
        return res.computed, res.features[0]

    computed, alone = run()
    assert computed == 1 and run()[0] == 0
    sidecar.write_text(jeol.format(192), newline="")
    computed, cropped = run()
    assert computed == 1 and not np.allclose(cropped, alone, atol=1e-3)
    assert run()[0] == 0
    sidecar.write_text(jeol.format(212), newline="")  # edited: every row scanned, no crop
    computed, uncropped = run()
    assert computed == 1 and np.allclose(uncropped, alone, atol=1e-5)
    sidecar.unlink()
    assert run()[0] == 0  # the image alone again: its first features, from the cache


def test_bad_files_are_listed_and_others_processed(data: Path, tmp_path: Path, rt, spec) -> None:
    good = _files(data)
    (data / "Fibres" / "empty.tif").write_bytes(b"")
    (data / "Fibres" / "notes.png").write_text("not a picture")
    (data / "Fibres" / "cut.tif").write_bytes(good[0].read_bytes()[:300])
    res = extract_features(data, spec, runtime=rt, store=FeatureStore(tmp_path / "c"), batch_size=4, progress=False)
    assert len(res.paths) == len(good)
    bad = {Path(p).name: msg for p, msg in res.errors}
    assert set(bad) == {"empty.tif", "notes.png", "cut.tif"}
    assert all(msg for msg in bad.values())


def test_duplicate_files_and_streaming_chunks(data: Path, tmp_path: Path, rt, spec) -> None:
    files = _files(data)
    dup = data / "Particles" / "same_bytes_again.tif"
    shutil.copy(files[0], dup)
    chunks = list(iter_features(data, spec, runtime=rt, store=FeatureStore(tmp_path / "c"),
                                batch_size=2, progress=False))
    assert len(chunks) >= len(files) // 2
    assert all(c.computed <= 2 for c in chunks)
    total = sum(len(c.paths) for c in chunks)
    assert total == len(files) + 1 and rt.images == len(files)  # identical bytes computed once


def test_no_store_always_computes(data: Path, rt, spec) -> None:
    a = extract_features(data, spec, runtime=rt, store=None, progress=False)
    b = extract_features(data, spec, runtime=rt, store=None, progress=False)
    assert a.computed == b.computed == rt.images // 2 == len(_files(data))
    np.testing.assert_allclose(a.features, b.features, atol=1e-6)


def test_opencv_runs_serially_while_images_decode_and_is_restored_after(data: Path, spec) -> None:
    """The decode threads are extraction's parallelism: OpenCV's own pool is off while they run
    (issue 21), for nested and overlapping runs alike, and the caller's setting comes back after."""
    import cv2

    from semcat.images import serial_opencv
    from semcat.runtime import Runtime

    seen: list[int] = []

    class Probe(Runtime):  # records OpenCV's thread count while batches flow
        name = "probe"

        def _infer(self, batch: np.ndarray) -> np.ndarray:
            seen.append(cv2.getNumThreads())
            return np.zeros((len(batch), self.spec.feature_dim), np.float32)

    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        res = extract_features(data, spec, runtime=Probe(spec), store=None, progress=False, batch_size=4)
        assert len(res.paths) == 9 and seen and set(seen) == {1}
        assert cv2.getNumThreads() == 3
        with serial_opencv():
            stream = iter_features(data, spec, runtime=Probe(spec), store=None, progress=False, batch_size=4)
            next(stream)  # a run still open when the outer one ends keeps OpenCV serial
            with serial_opencv():
                assert cv2.getNumThreads() == 1
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 1
        stream.close()
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_feature_key_depends_on_preprocessing(spec) -> None:
    keys = {feature_key(spec, crop_databar=c, view=v) for c in (True, False) for v in ("full", "center", "tiles5")}
    assert len(keys) == 6
    assert feature_key(spec) != feature_key(get_backbone("efficientnet_lite1"))


# --- interruption ------------------------------------------------------------------------------

def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from semcat.cli import app; app()", *args]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_extraction_resumes_without_redoing_work(tmp_path: Path, spec, sig) -> None:
    data = tmp_path / "data"
    write_dataset(data, per_class=8, size=160, seed=5, categories=CATS)
    n = len(_files(data))
    home = tmp_path / "home"  # a private cache: the session's shared one holds other tests' features
    proc = subprocess.Popen(_cli("features", str(data), "--runtime", "torch", "--batch-size", "2", "--workers", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "SEMCAT_HOME": str(home)})
    store = FeatureStore(home / "features")
    key = feature_key(spec)
    deadline = time.monotonic() + 240
    while store.count(key) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    done = store.count(key)
    assert 0 < done < n, f"kill did not land midway ({done}/{n}): {err.decode()[-500:]}"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and b"re-run to resume" in err

    rt = TorchRuntime(spec, device="cpu")
    res = extract_features(data, spec, runtime=rt, batch_size=8, store=store, progress=False)
    assert len(res.paths) == n and not res.errors
    assert res.cached >= done and res.computed == n - res.cached == rt.images


# --- CLI -----------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_backbones() -> None:
    assert "feature" in runner.invoke(app, ["backbones", "--help"]).output
    res = runner.invoke(app, ["backbones", "efficientnet*"])
    assert res.exit_code == 0 and "efficientnet_lite2" in res.output and "1280" in res.output
    bad = runner.invoke(app, ["backbones", "nothing_like_this*"])
    assert bad.exit_code == 1


def test_cli_features(data: Path, tmp_path: Path) -> None:
    assert "--view" in runner.invoke(app, ["features", "--help"]).output
    out = tmp_path / "f.npz"
    res = runner.invoke(app, ["features", str(data), "--runtime", "torch", "--out", str(out), "--view", "full"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["images"] == len(_files(data)) and summary["dim"] == 1280
    z = np.load(out)
    assert z["features"].shape == (len(_files(data)), 1280) and len(z["sha256"][0]) == 64

    (data / "Fibres" / "broken.tif").write_bytes(b"II*\x00garbage")
    res = runner.invoke(app, ["features", str(data), "--runtime", "torch", "--view", "full"])
    assert res.exit_code == 1 and "broken.tif" in res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["computed"] == 0  # the rest was cached

    res = runner.invoke(app, ["features", str(data), "--backbone", "efficientnet_lite9"])
    assert res.exit_code == 1 and "Did you mean" in res.output
