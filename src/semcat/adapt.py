"""Test-time adaptation: re-standardise the features of each group being classified (issue 20).

Why: a microscope the model never saw shifts and scales every feature (detector contrast, gamma,
dose). When a folder holds one instrument's images, its own feature statistics can be mapped onto
the training statistics before the head reads them, so the shift cancels. The known failure mode:
a folder holding one or two categories. Its mean is then mostly *class* signal, and subtracting it
removes what the head needs (``benchmarks/cross_instrument.py`` measures both balanced and
imbalanced folders). Modes:

- ``group``: the group's mean and std replace the training mean and std (per feature);
- ``balanced``: the group's mean is the mean of its per-*predicted*-class means (and its std taken
  around that mean with the same class weights), re-estimated ``iterations`` times, so a folder with
  more images of one class is not centred on that class;
- ``scale``: only the group's spread (around the training mean) replaces the training std; the
  training mean is kept;
- ``classwise``: a shift only, estimated class by class: the mean of each predicted class in the
  group against that class's training mean (stored in the model by ``semcat train``).

Every function maps features into the training space: ``ref_mean + ref_std * (X - m) / s``, so the
head (and the unknown detector) read them unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ADAPT_MODES", "TENSOR_PREFIX", "Reference", "adapt_batch", "adapt_groups", "load_reference",
           "reference_stats", "reference_tensors"]

ADAPT_MODES = ("group", "balanced", "scale", "classwise")
_EPS = 1e-6
TENSOR_PREFIX = "adapt."
"""Names of the training statistics in ``SemcatModel.extra_tensors`` start with this."""


@dataclass(frozen=True)
class Reference:
    """Training feature statistics: mean and std per feature, and (for ``classwise``) per class."""

    mean: np.ndarray
    std: np.ndarray
    class_means: np.ndarray | None = None
    """(k, d): the mean of each class's training features, columns in the head's class order."""


def reference_stats(X: np.ndarray, y: np.ndarray | None = None, classes: Sequence[str] | None = None) -> Reference:
    """The :class:`Reference` of training features ``X``; with labels ``y`` also per class."""
    X = np.asarray(X, np.float32)
    if y is None or classes is None:
        return Reference(X.mean(0), X.std(0))
    y = np.asarray([str(v) for v in y])
    means = np.stack([X[y == c].mean(0) if (y == c).any() else X.mean(0) for c in map(str, classes)])
    return Reference(X.mean(0), X.std(0), means.astype(np.float32))


def reference_tensors(ref: Reference) -> dict[str, np.ndarray]:
    """``ref`` as tensors for ``SemcatModel.extra_tensors``."""
    out = {f"{TENSOR_PREFIX}mean": ref.mean, f"{TENSOR_PREFIX}std": ref.std}
    if ref.class_means is not None:
        out[f"{TENSOR_PREFIX}class_means"] = ref.class_means
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def load_reference(extra_tensors: Mapping[str, np.ndarray] | None) -> Reference | None:
    """The training statistics stored in a model (None for models trained before issue 20)."""
    t = extra_tensors or {}
    if f"{TENSOR_PREFIX}mean" not in t or f"{TENSOR_PREFIX}std" not in t:
        return None
    return Reference(t[f"{TENSOR_PREFIX}mean"], t[f"{TENSOR_PREFIX}std"], t.get(f"{TENSOR_PREFIX}class_means"))


def adapt_batch(X: np.ndarray, ref: Reference, mode: str,
                predict: Callable[[np.ndarray], np.ndarray] | None = None, iterations: int = 2) -> np.ndarray:
    """One group's features ``X`` (n, d) mapped so that their statistics match the training ``ref``.

    ``predict`` (features in the training space -> class scores (n, k)) is needed by ``balanced``
    and ``classwise``. A group of one image is returned unchanged: it has no spread to standardise by.
    """
    if mode not in ADAPT_MODES:
        raise ValueError(f"adapt mode must be one of {', '.join(ADAPT_MODES)}; got {mode!r}.")
    if mode in ("balanced", "classwise") and predict is None:
        raise ValueError(f"adapt mode {mode!r} needs the head's predict function.")
    if mode == "classwise" and ref.class_means is None:
        raise ValueError("adapt mode 'classwise' needs the training class means (reference_stats with labels).")
    X = np.asarray(X, np.float32)
    if len(X) < 2:
        return X.copy()
    if mode == "scale":  # the spread around the training mean, so a one-class folder keeps its offset
        return _map(X, ref.mean, np.sqrt(((X - ref.mean) ** 2).mean(0)), ref.mean, ref.std)
    mean, std = X.mean(0), X.std(0)
    if mode == "group":
        return _map(X, mean, std, ref.mean, ref.std)
    if mode == "classwise":
        return _classwise(X, ref, predict, iterations)
    for _ in range(int(iterations)):
        pred = np.argmax(predict(_map(X, mean, std, ref.mean, ref.std)), axis=1)
        _, inverse, counts = np.unique(pred, return_inverse=True, return_counts=True)
        w = (1.0 / (len(counts) * counts[inverse]))[:, None]  # each predicted class weighs the same
        mean = (w * X).sum(0)
        std = np.sqrt((w * (X - mean) ** 2).sum(0))
    return _map(X, mean, std, ref.mean, ref.std)


def _classwise(X: np.ndarray, ref: Reference, predict: Callable[[np.ndarray], np.ndarray],
               iterations: int) -> np.ndarray:
    """A shift estimated class by class: the mean of each predicted class in this group against the
    same class's training mean, so a folder of one class is moved by the instrument's shift, not
    onto the centre of all classes. (Rescaling by the within-class spread too lost on folders of
    one or two classes: a few images per class give no stable spread.)"""
    assert ref.class_means is not None
    out = X
    for _ in range(int(iterations)):
        pred = np.argmax(predict(out), axis=1)
        names = np.unique(pred)
        shift = np.stack([X[pred == c].mean(0) for c in names]).mean(0) - ref.class_means[names].mean(0)
        out = (X - shift).astype(np.float32)
    return out


def _map(X: np.ndarray, mean: np.ndarray, std: np.ndarray, ref_mean: np.ndarray, ref_std: np.ndarray) -> np.ndarray:
    return (ref_mean + ref_std * (X - mean) / (std + _EPS)).astype(np.float32)


def adapt_groups(X: np.ndarray, groups: Sequence[object] | np.ndarray, ref: Reference, mode: str,
                 predict: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """:func:`adapt_batch` of each group's rows (``groups``: one key per row, e.g. its folder)."""
    groups = np.asarray([str(g) for g in groups])
    out = np.empty_like(np.asarray(X, np.float32))
    for g in np.unique(groups):
        rows = groups == g
        out[rows] = adapt_batch(X[rows], ref, mode, predict)
    return out
