"""Unknown detection: is an image unlike anything the model was trained on?

A softmax head always spreads probability over the classes it knows, so a photograph of a cat can
still score 0.9 for "Particles". The default detector asks two questions and flags an image when
either answer is unusual. Both read the features after a signed square root (power normalisation,
Perronnin et al., ECCV 2010), which damps the few channels that dominate a pooled CNN vector:

1. **Relative Mahalanobis distance** of the L2-normalised features: the distance to the nearest
   class mean, with one shared within-class covariance shrunk towards a multiple of the identity
   (Lee et al., NeurIPS 2018; the shrinkage keeps it stable with fewer images than feature
   dimensions), minus the distance to the mean of all training images under their total covariance
   (Ren et al., 2021). The subtraction removes what every image shares with the training set as a
   whole, which leaves the part that no known class explains: it helps most for an unseen category
   that resembles the known ones. Photographs are still flagged (97-100% of ten sample photos in the
   benchmark), by this score or by the next.
2. **Max logit** of a linear softmax head fitted on the same features (Hendrycks et al., ICML
   2022), negated. It catches images that sit between the classes, where no class is confident,
   which is where an SEM category the model never saw tends to land.

Each score is put on a common scale by its median and 90th percentile on held-out images of the
known classes, the fused score is the larger of the two, and the threshold is a high quantile of
the fused score on the held-out images, so about ``1 - quantile`` of known images are flagged.

Cross-fitted (no held-out images), the threshold comes from out-of-fold scores, and the statistics
kept for scoring are those of the largest fold fit, not of all images: both scores shrink as the
reference grows (with sample folds, a fit on all images flagged 1.5% of new known samples at 20
images per class and 1.4% at 200, the largest fold fit 2.4% and 2.2%, for an aim of 3%), so only a
reference of the folds' size makes the out-of-fold quantile hold for a new sample
(``benchmarks/results/unknown_threshold.md``).

``method="knn"`` is the earlier detector (cosine distance to the k-th nearest training feature,
Sun et al., ICML 2022); models calibrated before the change carry it and still load. On the
leave-one-category-out benchmark (``benchmarks/ood.py``) the default flags about twice as many
images of an unseen category at the same false-alarm rate; the square root and the relative distance
add a few points more with enough training images (version-2 models, fitted without either, load as
they were fitted).

The detector is stored in the model artifact as plain tensors (no pickle).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from semcat._validation import (
    check_consistent_length,
    check_features,
    check_is_fitted,
    check_labels,
)

__all__ = ["METHODS", "TENSOR_PREFIX", "UNSEEN_CATEGORY_MIN_PER_CLASS", "UnknownDetector", "load_detector"]

TENSOR_PREFIX = "ood."
"""Names of the detector's tensors in ``SemcatModel.extra_tensors`` start with this."""

METHODS = ("mahalanobis+maxlogit", "knn")
UNSEEN_CATEGORY_MIN_PER_CLASS = 500
"""Training images per class from which the default detector flagged >= 80% of a left-out synthetic
category in every benchmark draw (``benchmarks/ood.py``; about half with 20); ``calibrate`` warns below it."""
_FORMAT_VERSION = 3  # tensors of "mahalanobis+maxlogit" (3 adds power, whole_*); "knn" keeps the version-1 layout
_FITTED = ("reference_", "means_", "precision_", "whole_mean_", "whole_precision_", "logit_w_", "logit_b_",
           "norm_", "threshold_", "heldout_flagged_", "n_features_in_", "n_reference_")


def _signed_power(X: np.ndarray, power: float) -> np.ndarray:
    return X if power == 1.0 else np.sign(X) * np.abs(X) ** power


def _shrunk_precision(centred: np.ndarray, shrinkage: float) -> np.ndarray:
    """Inverse of the covariance of ``centred`` shrunk towards a multiple of the identity (float32).

    With fewer images than features (a few labels, 1280-wide features) the covariance has rank
    n < D: its eigenvectors come from the thin SVD of the (n, D) data, and the rest of the space
    has the shrinkage target's eigenvalue. Same matrix as ``eigh`` of the (D, D) covariance, at
    O(n²D) instead of O(D³) (a background retrain ran 12 such ``eigh`` per calibration).
    """
    n, d = centred.shape
    floor = 1e-3
    if n < d:
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        base = max(float((sv ** 2).sum()) / n / d, 1e-8)
        vals = np.maximum((1.0 - shrinkage) * sv ** 2 / n + shrinkage * base, floor * base)
        rest = 1.0 / max(shrinkage * base, floor * base)
        prec = (vt.T * (1.0 / vals - rest)) @ vt
        prec[np.diag_indices(d)] += rest
        return prec.astype(np.float32)
    cov = centred.T @ centred / n
    base = max(float(np.trace(cov)) / d, 1e-8)
    cov = (1.0 - shrinkage) * cov + shrinkage * base * np.eye(d)
    vals, vecs = np.linalg.eigh(cov)
    return ((vecs / np.maximum(vals, floor * base)) @ vecs.T).astype(np.float32)


def _sq_mahalanobis(Z: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(N, C) squared Mahalanobis distances of the rows of ``Z`` to each mean."""
    ZP = Z @ precision
    mP = means @ precision
    return (ZP * Z).sum(1)[:, None] - 2.0 * ZP @ means.T + (mP * means).sum(1)[None, :]


def _normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


class UnknownDetector:
    """Flags features unlike the training features; threshold set on held-out known images.

    Parameters
    ----------
    method : {"mahalanobis+maxlogit", "knn"}
        The fused two-score test (default, see the module docstring) or the k-NN cosine distance.
    quantile : float
        Share of held-out known images that must stay below the threshold (0.97 → ~3% flagged).
    shrinkage : float
        Weight of the identity in the shrunk covariance (0 = sample covariance, 1 = plain Euclidean
        distance). 0.5 keeps the distance stable with a few images per class.
    power : float
        ``mahalanobis+maxlogit`` only: features become ``sign(x) * |x| ** power`` before both scores
        (0.5 = signed square root; 1 = unchanged, as version-2 models were fitted).
    relative : bool
        ``mahalanobis+maxlogit`` with labels only: subtract the distance to the mean of all training
        images (Ren et al. 2021). False = the plain class distance (as version-2 models).
    k, max_reference, seed
        ``knn`` only: which neighbour's distance is the score, the most training features kept as
        reference (a random subsample beyond that) and that subsample's seed. ``seed`` also splits
        the folds when ``fit`` gets no held-out features.

    Attributes (after ``fit``)
    --------------------------
    threshold_ : float
        Fused scores above it are ``unknown``.
    means_, precision_, whole_mean_, whole_precision_, logit_w_, logit_b_, norm_
        ``mahalanobis+maxlogit``: class means (C, D) of the power- and L2-normalised features, the shrunk
        precision matrix (D, D), the mean (1, D) and shrunk total precision of all training features
        (relative only), the head's logits as ``X @ logit_w_.T + logit_b_`` (absent with
        one class), and the median/spread of each score on held-out images (2, n_scores).
    reference_ : ndarray of shape (R, D)
        ``knn``: L2-normalised training features.
    n_features_in_ : int
    n_reference_ : int
        ``mahalanobis+maxlogit``: training images behind the scores (cross-fitted: the largest fold fit's).
    """

    def __init__(self, *, method: str = "mahalanobis+maxlogit", quantile: float = 0.97, shrinkage: float = 0.5,
                 power: float = 0.5, relative: bool = True, k: int = 3, max_reference: int = 3000, seed: int = 0) -> None:
        self.method = method
        self.quantile = quantile
        self.shrinkage = shrinkage
        self.power = power
        self.relative = relative
        self.k = k
        self.max_reference = max_reference
        self.seed = seed

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X_train: np.ndarray, X_val: np.ndarray | None = None, *,
            y_train: Sequence[object] | np.ndarray | None = None,
            folds: np.ndarray | None = None) -> UnknownDetector:
        """Learn what known images look like from ``X_train`` (labels ``y_train``); threshold on ``X_val``.

        ``y_train`` gives the class means and the head; without it all training images are one
        class and only the distance score is used. Without ``X_val`` the threshold comes from the
        training features themselves, each scored by a detector fitted on the other folds (so a
        known image is never scored against itself): ``folds`` gives each image's fold
        (``semcat.crossfit.fold_ids``, stratified and group-aware), else 5 random folds (k-NN:
        leave-one-out), and the detector keeps the statistics of the fold fit with the most images
        (a reference of the size the threshold was measured at; see the module docstring).
        ``heldout_flagged_`` counts the held-out (or out-of-fold) images above the threshold.
        """
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")
        if not 0.5 <= self.quantile < 1.0:
            raise ValueError(f"quantile must be in [0.5, 1); got {self.quantile}.")
        if not 0.0 <= self.shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1]; got {self.shrinkage}.")
        if not 0.0 < self.power <= 1.0:
            raise ValueError(f"power must be in (0, 1]; got {self.power}.")
        for attr in _FITTED:
            self.__dict__.pop(attr, None)
        X = check_features(X_train, name="X_train", min_samples=self.k + 1 if self.method == "knn" else 2)
        if y_train is None:
            y = np.zeros(len(X), np.int64)
        else:
            y = check_labels(y_train, name="y_train")
            check_consistent_length(X_train=X, y_train=y)
        if self.method == "knn":
            return self._fit_knn(X, X_val)
        if X_val is None:
            fold = self._folds(X, folds)
            raw_val = self._out_of_fold_raw(X, y, fold)
            keep = fold != np.bincount(fold).argmin()  # the fold fit with the most images
            self._fit_scores(X[keep], y[keep])
        else:
            self._fit_scores(X, y)
            raw_val = self._raw(check_features(X_val, name="X_val", n_features=X.shape[1]))
        med = np.nanmedian(raw_val, axis=0)  # NaN: a fold that saw one class has no max-logit score
        spread = np.maximum(np.nanquantile(raw_val, 0.9, axis=0) - med, 1e-12)
        self.norm_ = np.stack([med, spread]).astype(np.float64)
        fused = self._fuse(raw_val)
        self.threshold_ = float(np.quantile(fused, self.quantile))
        self.heldout_flagged_ = int((fused > self.threshold_).sum())
        return self

    def _fit_scores(self, X: np.ndarray, y: np.ndarray) -> None:
        """Class means, shrunk shared precision and (with 2+ classes) the max-logit head."""
        X = _signed_power(X, self.power)
        Z = _normalise(X).astype(np.float64)
        classes, yi = np.unique(y, return_inverse=True)
        means = np.stack([Z[yi == c].mean(axis=0) for c in range(len(classes))])
        self.means_ = means.astype(np.float32)
        self.precision_ = _shrunk_precision(Z - means[yi], self.shrinkage)
        self.n_features_in_ = X.shape[1]
        self.n_reference_ = len(X)
        if len(classes) >= 2 and self.relative:
            whole = Z.mean(axis=0, keepdims=True)
            self.whole_mean_ = whole.astype(np.float32)
            self.whole_precision_ = _shrunk_precision(Z - whole, self.shrinkage)
        if len(classes) >= 2:
            from semcat.head import SoftmaxHead

            head = SoftmaxHead().fit(X, y)
            scale = getattr(head, "scale_", np.ones(X.shape[1], np.float32))
            mean = getattr(head, "mean_", np.zeros(X.shape[1], np.float32))
            self.logit_w_ = (head.coef_ / scale).astype(np.float32)  # standardisation folded in
            self.logit_b_ = (head.intercept_ - self.logit_w_ @ mean).astype(np.float32)

    def _folds(self, X: np.ndarray, folds: np.ndarray | None) -> np.ndarray:
        """Fold index 0 .. k-1 of each image: ``folds`` renumbered, else 5 random folds."""
        if folds is None:
            return np.random.default_rng(self.seed).permutation(len(X)) % min(5, len(X))
        check_consistent_length(X_train=X, folds=np.asarray(folds))
        return np.unique(np.asarray(folds), return_inverse=True)[1].reshape(-1)

    def _out_of_fold_raw(self, X: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """Raw scores of each training image from a fit that did not see it."""
        out = np.empty((len(X), 1 + (len(np.unique(y)) >= 2)), np.float64)
        for f in np.unique(fold):
            part = UnknownDetector(shrinkage=self.shrinkage, power=self.power, relative=self.relative)
            part._fit_scores(X[fold != f], y[fold != f])
            raw = part._raw(X[fold == f])
            out[fold == f] = raw if raw.shape[1] == out.shape[1] else np.c_[raw, np.full(len(raw), np.nan)]
        return out

    def _fit_knn(self, X: np.ndarray, X_val: np.ndarray | None) -> UnknownDetector:
        if len(X) > self.max_reference:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(X), self.max_reference, replace=False))
            X = X[keep]
        self.reference_ = _normalise(X).astype(np.float32)
        self.n_features_in_ = X.shape[1]
        if X_val is not None:
            val_scores = self._knn(_normalise(check_features(X_val, name="X_val", n_features=X.shape[1])))
        else:
            val_scores = self._knn(self.reference_, skip_self=True)
        self.threshold_ = float(np.quantile(val_scores, self.quantile))
        self.heldout_flagged_ = int((val_scores > self.threshold_).sum())
        return self

    # -- scoring ------------------------------------------------------------------------------
    def _knn(self, Xn: np.ndarray, *, skip_self: bool = False) -> np.ndarray:
        k = min(self.k + int(skip_self), len(self.reference_))
        out = np.empty(len(Xn), dtype=np.float64)
        for start in range(0, len(Xn), 1024):  # bounded memory for big batches
            sim = Xn[start:start + 1024] @ self.reference_.T
            kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
            out[start:start + 1024] = 1.0 - kth
        return out

    def _raw(self, X: np.ndarray) -> np.ndarray:
        """(N, n_scores): squared Mahalanobis distance to the nearest class mean (minus the one to
        the mean of all training images when relative)[, minus max logit]."""
        X = _signed_power(X, self.power)
        Z = _normalise(X).astype(np.float32)
        d2 = _sq_mahalanobis(Z, self.means_, self.precision_).min(axis=1).astype(np.float64)
        if hasattr(self, "whole_mean_"):
            d2 -= _sq_mahalanobis(Z, self.whole_mean_, self.whole_precision_)[:, 0]
        cols = [d2]
        if hasattr(self, "logit_w_"):
            cols.append(-(X @ self.logit_w_.T + self.logit_b_).max(axis=1).astype(np.float64))
        return np.stack(cols, axis=1)

    def _fuse(self, raw: np.ndarray) -> np.ndarray:
        return np.nanmax((raw - self.norm_[0]) / self.norm_[1], axis=1)

    def score_components(self, X: np.ndarray) -> np.ndarray:
        """Each score on the common scale, shape (N, n_scores): columns ``to_dict()["scores"]``;
        0 = the held-out median, 1 = its 90th percentile. Shows *why* an image is unknown."""
        check_is_fitted(self, "norm_")
        Xa = check_features(X, name="X", n_features=self.n_features_in_)
        return (self._raw(Xa) - self.norm_[0]) / self.norm_[1]

    def score(self, X: np.ndarray) -> np.ndarray:
        """Unknown score, shape (N,); higher = less familiar, above ``threshold_`` = unknown."""
        check_is_fitted(self, "threshold_")
        Xa = check_features(X, name="X", n_features=self.n_features_in_)
        if self.method == "knn":
            return self._knn(_normalise(Xa))
        return self._fuse(self._raw(Xa))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """True where an image is unknown (score above ``threshold_``)."""
        return self.score(X) > self.threshold_

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        """JSON-safe summary for the model's ``calibration["ood"]`` (``decide`` reads ``threshold``)."""
        check_is_fitted(self, "threshold_")
        if self.method == "knn":
            return {"method": "knn_cosine", "k": self.k, "quantile": self.quantile,
                    "threshold": self.threshold_, "n_reference": len(self.reference_)}
        first = "relative_mahalanobis" if hasattr(self, "whole_mean_") else "mahalanobis"
        scores = [first, "max_logit"][: self.norm_.shape[1]]
        out = {"method": self.method, "quantile": self.quantile, "threshold": self.threshold_,
               "shrinkage": self.shrinkage, "power": self.power, "relative": hasattr(self, "whole_mean_"),
               "n_classes": len(self.means_), "scores": scores}
        return out | ({"n_reference": self.n_reference_} if hasattr(self, "n_reference_") else {})

    def to_tensors(self) -> dict[str, np.ndarray]:
        """Tensors for ``SemcatModel.extra_tensors`` (safetensors-compatible, no pickle)."""
        check_is_fitted(self, "threshold_")
        p = TENSOR_PREFIX
        if self.method == "knn":  # the version-1 layout, unchanged
            params = np.array([self.k, self.quantile, self.threshold_, self.max_reference, self.seed], dtype=np.float64)
            return {f"{p}reference": self.reference_, f"{p}params": params}
        out = {f"{p}version": np.array([_FORMAT_VERSION], np.int64),
               f"{p}params": np.array([self.quantile, self.threshold_, self.shrinkage, self.seed, self.power,
                                   getattr(self, "n_reference_", 0)], np.float64),
               f"{p}means": self.means_, f"{p}precision": self.precision_, f"{p}norm": self.norm_}
        if hasattr(self, "logit_w_"):
            out.update({f"{p}logit_w": self.logit_w_, f"{p}logit_b": self.logit_b_})
        if hasattr(self, "whole_mean_"):
            out.update({f"{p}whole_mean": self.whole_mean_, f"{p}whole_precision": self.whole_precision_})
        return out

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray]) -> UnknownDetector:
        """Rebuild a fitted detector from ``to_tensors`` output (other keys are ignored); reads
        the current layout and those of older models: version 1 (k-NN) and version 2 (no power, not
        relative)."""
        p = TENSOR_PREFIX
        version = int(np.asarray(tensors[f"{p}version"]).ravel()[0]) if f"{p}version" in tensors else 1
        if version not in (1, 2, _FORMAT_VERSION):
            raise ValueError(
                f"this model's unknown detector has format version {version}; this semcat reads versions "
                f"1-{_FORMAT_VERSION}. Upgrade semcat, or re-run `semcat calibrate` with this version.")
        try:
            if version == 1:
                ref = np.asarray(tensors[f"{p}reference"], dtype=np.float32)
                k, quantile, threshold, max_reference, seed = np.asarray(tensors[f"{p}params"]).tolist()
                self = cls(method="knn", k=int(k), quantile=float(quantile), max_reference=int(max_reference), seed=int(seed))
                self.reference_ = ref
                self.n_features_in_ = ref.shape[1]
            else:
                params = np.asarray(tensors[f"{p}params"]).tolist()
                quantile, threshold, shrinkage, seed = params[:4]
                power = params[4] if version >= 3 else 1.0
                self = cls(quantile=float(quantile), shrinkage=float(shrinkage), power=float(power),
                           relative=f"{p}whole_mean" in tensors, seed=int(seed))
                self.means_ = np.asarray(tensors[f"{p}means"], np.float32)
                self.precision_ = np.asarray(tensors[f"{p}precision"], np.float32)
                self.norm_ = np.asarray(tensors[f"{p}norm"], np.float64)
                if f"{p}logit_w" in tensors:
                    self.logit_w_ = np.asarray(tensors[f"{p}logit_w"], np.float32)
                    self.logit_b_ = np.asarray(tensors[f"{p}logit_b"], np.float32)
                if self.relative:
                    self.whole_mean_ = np.asarray(tensors[f"{p}whole_mean"], np.float32)
                    self.whole_precision_ = np.asarray(tensors[f"{p}whole_precision"], np.float32)
                self.n_features_in_ = self.precision_.shape[1]
                if len(params) > 5 and params[5] > 0:  # written since the reference matches the folds'
                    self.n_reference_ = int(params[5])
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(
                f"unknown-detector tensors are missing or malformed ({exc}); expected {p}params with "
                f"{p}reference (version 1) or {p}means/{p}precision/{p}norm (versions 2-3). Re-run `semcat calibrate`."
            ) from None
        self.threshold_ = float(threshold)
        return self


def load_detector(extra_tensors: Mapping[str, np.ndarray] | None) -> UnknownDetector | None:
    """The detector stored in a model's ``extra_tensors``, or None when the model has none."""
    if not extra_tensors or not {f"{TENSOR_PREFIX}reference", f"{TENSOR_PREFIX}version"} & set(extra_tensors):
        return None
    return UnknownDetector.from_tensors(extra_tensors)
