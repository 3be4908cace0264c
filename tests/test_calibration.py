"""Calibration: decide() bands, temperature scaling, thresholds, serialisation (numpy level).

The image-level acceptance test (blends, real Lite0 features) lives in test_report.py's shared
calibrated-model fixture tests.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax

from semcat.featurespec import FeatureSpec
from semcat.calibration import (
    DEFAULT_T_AUTO,
    NEVER,
    Calibrator,
    auto_threshold,
    band_report,
    calibrate_model,
    decide,
    expected_calibration_error,
    score_cases,
)
from semcat.errors import NotFittedError

CAL = {"t_auto": 0.9, "t_suggest": 0.4, "ood": {"threshold": 0.5}}


@pytest.mark.parametrize(
    ("row", "ood", "expected"),
    [
        ({"a": 0.95, "b": 0.05}, 0.1, ("auto", ["a"])),
        ({"a": 0.6, "b": 0.3, "c": 0.1}, 0.1, ("suggest", ["a", "b"])),
        ({"a": 0.3, "b": 0.35, "c": 0.35}, 0.1, ("manual", ["b", "c", "a"])),
        ({"a": 0.99, "b": 0.01}, 0.7, ("unknown", ["a", "b"])),  # unknown beats a high score
        ({"a": 0.99, "b": 0.01}, float("nan"), ("unknown", ["a", "b"])),
        ({"a": 0.99, "b": 0.01}, None, ("auto", ["a"])),  # no score: no unknown test
    ],
)
def test_decide_bands(row: dict, ood: float | None, expected: tuple) -> None:
    assert decide(row, CAL, ood) == expected


def test_decide_accepts_pairs_and_arrays() -> None:
    assert decide([("x", 0.5), ("y", 0.45)], CAL, None) == ("suggest", ["x", "y"])
    assert decide(np.array([0.05, 0.92, 0.03]), CAL, 0.2, classes=["p", "q", "r"]) == ("auto", ["q"])
    with pytest.raises(ValueError, match="no class names"):
        decide(np.array([0.2, 0.8]), CAL, None)
    with pytest.raises(ValueError, match="expected 3 probabilities"):
        decide(np.array([0.2, 0.8]), CAL, None, classes=["a", "b", "c"])


def test_decide_uncalibrated_uses_paper_thresholds() -> None:
    assert decide({"a": DEFAULT_T_AUTO, "b": 0.2}, None, 99.0) == ("auto", ["a"])
    assert decide({"a": 0.35, "b": 0.3, "c": 0.35 - 1e-9}, None, None)[0] == "suggest"
    assert decide({"a": 0.34, "b": 0.33, "c": 0.33}, None, None)[0] == "manual"


def test_score_cases_by_hand() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]])
    top, case = score_cases(proba, np.array([0, 1, 2]))
    np.testing.assert_allclose(top, [0.7, 0.5, 0.6])
    assert case.tolist() == [0, 1, 2]


def test_auto_threshold_by_hand() -> None:
    top = np.array([0.99, 0.97, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 1, 0, 1, 0], bool)
    # bands from the top: 1, 1, 1, 1, 0.8, 0.833, 0.714 -> only the first four pass 0.9
    assert auto_threshold(top, correct, 0.9, min_support=2) == 0.9
    # a later recovery above the target does not count (running minimum)
    assert auto_threshold(top, correct, 0.8, min_support=1) == 0.7
    assert auto_threshold(top, correct, 0.9, min_support=5) == NEVER
    # ties: a cut never splits equal scores
    assert auto_threshold(np.array([0.9, 0.9, 0.5]), np.array([1, 0, 1], bool), 0.5, 1) == 0.5


def _sample(rng: np.random.Generator, n: int, k: int = 6, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true class distribution, then made over-confident by ``scale``."""
    z = rng.normal(size=(n, k)) * 1.5
    z[np.arange(n), rng.integers(0, k, n)] += rng.uniform(0, 6, n)
    p = softmax(z, axis=1)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z * scale, y


def test_temperature_recovers_overconfidence_and_lowers_ece() -> None:
    logits, y = _sample(np.random.default_rng(0), 3000)
    cal = Calibrator().fit(logits, y)
    assert cal.temperature_ == pytest.approx(3.0, rel=0.1)
    assert cal.ece_after_ < cal.ece_before_ / 2
    assert expected_calibration_error(cal.transform(logits), y) == pytest.approx(cal.ece_after_)


def _demo_like(rng: np.random.Generator, n: int, scale: float = 1.0, odd: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The demo's held-out pattern: 9 classes, calibrated logits (times ``scale``) and ``odd`` images of
    one odd sample predicted wrong at ~1.0."""
    logits, y = _sample(rng, n, k=9, scale=scale)
    logits[:odd, (y[:odd] + 1) % 9] += 15.0
    return logits, y


def test_temperature_does_not_raise_held_out_ece_at_demo_size() -> None:
    """Issue 17: the demo's temperature (fitted by log-likelihood on 326 out-of-fold images, six of
    them confidently wrong) raised the ECE from 0.04 to 0.17. On held-out sets of that size the
    temperature must never raise the ECE, and must lower it where the head is over-confident."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    nll_raised = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        (fit, y), (held, y_held) = _demo_like(rng, 326), _demo_like(rng, 360)
        cal = Calibrator().fit(fit, y)
        raw = expected_calibration_error(softmax(held, axis=1), y_held)
        assert expected_calibration_error(cal.transform(held), y_held) <= raw + 1e-12
        nll = minimize_scalar(lambda t: -log_softmax(fit / t, axis=1)[np.arange(len(y)), y].mean(),
                              bounds=(0.05, 20.0), method="bounded").x
        nll_raised += expected_calibration_error(softmax(held / nll, axis=1), y_held) > raw + 0.005
        (fit, y), (held, y_held) = _demo_like(rng, 326, scale=2.5), _demo_like(rng, 360, scale=2.5)
        cal = Calibrator().fit(fit, y)
        assert cal.temperature_ > 1.5
        assert expected_calibration_error(cal.transform(held), y_held) < expected_calibration_error(softmax(held, axis=1), y_held)
    assert nll_raised >= 2  # the failure this guards against is reproduced by the old objective


def test_thresholds_hold_on_held_out_data() -> None:
    rng = np.random.default_rng(1)
    cal = Calibrator().fit(*_sample(rng, 2000), target_precision=0.95)
    logits, y = _sample(rng, 4000)
    top, case = score_cases(cal.transform(logits), y)
    bands = band_report(top, case, cal.t_auto_, cal.t_suggest_)
    assert 0 < cal.t_suggest_ <= cal.t_auto_ <= 1
    assert bands["auto"]["count"] > 100
    assert bands["auto"]["precision"] >= 0.95 - 0.03
    assert bands["suggest"]["top2_accuracy"] >= 0.5
    shares = sum(b["share"] for b in cal.bands_.values())
    assert shares == pytest.approx(1.0)


def test_unreachable_target_means_never_auto() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(300, 5))
    y = rng.integers(0, 5, 300)  # labels unrelated to the logits: 20% precision at best
    cal = Calibrator().fit(logits, y, target_precision=0.95)
    assert cal.t_auto_ == NEVER
    assert decide({"a": 1.0, "b": 0.0}, cal.to_dict(), None)[0] != "auto"


def test_round_trip_json_and_refit_idempotent() -> None:
    logits, y = _sample(np.random.default_rng(3), 500)
    a = Calibrator(min_support=10).fit(logits, y)
    d = json.loads(json.dumps(a.to_dict()))
    b = Calibrator.from_dict(d)
    np.testing.assert_allclose(b.transform(logits), a.transform(logits))
    assert b.min_support == 10 and b.t_auto_ == a.t_auto_
    again = a.fit(logits, y).to_dict()
    assert again == d


def test_errors_name_the_problem() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        Calibrator().transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class indices 0..2"):
        Calibrator().fit(np.zeros((4, 3)), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="same number of samples"):
        Calibrator().fit(np.zeros((4, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="target_precision"):
        Calibrator().fit(np.zeros((4, 3)), np.array([0, 1, 2, 0]), target_precision=1.5)
    with pytest.raises(ValueError, match="Re-run `semcat calibrate`"):
        Calibrator.from_dict({"temperature": 1.0})


# ---------------------------------------------------------------- image level: real Lite0 features

def _labelled_blends(truth_csv) -> dict[str, str]:
    """Blend file → its majority class (the class with more than half of the image)."""
    import csv

    rows = list(csv.DictReader(open(truth_csv, encoding="utf-8")))
    return {str(truth_csv.parent / r["file"]): r["class_a"] if float(r["weight"]) < 0.5 else r["class_b"] for r in rows}


def _features_and_labels(paths_labels: dict[str, str]) -> tuple[np.ndarray, list[str]]:
    from semcat.featurespec import FeatureSpec

    res = FeatureSpec.resolve("efficientnet_lite0").extract(list(paths_labels), store="default")
    ok, X, errors = res.paths, res.features, res.errors
    assert not errors
    return X, [paths_labels[p] for p in ok]


def _pure(folder) -> dict[str, str]:
    return {str(p): p.parent.name for p in sorted(folder.rglob("*.tif"))}


@pytest.mark.slow
def test_bands_hold_on_held_out_images_with_blends(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 5 acceptance: calibrate on val (pure + blends), measure the bands on separate test images."""
    from semcat import CATEGORIES
    from semcat.head import SoftmaxHead
    from semcat.model import SemcatModel
    from semcat.synth import write_blend_set, write_dataset

    root = tmp_path_factory.mktemp("blends")
    write_dataset(root / "train", per_class=14, size=128, seed=11)
    sets = {}
    for name, seed in (("val", 12), ("test", 14)):
        write_dataset(root / name, per_class=8, size=128, seed=seed)
        sets[name] = _pure(root / name) | _labelled_blends(write_blend_set(root / f"{name}_blends", n=80, size=128,
                                                                           seed=seed + 1))
    X_train, y_train = _features_and_labels(_pure(root / "train"))
    model = SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), SoftmaxHead(classes=list(CATEGORIES)).fit(X_train, y_train))
    X_val, y_val = _features_and_labels(sets["val"])
    target = 0.9
    cal = calibrate_model(model, X_val, y_val, X_train, target_precision=target)
    X_test, y_test = _features_and_labels(sets["test"])
    index = {c: i for i, c in enumerate(model.classes)}
    top, case = score_cases(model.predict_features(X_test).astype(np.float64), np.array([index[c] for c in y_test]))
    bands = band_report(top, case, cal["t_auto"], cal["t_suggest"])
    print(json.dumps(bands, indent=1))
    assert bands["auto"]["count"] >= 10, "no automatic labels at all would make the precision check vacuous"
    assert bands["auto"]["precision"] >= target - 0.03
    assert bands["suggest"]["count"] >= 10
    assert bands["suggest"]["top2_accuracy"] >= 0.5


@pytest.mark.slow
def test_calibrate_cli(small_dataset, tmp_path) -> None:
    """`semcat calibrate`: --help, the happy path on the val split, and a clear error for a broken model."""
    from typer.testing import CliRunner

    from semcat import CATEGORIES
    from semcat.cli import app
    from semcat.dataset import scan_dataset
    from semcat.head import SoftmaxHead
    from semcat.model import SemcatModel, load_model

    runner = CliRunner()
    assert "--target-precision" in runner.invoke(app, ["calibrate", "--help"]).output
    train = {str(s.path): s.label for s in scan_dataset(small_dataset).split("train")}
    X, y = _features_and_labels(train)
    path = tmp_path / "m.semcat"
    SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), SoftmaxHead(classes=list(CATEGORIES)).fit(X, y)).save(path)
    res = runner.invoke(app, ["calibrate", str(path), str(small_dataset), "--out", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert "warning: the unknown test learned from only" in res.output  # a few images per class
    printed = json.loads(res.stdout.strip().splitlines()[-1])
    model = load_model(path)
    assert printed["t_auto"] == model.calibration["t_auto"] and "unknown_threshold" in printed
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"p_correct.png", "reliability.png", "calibration.json"}
    bad = tmp_path / "bad.semcat"
    bad.write_bytes(b"\0" * 10)
    res = runner.invoke(app, ["calibrate", str(bad), str(small_dataset)])
    assert res.exit_code == 1 and "bad.semcat" in res.output


def test_calibrate_warns_when_classes_have_few_training_images(capsys: pytest.CaptureFixture[str]) -> None:
    """The warning names the smallest class, and is silent from UNSEEN_CATEGORY_MIN_PER_CLASS images up."""
    from semcat.commands.calibrate import _warn_if_few_training_images
    from semcat.ood import UNSEEN_CATEGORY_MIN_PER_CLASS as enough

    _warn_if_few_training_images(["Tips"] * enough + ["Powder"] * enough)
    _warn_if_few_training_images([])
    assert capsys.readouterr().err == ""
    _warn_if_few_training_images(["Tips"] * enough + ["Powder"] * 12)
    err = capsys.readouterr().err
    assert "only 12 training images of 'Powder'" in err and err.count("\n") == 1
