"""The trained part of semcat: a softmax (multinomial logistic regression) head on frozen features.

scikit-learn style: ``__init__`` stores hyperparameters, ``fit`` learns ``classes_``, ``coef_``,
``intercept_``, ``n_features_in_`` (and ``mean_``/``scale_`` when standardising) and returns self.
NumPy and scikit-learn only (no torch). Two solvers:

- ``"lbfgs"`` (default): scikit-learn's ``LogisticRegression`` (L-BFGS) on the same convex,
  L2-regularised cross-entropy, on one BLAS thread. Deterministic, no learning rate to tune. It
  replaced a hand-written L-BFGS (torch, then NumPy) that was slower than this at equal accuracy
  (``benchmarks/head.py``); scikit-learn on its default BLAS threads was slower still on a busy
  machine.
- ``"adam"``: minibatch Adam in NumPy (analytic gradients), as the paper's retraining of the last
  layer; the seed fixes the minibatch order.

With a validation set the head is evaluated after each round (one epoch for Adam, ten L-BFGS
iterations) and the parameters with the lowest validation loss are kept (early stopping).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from semcat._validation import (
    check_consistent_length,
    check_features,
    check_is_fitted,
    check_labels,
)

__all__ = ["SCALE_SHRINKAGE", "SoftmaxHead"]

SCALE_SHRINKAGE = 0.5
"""The classification head's shrinkage of per-feature scales (``semcat train``; issue 20, see ``SoftmaxHead``)."""

_SOLVERS = ("lbfgs", "adam")
_DEFAULT_EPOCHS = {"lbfgs": 300, "adam": 60}
_ADAM_LR = 1e-2
_LBFGS_ROUND = 10


class SoftmaxHead:
    """Linear softmax classifier on feature vectors.

    Parameters
    ----------
    solver : {"lbfgs", "adam"}
        Full-batch L-BFGS (default) or minibatch Adam.
    weight_decay : float
        L2 penalty ``0.5 * weight_decay * ||W||^2`` added to the mean cross-entropy.
    lr : float or None
        Adam step size (None = 1e-2); ignored by L-BFGS.
    epochs : int or None
        Adam: passes over the training set. L-BFGS: maximum iterations (each is one full pass).
        None = 300 for L-BFGS, 60 for Adam.
    batch_size : int
        Adam minibatch size (ignored by L-BFGS).
    class_weight : {None, "balanced"}
        "balanced" weights each class by ``n_samples / (n_classes * count)`` so rare classes count.
    early_stopping : bool
        With ``X_val``/``y_val``, keep the parameters of the round with the lowest validation loss.
    patience : int
        Rounds without validation improvement before stopping.
    seed : int
        Fixes the minibatch order (Adam); L-BFGS is deterministic anyway.
    standardize : bool
        Centre and scale each feature with training statistics (``mean_``, ``scale_``); ``coef_``
        then applies to standardised features.
    scale_shrinkage : float in [0, 1]
        With ``standardize``, each feature's variance is shrunk towards the median variance of all
        features: ``scale_ = sqrt((1 - s) * var + s * median(var))`` (the median, not the mean: a few
        features of huge variance would otherwise shrink every other feature to nothing). 0 (here) = full standardisation,
        1 = one scale for all features (as unstandardised features, up to the penalty). ``semcat
        train`` uses :data:`SCALE_SHRINKAGE` (0.5): it kept the leave-one-instrument-out gain of
        standardising and the within-instrument accuracy of not standardising
        (``benchmarks/cross_instrument.py``); the detectors' own heads keep 0, as measured.
    classes : sequence of labels or None
        Fix the class order (e.g. the NFFA order); None = sorted unique training labels.
    tol : float
        L-BFGS stops when no gradient component exceeds this (scikit-learn's ``tol``).
    n_threads : int or None
        BLAS threads while fitting (None = the library's default). 1 by default: a head's matrices
        are small, and on a busy machine more threads were much slower.
    """

    def __init__(
        self,
        *,
        solver: str = "lbfgs",
        weight_decay: float = 1e-3,
        lr: float | None = None,
        epochs: int | None = None,
        batch_size: int = 128,
        class_weight: str | None = None,
        early_stopping: bool = True,
        patience: int = 5,
        seed: int = 0,
        standardize: bool = True,
        scale_shrinkage: float = 0.0,
        classes: list | tuple | None = None,
        tol: float = 1e-4,
        n_threads: int | None = 1,
    ) -> None:
        self.solver = solver
        self.weight_decay = weight_decay
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.class_weight = class_weight
        self.early_stopping = early_stopping
        self.patience = patience
        self.seed = seed
        self.standardize = standardize
        self.scale_shrinkage = scale_shrinkage
        self.classes = classes
        self.tol = tol
        self.n_threads = n_threads

    # -- parameters ---------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-safe dict (saved in the model artifact)."""
        params = {k: getattr(self, k) for k in _PARAM_NAMES}
        if params["classes"] is not None:
            params["classes"] = [str(c) for c in params["classes"]]
        return params

    def set_params(self, **params: Any) -> SoftmaxHead:
        """Change hyperparameters (unknown names are refused); returns self."""
        for k, v in params.items():
            if k not in _PARAM_NAMES:
                raise ValueError(f"SoftmaxHead has no parameter {k!r}; valid: {', '.join(_PARAM_NAMES)}.")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        if self.solver not in _SOLVERS:
            raise ValueError(f"The 'solver' parameter of SoftmaxHead must be one of {_SOLVERS}. Got {self.solver!r} instead.")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"The 'class_weight' parameter of SoftmaxHead must be None or 'balanced'. Got {self.class_weight!r} instead.")
        if not 0.0 <= self.scale_shrinkage <= 1.0:
            raise ValueError(f"The 'scale_shrinkage' parameter of SoftmaxHead must be in [0, 1]. Got {self.scale_shrinkage!r} instead.")
        if not self.weight_decay >= 0:
            raise ValueError(f"The 'weight_decay' parameter of SoftmaxHead must be >= 0. Got {self.weight_decay!r} instead.")
        if self.epochs is not None and int(self.epochs) < 1:
            raise ValueError(f"The 'epochs' parameter of SoftmaxHead must be >= 1. Got {self.epochs!r} instead.")
        if int(self.batch_size) < 1:
            raise ValueError(f"The 'batch_size' parameter of SoftmaxHead must be >= 1. Got {self.batch_size!r} instead.")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"The 'lr' parameter of SoftmaxHead must be > 0. Got {self.lr!r} instead.")

    # -- training -----------------------------------------------------------------------------
    def fit(self, X: object, y: object, X_val: object | None = None, y_val: object | None = None) -> SoftmaxHead:
        """Learn the head from features ``X`` (n, d) and labels ``y`` (n,); forgets earlier fits."""
        self._check_params()
        X = check_features(X, name="X", min_samples=2)
        y = check_labels(y, name="y")
        check_consistent_length(X=X, y=y)
        classes = np.asarray(self.classes) if self.classes is not None else np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"training needs at least 2 classes; got {len(classes)} ({list(classes)}). Add images of other classes.")
        yi = _encode(y, classes, "y")
        has_val = X_val is not None and y_val is not None
        if has_val:
            X_val = check_features(X_val, name="X_val", n_features=X.shape[1])
            y_val = check_labels(y_val, name="y_val")
            check_consistent_length(X_val=X_val, y_val=y_val)
            yv = _encode(y_val, classes, "y_val")

        for attr in ("coef_", "intercept_", "mean_", "scale_", "n_iter_", "val_loss_"):
            self.__dict__.pop(attr, None)
        if self.standardize:
            mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            var = X.var(axis=0, dtype=np.float64)
            shrink = float(self.scale_shrinkage)
            scale = np.sqrt((1.0 - shrink) * var + shrink * np.median(var)).astype(np.float32)
            scale[scale < 1e-8] = 1.0
        else:
            mean = np.zeros(X.shape[1], np.float32)
            scale = np.ones(X.shape[1], np.float32)

        k, d = len(classes), X.shape[1]
        weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(yi, minlength=k)
            weight = np.where(counts > 0, len(yi) / (k * np.maximum(counts, 1)), 0.0)
        val = ((X_val - mean) / scale, yv) if has_val and self.early_stopping else None
        epochs = int(self.epochs or _DEFAULT_EPOCHS[self.solver])
        fit = _fit_lbfgs if self.solver == "lbfgs" else _fit_adam
        with threadpool_limits(limits=int(self.n_threads) if self.n_threads else None):
            W, b, n_iter, val_loss = fit(self, (X - mean) / scale, yi, k, weight, val, epochs)

        self.classes_ = classes
        self.n_features_in_ = d
        self.coef_ = W.astype(np.float32)
        self.intercept_ = b.astype(np.float32)
        if self.standardize:
            self.mean_, self.scale_ = mean, scale
        self.n_iter_ = n_iter
        self.val_loss_ = val_loss
        return self

    def _loss_grad(self, W: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None) -> tuple[float, np.ndarray, np.ndarray]:
        """(Weighted) mean cross-entropy + L2 penalty, and its gradient with respect to W and b."""
        loss, dz = _cross_entropy(X @ W.T + b, y, weight)
        gW = dz.T @ X
        if self.weight_decay:
            loss += 0.5 * float(self.weight_decay) * float((W * W).sum())
            gW += float(self.weight_decay) * W
        return loss, gW, dz.sum(axis=0)

    # -- prediction ---------------------------------------------------------------------------
    def decision_function(self, X: object) -> np.ndarray:
        """Logits, shape (n_samples, n_classes), float32."""
        check_is_fitted(self)
        X = check_features(X, n_features=self.n_features_in_)
        if self.standardize:
            X = (X - self.mean_) / self.scale_
        return (X @ self.coef_.T + self.intercept_).astype(np.float32, copy=False)

    def predict_proba(self, X: object) -> np.ndarray:
        """Softmax probabilities, shape (n_samples, n_classes); rows sum to 1."""
        return softmax(self.decision_function(X))

    def predict(self, X: object) -> np.ndarray:
        """The most probable class label of each row."""
        logits = self.decision_function(X)
        return self.classes_[np.argmax(logits, axis=1)]


_PARAM_NAMES = (
    "solver", "weight_decay", "lr", "epochs", "batch_size", "class_weight", "early_stopping",
    "patience", "seed", "standardize", "scale_shrinkage", "classes", "tol", "n_threads",
)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable row-wise softmax in float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z, dtype=np.float32)
    return e / e.sum(axis=1, keepdims=True)


def _encode(y: np.ndarray, classes: np.ndarray, name: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes.tolist())}
    try:
        return np.fromiter((index[v] for v in y.tolist()), dtype=np.int64, count=len(y))
    except KeyError as exc:
        raise ValueError(
            f"{name} contains the label {exc.args[0]!r}, which is not one of the classes "
            f"{list(index)}; fix the label or add it to `classes`."
        ) from None


def _cross_entropy(logits: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> tuple[float, np.ndarray]:
    """torch's ``cross_entropy`` (weighted mean over samples) and its gradient for the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    w = np.ones(len(y), np.float32) if weight is None else weight[y]
    total = float(w.sum())
    loss = float(-(w * log_p[rows, y]).sum() / total)
    dz = np.exp(log_p)
    dz[rows, y] -= 1.0
    dz *= (w / total)[:, None]
    return loss, dz.astype(np.float32, copy=False)


class _Best:
    """Keeps the parameters of the round with the lowest validation loss (early stopping)."""

    def __init__(self, head: SoftmaxHead, val: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.head, self.val = head, val
        self.loss = float("inf")
        self.state: tuple[np.ndarray, np.ndarray] | None = None
        self.bad_rounds = 0

    def update(self, W: np.ndarray, b: np.ndarray) -> bool:
        """Record this round; True when patience is exhausted."""
        if self.val is None:
            return False
        loss, _ = _cross_entropy(self.val[0] @ W.T + b, self.val[1], None)
        if loss < self.loss - 1e-6:
            self.loss, self.state, self.bad_rounds = loss, (W.copy(), b.copy()), 0
        else:
            self.bad_rounds += 1
        return self.bad_rounds >= self.head.patience

    def restore(self, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
        """The best round's parameters (these when there was no validation set) and its loss."""
        if self.state is None:
            return W, b, None if self.val is None else self.loss
        return self.state[0], self.state[1], self.loss


_ABSENT_LOGIT_GAP = 20.0
"""A class of ``classes`` without training images gets a zero weight row and an intercept this far
below the lowest other one (probability ~1e-9 of a present class): its optimum is -inf."""


def _fit_lbfgs(head, X, y, k, weight, val, epochs):  # type: ignore[no-untyped-def]
    """scikit-learn's L-BFGS on the head's objective: mean (class-weighted) cross-entropy plus
    ``0.5 * weight_decay * ||W||^2``, the intercept unpenalised.

    scikit-learn minimises the mean loss plus ``||w||^2 / (2 C n)`` (n = the summed sample weights,
    which "balanced" keeps at n), so ``C = 1 / (weight_decay * n)``. With two classes it fits one
    logit ``w = W1 - W0``, whose penalty is half the softmax's (``||W0||^2 + ||W1||^2 = ||w||^2 / 2``
    at the optimum), so C doubles and the softmax rows are ``±w / 2``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    binary = len(present) == 2
    wd = float(head.weight_decay)
    lr = LogisticRegression(C=(2.0 if binary else 1.0) / (wd * len(y)) if wd else np.inf, tol=float(head.tol),
                            warm_start=True, max_iter=epochs if val is None else min(_LBFGS_ROUND, epochs))
    sample_weight = None if weight is None else weight[y]
    best, n_iter = _Best(head, val), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        while True:
            lr.fit(X, y, sample_weight=sample_weight)
            n_iter += int(lr.n_iter_[0])
            W = np.zeros((k, X.shape[1]))
            b = np.full(k, np.nan)
            if binary:
                W[present] = np.outer([-0.5, 0.5], lr.coef_[0])
                b[present] = np.array([-0.5, 0.5]) * lr.intercept_[0]
            else:
                W[present], b[present] = lr.coef_, lr.intercept_
            b[np.isnan(b)] = np.nanmin(b) - _ABSENT_LOGIT_GAP
            converged = lr.n_iter_[0] < lr.max_iter
            if val is None or best.update(W, b) or converged or n_iter >= epochs:
                break
            lr.max_iter = min(_LBFGS_ROUND, epochs - n_iter)
    W, b, val_loss = best.restore(W, b)
    return W, b, n_iter, val_loss


def _fit_adam(head, X, y, k, weight, val, epochs):  # type: ignore[no-untyped-def]
    """Minibatch Adam (Kingma & Ba) on NumPy's analytic gradients; the seed fixes the minibatch order."""
    W, b = np.zeros((k, X.shape[1]), np.float32), np.zeros(k, np.float32)
    rng = np.random.default_rng(int(head.seed))
    n, bs, lr = X.shape[0], int(head.batch_size), float(head.lr or _ADAM_LR)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in (W, b)]
    best, n_iter, step = _Best(head, val), 0, 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            _, gW, gb = head._loss_grad(W, b, X[idx], y[idx], weight)
            step += 1
            for p, grad, (m, v) in zip((W, b), (gW, gb), moments):
                m *= beta1
                m += (1 - beta1) * grad
                v *= beta2
                v += (1 - beta2) * grad * grad
                p -= (lr / (1 - beta1 ** step)) * m / (np.sqrt(v / (1 - beta2 ** step)) + eps)
        n_iter += 1
        if best.update(W, b):
            break
    W, b, val_loss = best.restore(W, b)
    return W, b, n_iter, val_loss
