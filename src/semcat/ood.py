"""Unknown detection: is an image unlike anything the model was trained on?

A softmax head always spreads probability over the classes it knows, so a photograph of a cat can
still score 0.9 for "Particles". The detector looks at the backbone features instead: the distance
from an image's L2-normalised feature vector to its k-th nearest training feature (cosine distance,
the deep-nearest-neighbour test of Sun et al., ICML 2022). The threshold is a high quantile of the
same score on held-out images of the known classes, so about ``1 - quantile`` of them are flagged.

The detector is stored in the model artifact as plain tensors (no pickle): a reference subsample of
training features plus a small parameter vector.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from semcat._validation import check_features, check_is_fitted

__all__ = ["TENSOR_PREFIX", "UnknownDetector", "load_detector"]

TENSOR_PREFIX = "ood."
"""Names of the detector's tensors in ``SemcatModel.extra_tensors`` start with this."""


def _normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


class UnknownDetector:
    """k-nearest-neighbour cosine distance to training features, thresholded on held-out images.

    Parameters
    ----------
    k : int
        Which neighbour's distance is the score (1 = nearest). Small k suits small training sets.
    quantile : float
        Share of held-out known images that must stay below the threshold (0.97 → ~3% flagged).
    max_reference : int
        Most training features kept as reference (a random subsample beyond that; 3000 x 1280
        float32 is 15 MB in the artifact).
    seed : int
        Seed of that subsample.

    Attributes (after ``fit``)
    --------------------------
    reference_ : ndarray of shape (R, D)
        L2-normalised training features.
    threshold_ : float
        Scores above it are ``unknown``.
    n_features_in_ : int
    """

    def __init__(self, *, k: int = 3, quantile: float = 0.97, max_reference: int = 3000, seed: int = 0) -> None:
        self.k = k
        self.quantile = quantile
        self.max_reference = max_reference
        self.seed = seed

    def fit(self, X_train: np.ndarray, X_val: np.ndarray | None = None) -> UnknownDetector:
        """Keep (a subsample of) the training features; set the threshold from ``X_val``.

        Without ``X_val`` the threshold comes from the training features themselves, each scored
        against the others (leave-one-out), which is slightly optimistic.
        """
        if not 0.5 <= self.quantile < 1.0:
            raise ValueError(f"quantile must be in [0.5, 1); got {self.quantile}.")
        X = check_features(X_train, name="X_train", min_samples=self.k + 1)
        if len(X) > self.max_reference:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(X), self.max_reference, replace=False))
            X = X[keep]
        self.reference_ = _normalise(X).astype(np.float32)
        self.n_features_in_ = X.shape[1]
        if X_val is not None:
            val_scores = self.score(X_val)
        else:
            val_scores = self._scores(self.reference_, skip_self=True)
        self.threshold_ = float(np.quantile(val_scores, self.quantile))
        return self

    def _scores(self, Xn: np.ndarray, *, skip_self: bool = False) -> np.ndarray:
        k = min(self.k + int(skip_self), len(self.reference_))
        out = np.empty(len(Xn), dtype=np.float64)
        for start in range(0, len(Xn), 1024):  # bounded memory for big batches
            sim = Xn[start:start + 1024] @ self.reference_.T
            kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
            out[start:start + 1024] = 1.0 - kth
        return out

    def score(self, X: np.ndarray) -> np.ndarray:
        """Cosine distance to the k-th nearest training feature, shape (N,); higher = less familiar."""
        check_is_fitted(self, "reference_")
        Xa = check_features(X, name="X", n_features=self.n_features_in_)
        return self._scores(_normalise(Xa))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """True where an image is unknown (score above ``threshold_``)."""
        return self.score(X) > self.threshold_

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-safe summary for the model's ``calibration["ood"]`` (``decide`` reads ``threshold``)."""
        check_is_fitted(self, "threshold_")
        return {"method": "knn_cosine", "k": self.k, "quantile": self.quantile,
                "threshold": self.threshold_, "n_reference": int(len(self.reference_))}

    def to_tensors(self) -> dict[str, np.ndarray]:
        """Tensors for ``SemcatModel.extra_tensors`` (safetensors-compatible, no pickle)."""
        check_is_fitted(self, "threshold_")
        params = np.array([self.k, self.quantile, self.threshold_, self.max_reference, self.seed], dtype=np.float64)
        return {f"{TENSOR_PREFIX}reference": self.reference_, f"{TENSOR_PREFIX}params": params}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray]) -> UnknownDetector:
        """Rebuild a fitted detector from ``to_tensors`` output (other keys are ignored)."""
        try:
            ref = np.asarray(tensors[f"{TENSOR_PREFIX}reference"], dtype=np.float32)
            k, quantile, threshold, max_reference, seed = np.asarray(tensors[f"{TENSOR_PREFIX}params"]).tolist()
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"unknown-detector tensors are missing or malformed ({exc}); expected "
                f"{TENSOR_PREFIX}reference and {TENSOR_PREFIX}params. Re-run `semcat calibrate`."
            ) from None
        self = cls(k=int(k), quantile=float(quantile), max_reference=int(max_reference), seed=int(seed))
        self.reference_ = ref
        self.n_features_in_ = ref.shape[1]
        self.threshold_ = float(threshold)
        return self


def load_detector(extra_tensors: Mapping[str, np.ndarray] | None) -> UnknownDetector | None:
    """The detector stored in a model's ``extra_tensors``, or None when the model has none."""
    if not extra_tensors or f"{TENSOR_PREFIX}reference" not in extra_tensors:
        return None
    return UnknownDetector.from_tensors(extra_tensors)
