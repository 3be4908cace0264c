"""Issue 20: test-time adaptation of a classified folder and the head's scale shrinkage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from semcat.adapt import adapt_batch, load_reference, reference_stats, reference_tensors
from semcat.cli import app
from semcat.crossval import fit_semcat_fixed, leave_one_group_out, within_groups
from semcat.head import SCALE_SHRINKAGE, SoftmaxHead
from semcat.synth.instruments import write_instrument_set

runner = CliRunner()


def _instruments(seed: int = 0, n: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """4 classes x 3 groups; each group shifts and scales every feature by its own amount."""
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"]
    centres = rng.normal(0, 1, (4, 8))
    X, y, g = [], [], []
    for gi in range(3):
        offset, scale = rng.normal(0, 4, 8), rng.uniform(0.5, 2.0, 8)
        for ci, c in enumerate(classes):
            X.append((centres[ci] + 0.15 * rng.normal(0, 1, (n, 8))) * scale + offset)
            y += [c] * n
            g += [f"g{gi}"] * n
    return np.vstack(X).astype(np.float32), np.array(y, dtype=object), np.array(g, dtype=object), classes


def test_group_adaptation_cancels_an_instrument_shift_and_fails_on_one_class_batches() -> None:
    X, y, g, classes = _instruments()
    plain = leave_one_group_out(X, y, g, classes, fit_semcat_fixed)["pooled"]["accuracy"]
    res = {mode: leave_one_group_out(X, y, g, classes, fit_semcat_fixed, adapt=mode)["pooled"]["accuracy"]
           for mode in ("group", "balanced")}
    assert min(res.values()) >= 0.95 > plain
    # the known failure mode: a folder of one class is centred on the training mean of all classes
    one = leave_one_group_out(X, y, g, classes, fit_semcat_fixed, adapt="group", batch_classes=1)
    assert one["pooled"]["n"] == len(y) and one["pooled"]["accuracy"] < 0.5
    # without adaptation the batch does not matter
    unbatched = leave_one_group_out(X, y, g, classes, fit_semcat_fixed, batch_classes=1)["pooled"]["accuracy"]
    assert unbatched == pytest.approx(plain)
    assert within_groups(X, y, g, classes, fit_semcat_fixed, adapt="group")["pooled"]["accuracy"] >= 0.95


def test_adapt_batch_maps_statistics_and_reference_round_trips() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(2.0, 3.0, (200, 5)).astype(np.float32)
    train[100:] += 8.0  # class b far from class a
    y = np.array(["a"] * 100 + ["b"] * 100)
    ref = reference_stats(train, y, ["a", "b"])
    batch = rng.normal(-1.0, 0.5, (50, 5)).astype(np.float32)
    out = adapt_batch(batch, ref, "group")
    assert np.allclose(out.mean(0), ref.mean, atol=1e-4) and np.allclose(out.std(0), ref.std, rtol=1e-3)
    scaled = adapt_batch(batch, ref, "scale")  # spread around the training mean, which is kept
    assert np.allclose(np.sqrt(((scaled - ref.mean) ** 2).mean(0)), ref.std, rtol=1e-3)
    assert np.array_equal(adapt_batch(batch[:1], ref, "group"), batch[:1])  # no spread in one image
    back = load_reference(reference_tensors(ref))
    assert back is not None and np.array_equal(back.class_means, ref.class_means) and back.class_means.shape == (2, 5)
    assert load_reference({}) is None
    # classwise: a folder of class "b" only, shifted; the shift is measured against b's training mean
    nearest = lambda Z: -((Z[:, None, :] - ref.class_means[None]) ** 2).sum(-1)
    only_b = train[y == "b"][:20] + np.float32(0.4)
    moved = adapt_batch(only_b, ref, "classwise", nearest)
    assert np.allclose(moved.mean(0), ref.class_means[1], atol=1e-4)
    assert not np.allclose(adapt_batch(only_b, ref, "group").mean(0), ref.class_means[1], atol=0.3)
    with pytest.raises(ValueError, match="adapt mode must be one of"):
        adapt_batch(batch, ref, "median")
    with pytest.raises(ValueError, match="needs the head's predict"):
        adapt_batch(batch, ref, "balanced")


def test_scale_shrinkage_interpolates_between_full_and_one_scale() -> None:
    rng = np.random.default_rng(3)
    X = (rng.normal(0, 1, (60, 4)) * np.array([0.1, 1.0, 3.0, 10.0])).astype(np.float32)
    y = np.array(["a", "b", "c"] * 20)
    var = X.astype(np.float64).var(0)
    full = SoftmaxHead(scale_shrinkage=0.0).fit(X, y)
    one = SoftmaxHead(scale_shrinkage=1.0).fit(X, y)
    half = SoftmaxHead(scale_shrinkage=SCALE_SHRINKAGE).fit(X, y)
    assert SoftmaxHead().fit(X, y).scale_ == pytest.approx(full.scale_)  # the detectors' heads: as measured
    assert np.allclose(full.scale_, np.sqrt(var), rtol=1e-5)
    assert np.allclose(one.scale_, np.sqrt(np.median(var)), rtol=1e-5)
    assert np.allclose(half.scale_, np.sqrt(0.5 * var + 0.5 * np.median(var)), rtol=1e-5)
    assert half.get_params()["scale_shrinkage"] == 0.5
    wild = X.copy()
    wild[:, 3] *= 1e4  # one feature of huge variance does not shrink the others to nothing (median target)
    assert np.allclose(SoftmaxHead(scale_shrinkage=SCALE_SHRINKAGE).fit(wild, y).scale_[:3], half.scale_[:3], rtol=1e-5)
    with pytest.raises(ValueError, match="'scale_shrinkage' parameter"):
        SoftmaxHead(scale_shrinkage=1.5).fit(X, y)


@pytest.mark.slow
def test_classify_adapt_runs_per_folder_from_the_cli(tmp_path: Path) -> None:
    from semcat.model import load_model

    data = tmp_path / "inst"
    write_instrument_set(data, instruments=2, per_class=3, size=96, seed=5, categories=["Particles", "Nanowires"])
    model = tmp_path / "m.semcat"
    result = runner.invoke(app, ["train", str(data), "--out", str(model)])
    assert result.exit_code == 0, result.output
    loaded = load_model(model)
    ref = loaded.adapt_reference()
    assert ref.class_means.shape == (2, loaded.head.n_features_in_)
    assert loaded.head.scale_shrinkage == 0.5
    (data / "broken.png").write_bytes(b"not an image")
    result = runner.invoke(app, ["classify", str(model), str(data), "--adapt", "group", "--format", "csv"])
    assert result.exit_code == 1 and "broken.png" in result.stderr  # a bad file is named; the batch goes on
    rows = [r for r in result.stdout.splitlines()[1:] if r]
    assert len(rows) == 2 * 2 * 3 + 1
    # each folder is one batch: its predictions differ from the unadapted ones
    plain = runner.invoke(app, ["classify", str(model), str(data), "--format", "csv"])
    assert sorted(rows) != sorted(r for r in plain.stdout.splitlines()[1:] if r)
    loaded.extra_tensors = {}  # a model trained before the statistics were stored
    loaded.save(tmp_path / "old.semcat")
    result = runner.invoke(app, ["classify", str(tmp_path / "old.semcat"), str(data), "--adapt", "balanced"])
    assert result.exit_code == 1 and "retrain it with `semcat train`" in result.stderr
    result = runner.invoke(app, ["classify", str(model), str(data), "--adapt", "group", "--engine", "spark",
                                 "--out", str(tmp_path / "pq")])
    assert result.exit_code == 2 and "local engine only" in result.stderr
