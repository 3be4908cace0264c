"""Cross-fitting for small labelled sets (issue 17): folds, intervals, guarantee, out-of-fold calibration.

Features here are Gaussian blobs, 64 wide (the model's backbone spec is narrowed to match), so the
tests run in seconds without images; the CLI tests at the end run the real commands on the shared
small synthetic set.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from semcat.featurespec import FeatureSpec
from semcat.calibration import (
    NEVER,
    auto_threshold,
    calibrate_crossfit,
    calibrate_model,
    clopper_pearson,
    labels_needed,
    score_cases,
)
from semcat.crossfit import fold_groups, fold_ids, select_weight_decay, series_groups


def test_folds_are_stratified_and_keep_groups_together() -> None:
    y = np.repeat(["a", "b", "c"], 20)
    groups = [f"{label}{i // 4}" for label, i in zip(y, np.tile(np.arange(20), 3))]  # 5 samples of 4 shots
    folds, warnings = fold_ids(y, groups, k=5, seed=1)
    assert warnings == [] and sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for g in set(groups):
        assert len({int(f) for f, gg in zip(folds, groups) if gg == g}) == 1, g
    for f in range(5):
        assert sorted(set(y[folds == f].tolist())) == ["a", "b", "c"]  # every fold holds every class
    plain, _ = fold_ids(y, k=5, seed=1)
    assert np.bincount(plain).tolist() == [12] * 5


def test_small_classes_lower_the_folds_or_are_named() -> None:
    y = np.array(["a"] * 10 + ["b"] * 3)
    folds, warnings = fold_ids(y, k=5)
    assert folds.max() == 2 and len(warnings) == 1 and "'b' has only 3" in warnings[0]
    with pytest.raises(ValueError, match=r"class 'b' has only 1 .*add labelled images"):
        fold_ids(np.array(["a"] * 10 + ["b"]), k=5)
    y3 = np.array(["a"] * 20 + ["b"] * 6)  # 'b' has 3 samples: held out in 3 of 5 folds, never all at once
    folds, warnings = fold_ids(y3, [f"a{i // 2}" for i in range(20)] + ["b0", "b0", "b1", "b1", "b2", "b2"], k=5)
    assert folds.max() == 4 and warnings == [] and len(set(folds[y3 == "b"].tolist())) == 3
    folds, warnings = fold_ids(np.repeat(["a", "b", "c"], [3, 8, 8]), ["a1", "a1", "a2"] + [f"s{i}" for i in range(16)])
    assert folds.max() == 2 and "'a' has only 3 labelled images" in warnings[0]  # scikit-learn: k images per class
    with pytest.raises(ValueError, match=r"class 'b' has only 1 of its sample groups.*--group-by"):
        fold_ids(np.array(["a"] * 6 + ["b"] * 4), ["a1", "a2", "a3", "a4", "a5", "a6", "s", "s", "s", "s"], k=5)
    # two sessions' series spanning every class (inst0_003.tif in each category folder): 2 folds, said
    y2 = np.repeat(["a", "b", "c"], 8)
    folds, warnings = fold_ids(y2, [f"inst{i % 2}" for i in range(24)], k=5)
    assert folds.max() == 1 and "only 2 sample groups in all" in warnings[0]
    assert all(len(set(folds[y2 == c].tolist())) == 2 for c in "abc")


def test_file_name_series_put_a_samples_shots_in_one_fold() -> None:
    """calibrate's default groups: the name less its shot counter; twins never straddle folds."""
    names = [f"{c}/{c}_s{i // 3}_{i:03d}.tif" for c in "ab" for i in range(15)] + ["c/IMG_0001.tif", "c/IMG_0002.tif"]
    y = [n[0] for n in names]
    groups, warnings = series_groups(names, y)
    assert groups[:3] == ["a_s0"] * 3 and groups[3] == "a_s1"
    assert groups[-2:] == [None, None] and len(warnings) == 1 and "'c'" in warnings[0] and "--group-by" in warnings[0]
    folds, _ = fold_ids(y, groups, k=5)
    for g in set(groups) - {None}:
        assert len({int(f) for f, gg in zip(folds, groups) if gg == g}) == 1, g
    assert series_groups(["x/a.tif", "x/b_7.tif", "y/c.tif", "y/d.tif"], list("xxyy")) == ([None, "b", None, None], [])


def _samples(per_class: int, shots: int, seed: int, classes: int = 5) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Shots of samples: each sample a random offset from its class centre, its shots close to it."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 1, (classes, DIM)) * 2.5 / math.sqrt(DIM) * 8
    cls = np.repeat(np.arange(classes), per_class)
    X = np.repeat(centres[cls] + rng.normal(0, 1.0, (len(cls), DIM)), shots, axis=0)
    X += rng.normal(0, 0.5, X.shape)
    names = [f"u_s{seed}x{i // shots}_{i % shots:03d}.tif" for i in range(len(X))]
    return np.abs(X).astype(np.float32), np.repeat([f"c{c}" for c in cls], shots), names


def test_out_of_fold_unknown_threshold_holds_for_new_samples() -> None:
    """~3% of a new sample's images flagged when folds keep series together (threshold and kept
    statistics from references of one size); random folds score each shot against its twins, so the
    threshold is far too low for a new sample (benchmarks/results/unknown_threshold.md on real features)."""
    from semcat.ood import UnknownDetector

    X, y, names = _samples(16, 4, seed=9)
    X_new, _, _ = _samples(100, 2, seed=109)  # 200 new samples of the same classes
    groups, _ = series_groups(names, y)
    folds, _ = fold_ids(y, groups)
    det = UnknownDetector().fit(X, y_train=y, folds=folds)
    assert det.n_reference_ == len(X) - np.bincount(folds).min()  # the largest fold fit's statistics
    assert 0.01 <= det.predict(X_new).mean() <= 0.08
    random = UnknownDetector().fit(X, y_train=y, folds=fold_ids(y)[0])
    assert random.predict(X_new).mean() >= 0.15


def test_clopper_pearson_by_hand() -> None:
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert clopper_pearson(20, 20)[0] == pytest.approx(0.025 ** (1 / 20))  # 20/20 only proves >= 83%
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(1 - hi) and 0.18 < lo < 0.19  # symmetric; textbook 0.187
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_guarantee_uses_the_lower_end_of_the_interval() -> None:
    # 100 images, best first: the top 80 all correct, then 20 with half wrong
    top = np.linspace(1.0, 0.01, 100)
    correct = np.r_[np.ones(80, bool), np.tile([True, False], 10)]
    point = auto_threshold(top, correct, 0.95, 20)
    assert point == pytest.approx(top[88])  # 85/89 = 0.955 is the last count >= 0.95 (85/90 = 0.944)
    sure = auto_threshold(top, correct, 0.95, 20, guarantee=True)
    # the lower end first clears 0.95 at 72 perfect images and stays there up to 80
    k = np.arange(1, 101)
    hits = np.cumsum(correct)
    lo = clopper_pearson(hits, k)[0]
    assert lo[70] < 0.95 <= lo[71] and sure == pytest.approx(top[int(np.flatnonzero(lo >= 0.95).max())])
    assert point < sure < 1.0
    assert auto_threshold(top[:30], correct[:30], 0.95, 20, guarantee=True) == NEVER  # 30/30 proves only 88.4%


def test_labels_needed_says_how_many_more_would_do() -> None:
    top, correct = np.linspace(1.0, 0.5, 30), np.ones(30, bool)
    # perfect images: the interval's lower end reaches 0.95 from 72 of them (0.025 ** (1/72) > 0.95)
    assert math.ceil(math.log(0.025) / math.log(0.95)) == 72
    assert 72 <= labels_needed(top, correct, 0.95, 20, guarantee=True) <= 80  # grid of 10% steps
    assert labels_needed(top[:10], correct[:10], 0.95, 20) == 20  # point estimate: min_support images
    assert labels_needed(top, np.tile([True, False], 15), 0.95, 20) is None  # 50%: labels alone won't help


DIM = 64


def _blobs(per_class: int, seed: int, *, classes: int = 5, dim: int = DIM, spread: float = 2.5):
    """Gaussian classes in the backbone's feature width; ``spread`` sets how much they overlap."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 1, (classes, dim)) * spread / math.sqrt(dim) * 8
    y = np.repeat([f"c{i}" for i in range(classes)], per_class)
    X = centres[np.repeat(np.arange(classes), per_class)] + rng.normal(0, 1, (classes * per_class, dim))
    return np.abs(X).astype(np.float32), y  # post-ReLU-like, non-negative features


def _model(X: np.ndarray, y: np.ndarray, **head):
    from dataclasses import replace

    from semcat.backbones import get_backbone
    from semcat.head import SoftmaxHead
    from semcat.model import SemcatModel

    classes = sorted(set(y.tolist()))
    spec = replace(get_backbone("efficientnet_lite0"), feature_dim=X.shape[1])  # the blobs' width
    return SemcatModel(FeatureSpec.resolve(spec), SoftmaxHead(classes=classes, **head).fit(X, y))


def test_crossfit_uses_every_image_where_a_val_split_cannot() -> None:
    """The issue's complaint in miniature: 20 images per class, ~2 in val each. Cross-fitting calibrates
    on all 100 and finds t_auto with its interval; the val split's 10 images cannot (t_auto never)."""
    X, y = _blobs(20, seed=1)
    X_new, y_new = _blobs(200, seed=2)
    val = np.arange(len(y)) % 10 == 0
    model = _model(X[~val], y[~val])
    cal_val = calibrate_model(model, X[val], y[val].tolist(), X[~val], y_train=y[~val].tolist())
    assert cal_val["t_auto"] == NEVER and cal_val["heldout"]["n"] == 10

    model = _model(X, y)
    cal, warnings = calibrate_crossfit(model, X, y.tolist(), folds=5)
    assert warnings == [] and cal["heldout"]["n"] == 100 and cal["heldout"]["folds"] == 5
    assert cal["t_auto"] < 1.0 and cal["labels_needed"] is None
    auto = cal["bands"]["auto"]
    lo, hi = auto["precision_interval"]
    assert lo <= auto["precision"] <= hi and auto["count"] >= 20
    # the unknown threshold was set out of fold: ~3% of the labelled images above it, counted and with its interval
    assert cal["ood"]["heldout_flagged"] == pytest.approx(3, abs=2)
    assert cal["ood"]["flagged_interval"][0] <= cal["heldout"]["unknown_share"] <= cal["ood"]["flagged_interval"][1]
    # on new images of the known classes it flags at most a few percent, not the 8-12% of a 15-image quantile
    flagged = float((model.ood_scores(X_new) > cal["ood"]["threshold"]).mean())
    assert flagged <= 0.06, flagged
    index = {c: i for i, c in enumerate(model.classes)}
    top, case = score_cases(model.predict_features(X_new).astype(np.float64), np.array([index[c] for c in y_new]))
    in_auto = top >= cal["t_auto"]
    assert in_auto.mean() > 0.5 and (case[in_auto] == 0).mean() >= 0.94


def test_guarantee_moves_t_auto_up_and_says_what_is_missing() -> None:
    from semcat.reports import threshold_summary

    X, y = _blobs(20, seed=3, spread=1.6)
    model = _model(X, y)
    point, _ = calibrate_crossfit(model, X, y.tolist())
    sure, _ = calibrate_crossfit(model, X, y.tolist(), guarantee=True)
    assert sure["guarantee"] and sure["t_auto"] >= point["t_auto"]
    if sure["t_auto"] <= 1.0:
        assert sure["bands"]["auto"]["precision_interval"][0] >= 0.95
    else:
        lines = threshold_summary(sure)
        assert any(line.startswith("the data cannot support the target") for line in lines), lines
    lines = threshold_summary(point)
    assert lines[0].startswith("t_auto ") and "[" in lines[0] and " images" in lines[0]
    assert any(line.startswith("unknown threshold") and "known held-out images" in line for line in lines)


def test_weight_decay_is_chosen_by_out_of_fold_log_loss() -> None:
    from semcat.head import SoftmaxHead

    X, y = _blobs(12, seed=4, classes=3, dim=256)
    folds, _ = fold_ids(y, k=4)
    classes = sorted(set(y.tolist()))
    wd, logits, losses = select_weight_decay(X, y, folds, classes, lambda wd: SoftmaxHead(classes=classes, weight_decay=wd),
                                             grid=(1e-4, 1.0))
    assert set(losses) == {1e-4, 1.0} and losses[wd] == min(losses.values()) and logits.shape == (36, 3)
    assert losses[1e-4] != losses[1.0]


def test_augmented_copies_stay_in_their_images_fold() -> None:
    """With ``extra`` copies each fold trains on its own images' copies only: copies of the
    held-out images (here exact ones, of random labels) would let every fold score perfectly."""
    from semcat.head import SoftmaxHead

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 32)).astype(np.float32)
    y = np.array(["a", "b", "c"] * 20)[rng.permutation(60)]  # labels unrelated to the features
    folds, _ = fold_ids(y, k=5)
    classes = ["a", "b", "c"]

    def head(wd: float) -> SoftmaxHead:
        return SoftmaxHead(classes=classes, weight_decay=wd)

    copies = (np.concatenate([X, X]), np.concatenate([y, y]), np.tile(np.arange(60), 2))
    _, with_copies, _ = select_weight_decay(X, y, folds, classes, head, grid=(1e-4,), extra=copies)
    _, alone, _ = select_weight_decay(X, y, folds, classes, head, grid=(1e-4,))
    hits = (np.array(classes)[with_copies.argmax(1)] == y).mean()
    assert hits < 0.6 and not np.allclose(with_copies, alone)  # chance, not memory; yet the copies were used
    # a wrong source row (image 0) for every copy: 4 folds of 5 train on their held-out images' copies
    leaked = (np.concatenate([X, X]), np.concatenate([y, y]), np.zeros(120, np.int64))
    _, memorised, _ = select_weight_decay(X, y, folds, classes, head, grid=(1e-4,), extra=leaked)
    assert (np.array(classes)[memorised.argmax(1)] == y).mean() > 0.8  # the test can fail


def test_train_chooses_the_penalty_on_series_folds() -> None:
    """train's inner folds keep each file-name series together, as calibrate's do (issue 17): the
    reported out-of-fold losses are those of the series folds, not of folds drawn image by image."""
    from semcat.features import FeatureResult
    from semcat.head import SCALE_SHRINKAGE, SoftmaxHead
    from semcat.training import LabelledSet, train_on_samples

    X, y, names = _samples(6, 4, seed=5, classes=3)  # 6 samples of 4 near-twin shots per class
    paths = [f"/data/{label}/{name}" for label, name in zip(y, names)]
    data = LabelledSet(paths, y.tolist(), ["train"] * len(y), sorted(set(y.tolist())), [])
    res = FeatureResult(paths, [""] * len(paths), X)
    from dataclasses import replace

    from semcat.backbones import get_backbone

    spec = FeatureSpec.resolve(replace(get_backbone("efficientnet_lite0"), feature_dim=X.shape[1]))  # the blobs' width
    _, report = train_on_samples(data, spec, features=(res, 0.0))
    cv = report["weight_decay_cv"]
    assert cv["grouping"] == "file-name series" and cv["warnings"] == []
    groups, _, _ = fold_groups(paths, y.tolist())
    folds, _ = fold_ids(y, groups)
    for g in set(groups):  # the series are the samples: all 4 shots of one in one fold
        assert len({int(f) for f, gg in zip(folds, groups) if gg == g}) == 1
    classes = data.classes

    def losses(f: np.ndarray) -> dict[str, float]:
        return {str(k): round(v, 4) for k, v in select_weight_decay(
            X, y, f, classes, lambda wd: SoftmaxHead(classes=classes, weight_decay=wd, scale_shrinkage=SCALE_SHRINKAGE))[2].items()}

    assert cv["log_loss"] == losses(folds)
    assert cv["log_loss"] != losses(fold_ids(y)[0])  # twins on both sides of a fold look easier
    given = ["one" if i % 2 else "two" for i in range(len(y))]
    assert fold_groups(paths, y.tolist(), given) == (given, [], "the given sample groups")
    assert fold_groups(["a/x.tif", "b/y.tif"], ["a", "b"])[2].startswith("image by image")


# --- CLI -------------------------------------------------------------------------------------------

GROUP_BY = "^([^_]+_[^_]+)_"


@pytest.mark.slow
def test_train_and_calibrate_cross_fit_by_default(small_dataset: Path, tmp_path: Path) -> None:
    """train fits on train+val with the penalty by CV; calibrate uses every non-test image out of fold,
    prints each threshold with interval and count; the report shows them; --split val still works."""
    from typer.testing import CliRunner

    from semcat.cli import app
    from semcat.model import load_model

    runner = CliRunner()
    path = tmp_path / "m.semcat"
    res = runner.invoke(app, ["train", str(small_dataset), "--out", str(path)])  # 12 per class: too few samples to group
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "m.semcat.report" / "report.json").read_text())
    assert report["protocol"] == "crossfit" and report["counts"]["val"] == {c: 0 for c in report["counts"]["val"]}
    assert str(report["weight_decay"]) in {str(k) for k in report["weight_decay_cv"]["log_loss"]}
    assert "chosen by" in res.stderr and "folds grouped by file-name series" in res.stderr
    res = runner.invoke(app, ["calibrate", str(path), str(small_dataset), "--guarantee"])
    assert res.exit_code == 0, res.output
    cal = load_model(path).calibration
    assert cal["heldout"]["source"].startswith("cross-fitted") and cal["heldout"]["grouped"] and cal["guarantee"]  # file-name series
    assert cal["heldout"]["n"] == sum(report["counts"]["train"].values())
    assert "t_suggest" in res.stderr and "unknown threshold" in res.stderr and "[" in res.stderr
    assert "reference: the largest fold's" in res.stderr
    html = (Path(runner.invoke(app, ["report", str(path)]).stdout.strip())).read_text()
    assert "t_suggest" in html and "95% interval" in html
    res = runner.invoke(app, ["calibrate", str(path), str(small_dataset), "--split", "val"])
    assert res.exit_code == 0 and "trained on the val split too" in res.stderr


def test_single_group_class_and_empty_test_split_are_errors(small_dataset_copy: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from semcat.cli import app

    runner = CliRunner()
    for p in (small_dataset_copy / "Tips").glob("*.tif"):  # every Tips image becomes one sample
        p.rename(p.with_name("x_onesample_" + p.name.rsplit("_", 1)[1]))
    for cmd in (["train", str(small_dataset_copy), "--out", str(tmp_path / "m.semcat")],
                ["compare", str(small_dataset_copy), "--runs", "1"]):
        res = runner.invoke(app, [*cmd, "--group-by", GROUP_BY])
        assert res.exit_code == 1, res.output
        assert "class 'Tips'" in res.stderr and "x_onesample" in res.stderr and "without --group-by" in res.stderr


def test_train_with_an_empty_test_split_exits_non_zero(tmp_path: Path) -> None:
    """--group-by with two samples per class, none of them hashed to test: never a silent exit 0."""
    from typer.testing import CliRunner

    from semcat.cli import app
    from semcat.dataset import scan_dataset
    from semcat.synth import write_dataset

    for seed in range(5, 100):  # a group's split key comes from its files' content: draw until none is test
        data = tmp_path / f"data{seed}"
        write_dataset(data, per_class=4, size=96, seed=seed, categories=("Fibres", "Tips"))
        for n, folder in enumerate(sorted(data.iterdir())):
            for i, p in enumerate(sorted(folder.glob("*.tif"))):
                p.rename(p.with_name(f"u_s{2 * n + i % 2}_{i:03d}.tif"))
        if all(s.split != "test" for s in scan_dataset(data, group_by=GROUP_BY).samples):
            break
    res = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "m.semcat"), "--group-by", GROUP_BY,
                                   "--folds", "2"])
    assert res.exit_code == 1, res.output
    assert "test split is empty" in res.stderr and "untested" in res.stderr
    res = CliRunner().invoke(app, ["compare", str(data), "--runs", "1", "--group-by", GROUP_BY])
    assert res.exit_code == 1 and "no test images" in res.stderr and "±" not in res.stdout


def test_version_1_model_files_still_load_and_report(tmp_path: Path) -> None:
    """Format 2 adds calibration fields; a version-1 file (without them) loads, decides and reports."""
    from semcat.model import FORMAT_VERSION, load_model
    from semcat.reports import render_report, threshold_summary

    from semcat.ood import UnknownDetector

    X, y = _blobs(10, seed=6, classes=3, dim=1280)  # loading checks the real backbone width
    model = _model(X, y)
    calibrate_crossfit(model, X, y.tolist(), detector=UnknownDetector(method="knn"))  # k-NN: no 1280² matrices
    cal = dict(model.calibration)
    for key in ("guarantee", "labels_needed"):
        cal.pop(key)
    cal["bands"] = {k: {kk: v for kk, v in b.items() if not kk.endswith("_interval")} for k, b in cal["bands"].items()}
    cal["ood"] = {k: v for k, v in cal["ood"].items() if k not in ("heldout_flagged", "flagged_interval")}
    model.calibration = cal
    meta = model._metadata()
    assert meta["format_version"] == FORMAT_VERSION == 2
    from safetensors.numpy import save

    old = tmp_path / "v1.semcat"
    old.write_bytes(save(model._tensors(), metadata={"semcat": json.dumps(meta | {"format_version": 1})}))
    loaded = load_model(old)
    assert loaded.calibration["t_auto"] == cal["t_auto"]
    assert threshold_summary(loaded.calibration)[-1].startswith("unknown threshold")
    assert "Decision bands" in render_report(loaded)
