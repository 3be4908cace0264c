"""Unknown detector: constructed feature clouds (scores, threshold quantile, tensor formats) and the
issue-5 acceptance check on real Lite0 features of synthetic SEM images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load, save

from semcat.errors import NotFittedError
from semcat.ood import UnknownDetector, load_detector


def _clouds(rng: np.random.Generator, n: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.integers(0, len(centres), n)
    return (centres[idx] + rng.normal(scale=0.15, size=(n, centres.shape[1]))).astype(np.float32), idx


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 32))
    novel = rng.normal(size=(1, 32))
    (train, y), (val, _), (test, _), (nov, _) = (_clouds(rng, n, c) for n, c in
                                                 ((600, centres), (400, centres), (2000, centres), (200, novel)))
    # between two known classes: close to the data, yet no class owns it
    between = (0.5 * (centres[0] + centres[1]) + rng.normal(scale=0.15, size=(200, 32))).astype(np.float32)
    return {"train": train, "y": y, "val": val, "test": test, "novel": nov, "between": between}


@pytest.mark.parametrize("method", ["mahalanobis+maxlogit", "knn"])
def test_known_pass_and_novel_flagged(data: dict[str, np.ndarray], method: str) -> None:
    det = UnknownDetector(method=method, quantile=0.97).fit(data["train"], data["val"], y_train=data["y"])
    assert det.predict(data["test"]).mean() <= 0.05
    assert det.predict(data["novel"]).mean() >= 0.95
    # scale does not matter for the distance: features are L2-normalised first
    if method == "knn":
        np.testing.assert_allclose(det.score(data["novel"] * 7), det.score(data["novel"]), atol=1e-5)


def test_labels_catch_images_between_classes(data: dict[str, np.ndarray]) -> None:
    """With labels the detector knows the classes, so a blend of two is flagged; one class does not."""
    with_labels = UnknownDetector().fit(data["train"], data["val"], y_train=data["y"])
    one_class = UnknownDetector().fit(data["train"], data["val"])
    assert with_labels.to_dict()["scores"] == ["relative_mahalanobis", "max_logit"]
    assert one_class.to_dict()["scores"] == ["mahalanobis"]
    assert with_labels.predict(data["between"]).mean() >= 0.9
    assert with_labels.predict(data["between"]).mean() > one_class.predict(data["between"]).mean() + 0.3
    parts = with_labels.score_components(data["between"][:5])
    np.testing.assert_allclose(parts.max(axis=1), with_labels.score(data["between"][:5]), rtol=1e-6)


@pytest.mark.parametrize("labels", [True, False])
def test_out_of_fold_threshold_without_val(data: dict[str, np.ndarray], labels: bool) -> None:
    det = UnknownDetector().fit(data["train"], y_train=data["y"] if labels else None)
    assert det.predict(data["test"]).mean() <= 0.1
    assert det.predict(data["novel"]).mean() >= 0.95
    knn = UnknownDetector(method="knn", k=1).fit(data["train"])
    assert 0 < knn.threshold_ < 1 and knn.predict(data["test"]).mean() <= 0.1


def test_safetensors_round_trip_both_formats(data: dict[str, np.ndarray]) -> None:
    det = UnknownDetector(shrinkage=0.3).fit(data["train"], data["val"], y_train=data["y"])
    back = load_detector(load(save(det.to_tensors())))
    assert back is not None and back.threshold_ == det.threshold_ and back.shrinkage == 0.3
    np.testing.assert_allclose(back.score(data["test"][:50]), det.score(data["test"][:50]), rtol=1e-6)
    assert back.to_dict() == det.to_dict() and back.power == 0.5
    assert back.to_dict()["relative"] and "ood.whole_precision" in det.to_tensors()
    # version 2 (before power and relative): ood.version 2, four params, no whole_*; loads as power=1, plain
    plain = UnknownDetector(power=1.0, relative=False).fit(data["train"], data["val"], y_train=data["y"])
    v2 = plain.to_tensors() | {"ood.version": np.array([2]), "ood.params": plain.to_tensors()["ood.params"][:4]}
    back = load_detector(load(save(v2)))
    assert back is not None and back.power == 1.0 and not back.relative
    np.testing.assert_allclose(back.score(data["test"][:50]), plain.score(data["test"][:50]), rtol=1e-6)
    # the version-1 (k-NN) layout of models calibrated before the fused detector still loads
    old = UnknownDetector(method="knn", max_reference=100, seed=5).fit(data["train"], data["val"])
    assert set(old.to_tensors()) == {"ood.reference", "ood.params"} and old.reference_.shape == (100, 32)
    back = load_detector(load(save(old.to_tensors())))
    assert back is not None and back.method == "knn" and back.k == old.k
    np.testing.assert_allclose(back.score(data["test"][:50]), old.score(data["test"][:50]))
    assert back.to_dict()["method"] == "knn_cosine"
    assert load_detector({}) is None


def test_power_is_signed_and_changes_the_scores(data: dict[str, np.ndarray]) -> None:
    """The signed root keeps negative features (e.g. after a LayerNorm head) distinct from positive ones."""
    root = UnknownDetector().fit(data["train"], data["val"], y_train=data["y"])
    plain = UnknownDetector(power=1.0).fit(data["train"], data["val"], y_train=data["y"])
    assert not np.allclose(root.score(data["test"][:50]), plain.score(data["test"][:50]))
    # fitting on the signed roots with power=1 is the same detector
    roots = {k: np.sign(data[k]) * np.sqrt(np.abs(data[k])) for k in ("train", "val", "test")}
    same = UnknownDetector(power=1.0).fit(roots["train"], roots["val"], y_train=data["y"])
    np.testing.assert_allclose(same.score(roots["test"][:50]), root.score(data["test"][:50]), rtol=1e-4, atol=1e-4)


def test_relative_distance_is_class_distance_minus_whole_distance(data: dict[str, np.ndarray]) -> None:
    """Ren et al.'s relative Mahalanobis: the no-label fit (one mean, total covariance) is the background."""
    rel = UnknownDetector().fit(data["train"], data["val"], y_train=data["y"])
    plain = UnknownDetector(relative=False).fit(data["train"], data["val"], y_train=data["y"])
    whole = UnknownDetector().fit(data["train"], data["val"])  # one class: nothing to be relative to
    assert whole.to_dict()["scores"] == ["mahalanobis"] and not whole.to_dict()["relative"]
    X = np.r_[data["test"][:20], data["novel"][:20]]
    np.testing.assert_allclose(rel._raw(X)[:, 0], plain._raw(X)[:, 0] - whole._raw(X)[:, 0], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(rel._raw(X)[:, 1], plain._raw(X)[:, 1], rtol=1e-6)


def test_errors(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(NotFittedError):
        UnknownDetector().score(data["test"])
    det = UnknownDetector().fit(data["train"])
    with pytest.raises(ValueError, match="wide"):
        det.score(np.zeros((2, 16), np.float32))
    with pytest.raises(ValueError, match="quantile"):
        UnknownDetector(quantile=1.0).fit(data["train"])
    with pytest.raises(ValueError, match="power"):
        UnknownDetector(power=0.0).fit(data["train"])
    with pytest.raises(ValueError, match="method must be one of"):
        UnknownDetector(method="energy").fit(data["train"])
    with pytest.raises(ValueError, match="y_train"):
        UnknownDetector().fit(data["train"], y_train=data["y"][:10])
    with pytest.raises(ValueError, match="Re-run `semcat calibrate`"):
        load_detector({"ood.reference": np.zeros((3, 2)), "ood.params": np.zeros(2)})
    with pytest.raises(ValueError, match="format version 9.*Upgrade semcat"):
        load_detector({"ood.version": np.array([9]), "ood.params": np.zeros(4)})


PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "clock", "rocket",
          "immunohistochemistry", "hubble_deep_field", "moon")
Features = dict[str, tuple[np.ndarray, np.ndarray]]


def _leave_one_out_features(root: Path, per_class: tuple[int, int, int], *, seed: int, size: int) -> Features:
    """Real Lite0 features (and category labels) of synthetic train/val/test sets (``per_class``
    images per category in each, seeds ``seed`` to ``seed + 2``) and of ten gray scikit-image photos."""
    import skimage.data
    import tifffile

    from semcat.featurespec import FeatureSpec
    from semcat.synth import write_dataset

    for i, (split, n) in enumerate(zip(("train", "val", "test"), per_class)):
        write_dataset(root / split, per_class=n, size=size, seed=seed + i, databar=True)
    (root / "photos").mkdir()
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        gray = img if img.ndim == 2 else (img[..., :3] @ [0.299, 0.587, 0.114]).astype(np.uint8)
        tifffile.imwrite(root / "photos" / f"{name}.tif", gray)
    out = {}
    for folder in ("train", "val", "test", "photos"):
        res = FeatureSpec.resolve("efficientnet_lite0").extract(sorted((root / folder).rglob("*.tif")), store="default")
        ok, X, errors = res.paths, res.features, res.errors
        assert not errors
        out[folder] = (X, np.array([p.split("/")[-2] for p in ok]))
    return out


def _flagged_shares(data: Features, **detector: object) -> np.ndarray:
    """Each category left out of training in turn (no easy pick): rows of the flagged shares of the
    left-out category (all its images), of the photographs and of the known test images."""
    from semcat import CATEGORIES

    (Xtr, ytr), (Xv, yv), (Xte, yte), (Xph, _) = (data[s] for s in ("train", "val", "test", "photos"))
    rows = []
    for cat in CATEGORIES:
        known = ytr != cat
        det = UnknownDetector(**detector).fit(Xtr[known], Xv[yv != cat], y_train=ytr[known])  # type: ignore[arg-type]
        novel = np.concatenate([Xtr[ytr == cat], Xv[yv == cat], Xte[yte == cat]])
        rows.append([det.predict(novel).mean(), det.predict(Xph).mean(), det.predict(Xte[yte != cat]).mean()])
    return np.array(rows)


@pytest.mark.slow
def test_unknown_acceptance_on_real_features(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 5 at a facility's training size (500 images per category; the paper's set had ~1,800):
    the mean over the ten left-out categories meets all three bars."""
    data = _leave_one_out_features(tmp_path_factory.mktemp("ood500"), (500, 50, 50), seed=31, size=176)
    rates = _flagged_shares(data)
    novel_rate, photo_rate, known_rate = rates.mean(axis=0)
    print(f"mean over left-out categories: left-out {novel_rate:.3f}, photos {photo_rate:.2f}, known {known_rate:.3f}; "
          f"per category {np.round(rates[:, 0], 2).tolist()}")
    assert novel_rate >= 0.8  # measured 0.82 (benchmarks/ood.py 500 --eval-per-class 50; seeds 201-203: 0.81)
    assert photo_rate >= 0.9
    assert known_rate <= 0.05  # measured 0.038


@pytest.mark.slow
def test_unknown_detector_with_few_training_images(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With 14 training images per category the left-out share is far from issue 5's 80% (README
    "Limits"); the bar for known images still holds, and it beats the k-NN baseline. Photographs: 0.82
    on the default ``clean`` view against 0.99 on the centre crop before it (issue 20; its 5x5 median
    takes away the fine texture that sets these ten photographs apart); at 20 per category
    ``benchmarks/ood.py`` flags 97% of them, over issue 5's 90% bar."""
    data = _leave_one_out_features(tmp_path_factory.mktemp("ood14"), (14, 16, 8), seed=21, size=160)
    novel_rate, photo_rate, known_rate = _flagged_shares(data).mean(axis=0)
    base = _flagged_shares(data, method="knn").mean(axis=0)
    print(f"mean over left-out categories: left-out {novel_rate:.2f} (k-NN {base[0]:.2f}), photos {photo_rate:.2f} "
          f"(k-NN {base[1]:.2f}), known {known_rate:.3f} (k-NN {base[2]:.3f})")
    assert known_rate <= 0.05
    assert photo_rate >= 0.8
    # measured: 0.52 at 4.2% of known images flagged, k-NN 0.30; benchmarks/ood.py: 47% vs 24% at 20 per category
    assert novel_rate >= max(0.4, base[0])


@pytest.mark.parametrize("n", [40, 200])
def test_shrunk_precision_matches_the_eigendecomposition(n: int) -> None:
    """Fewer images than dimensions takes the Woodbury path; it must give the same matrix."""
    from semcat.ood import _shrunk_precision

    rng = np.random.default_rng(n)
    centred = rng.normal(size=(n, 96)) * rng.uniform(0.1, 3.0, 96)
    centred -= centred.mean(axis=0)
    cov = centred.T @ centred / n
    base = np.trace(cov) / 96
    vals, vecs = np.linalg.eigh(0.5 * cov + 0.5 * base * np.eye(96))
    expected = (vecs / vals) @ vecs.T
    np.testing.assert_allclose(_shrunk_precision(centred, 0.5), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
