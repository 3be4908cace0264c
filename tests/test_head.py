"""SoftmaxHead: learns, predicts, validates, and is deterministic (real torch training, small data)."""
from __future__ import annotations

import numpy as np
import pytest

from semcat.errors import NotFittedError
from semcat.head import SoftmaxHead
from semcat.ood import UnknownDetector


def blobs(n_per_class: int = 40, d: int = 16, k: int = 3, spread: float = 1.0, seed: int = 0):
    """Gaussian clusters around random centres: a small problem with a known answer."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    y = np.repeat(np.arange(k), n_per_class)
    X = centres[y] + rng.normal(scale=spread, size=(len(y), d))
    names = np.array([f"class_{i}" for i in range(k)])
    return X.astype(np.float32), names[y]


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_fit_learns_separable_clusters(solver: str) -> None:
    X, y = blobs(seed=1)
    Xt, yt = blobs(seed=1, n_per_class=20)  # same centres (same seed), new noise below
    rng = np.random.default_rng(9)
    Xt = Xt + rng.normal(scale=0.3, size=Xt.shape).astype(np.float32)
    head = SoftmaxHead(solver=solver).fit(X, y)
    assert list(head.classes_) == ["class_0", "class_1", "class_2"]
    assert head.coef_.shape == (3, 16) and head.intercept_.shape == (3,)
    assert head.n_features_in_ == 16 and head.mean_.shape == (16,) and head.n_iter_ >= 1
    proba = head.predict_proba(Xt)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (head.predict(Xt) == yt).mean() >= 0.95
    np.testing.assert_array_equal(np.argmax(head.decision_function(Xt), axis=1), np.argmax(proba, axis=1))


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_same_seed_same_weights(solver: str) -> None:
    X, y = blobs(spread=3.0)
    a = SoftmaxHead(solver=solver, seed=3, epochs=5).fit(X, y)
    b = SoftmaxHead(solver=solver, seed=3, epochs=5).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_adam_seed_changes_minibatch_order() -> None:
    X, y = blobs(spread=3.0)
    a = SoftmaxHead(solver="adam", seed=1, epochs=3, batch_size=16).fit(X, y)
    b = SoftmaxHead(solver="adam", seed=2, epochs=3, batch_size=16).fit(X, y)
    assert not np.array_equal(a.coef_, b.coef_)


def test_classes_parameter_fixes_column_order() -> None:
    X, y = blobs()
    order = ["class_2", "class_0", "class_1"]
    head = SoftmaxHead(classes=order).fit(X, y)
    assert list(head.classes_) == order
    proba = head.predict_proba(X)
    assert (np.array(order)[proba.argmax(axis=1)] == y).mean() >= 0.95


def test_early_stopping_keeps_best_validation_loss() -> None:
    X, y = blobs(spread=2.0)
    Xv, yv = blobs(spread=2.0, n_per_class=15)
    yv = np.random.default_rng(5).permutation(yv)  # validation labels unrelated: loss rises at once
    head = SoftmaxHead(solver="adam", epochs=200, patience=3, weight_decay=0.0).fit(X, y, Xv, yv)
    assert head.val_loss_ is not None and head.n_iter_ < 200
    from scipy.special import log_softmax

    lp = log_softmax(head.decision_function(Xv).astype(np.float64), axis=1)
    idx = np.searchsorted(head.classes_, yv)
    assert -lp[np.arange(len(yv)), idx].mean() == pytest.approx(head.val_loss_, rel=1e-3)


def test_balanced_class_weight_raises_minority_recall() -> None:
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0.0, 1.0, (380, 4)), rng.normal(1.0, 1.0, (20, 4))].astype(np.float32)
    y = np.r_[np.zeros(380, int), np.ones(20, int)]
    plain = SoftmaxHead().fit(X, y)
    balanced = SoftmaxHead(class_weight="balanced").fit(X, y)
    minority = y == 1
    assert (balanced.predict(X[minority]) == 1).mean() > (plain.predict(X[minority]) == 1).mean()


def test_not_fitted_error_says_to_fit() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        SoftmaxHead().predict(np.zeros((1, 4)))
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_input_errors_name_expected_got_and_fix() -> None:
    X, y = blobs()
    head = SoftmaxHead().fit(X, y)
    with pytest.raises(ValueError, match=r"8 wide.*trained on 16-wide.*semcat features"):
        head.predict(np.zeros((2, 8)))
    with pytest.raises(ValueError, match=r"reshape\(1, -1\)"):
        head.predict(np.zeros(16))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SoftmaxHead().fit(bad, y)
    with pytest.raises(ValueError, match=r"X=120, y=119"):
        SoftmaxHead().fit(X, y[:-1])
    with pytest.raises(ValueError, match="'solver' parameter.*sgd"):
        SoftmaxHead(solver="sgd").fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        SoftmaxHead().fit(X[:40], y[:40])
    with pytest.raises(ValueError, match="'nope'.*not one of the classes"):
        SoftmaxHead(classes=["class_0", "class_1", "class_2"]).fit(X, np.where(y == "class_0", "nope", y))


@pytest.mark.parametrize("make", [lambda: SoftmaxHead(epochs=20), lambda: UnknownDetector(k=2)], ids=["head", "unknown_detector"])
def test_estimator_contract_refit_and_width(make) -> None:  # type: ignore[no-untyped-def]
    """Shared estimator checks: fit returns self, refit forgets the old fit, width is enforced."""
    X, y = blobs()
    X2, y2 = blobs(d=10, k=2, seed=4)
    est = make()
    fit = (lambda A, b: est.fit(A, b)) if isinstance(est, SoftmaxHead) else (lambda A, b: est.fit(A))
    assert fit(X, y) is est
    first = {k: v for k, v in vars(est).items() if k.endswith("_")}
    fit(X2, y2)
    assert est.n_features_in_ == 10
    fit(X, y)
    for k, v in first.items():
        np.testing.assert_array_equal(np.asarray(getattr(est, k)), np.asarray(v))
    with pytest.raises(ValueError, match="10 wide"):
        (est.predict_proba if isinstance(est, SoftmaxHead) else est.score)(X2)


def test_default_head_trains_and_predicts_without_torch() -> None:
    """The default solver is scikit-learn's L-BFGS: training the head never loads torch (issue 23)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom semcat.head import SoftmaxHead\n"
            "X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32); y = np.arange(60) % 3\n"
            "h = SoftmaxHead().fit(X[:40], y[:40], X[40:], y[40:]); h.predict(X)\n"
            "assert h.val_loss_ is not None and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_lbfgs_minimises_the_heads_objective() -> None:
    """scikit-learn's C is mapped so that it minimises the head's own loss (mean cross-entropy plus
    0.5 * weight_decay * ||W||^2): the gradient of that loss vanishes at the fitted parameters,
    for several classes, for two (one logit in scikit-learn) and with balanced class weights."""
    from scipy.special import softmax

    for k, class_weight in ((3, None), (2, None), (2, "balanced")):
        X, y = blobs(spread=3.0, k=k, n_per_class=30)
        if class_weight:
            X, y = X[: 30 + 8], y[: 30 + 8]  # 30 of one class, 8 of the other
        head = SoftmaxHead(tol=1e-8, epochs=1000, class_weight=class_weight).fit(X, y)
        Z = (X - head.mean_) / head.scale_
        onehot = (y[:, None] == head.classes_[None, :]).astype(np.float64)
        w = np.ones(len(y)) if class_weight is None else (len(y) / (k * onehot.sum(axis=0)))[onehot.argmax(axis=1)]
        residual = (softmax(head.decision_function(X).astype(np.float64), axis=1) - onehot) * w[:, None] / w.sum()
        grad_W = residual.T @ Z + head.weight_decay * head.coef_
        assert np.abs(grad_W).max() < 1e-4 and np.abs(residual.sum(axis=0)).max() < 1e-4
