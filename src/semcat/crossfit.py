"""Cross-fitting: out-of-fold predictions over every labelled image, for small labelled sets.

With tens of images per class a validation split of ~15 images cannot set a threshold (a 97%
quantile of 15 numbers is noise) and wastes labels the head needs. Instead each labelled image is
predicted by a head fitted on the other folds (stratified k-fold, group-aware so that shots of one
sample never sit on both sides), as scikit-learn's ``CalibratedClassifierCV(cv=5)`` and split
conformal prediction do; calibration reads these out-of-fold predictions and the final head is
refitted on all of them. The same folds choose the head's L2 penalty (``select_weight_decay``).
"""
from __future__ import annotations

import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import PurePath

import numpy as np

from semcat.head import SoftmaxHead

__all__ = ["DEFAULT_FOLDS", "WEIGHT_DECAY_GRID", "fold_groups", "fold_ids", "out_of_fold_logits",
           "select_weight_decay", "series_groups"]

DEFAULT_FOLDS = 5
WEIGHT_DECAY_GRID = (1e-3, 1e-2, 1e-1)
"""L2 penalties tried by inner cross-validation (1e-3 was the fixed default; see README "Limits")."""

_COUNTER = re.compile(r"[\s._-]*\d+$")
"""The shot counter at the end of a file stem ("cells34_127" -> "cells34")."""


def series_groups(paths: Sequence[str | PurePath], labels: Sequence[object]) -> tuple[list[str | None], list[str]]:
    """Default cross-fitting groups: each file's series (its stem less the trailing shot counter), and warnings.

    Why: the shots of one specimen are numbered in a row (``sample3_001.tif``, ``sample3_002.tif``)
    and look alike; folds that split them score an image against its near twin, which sets the
    unknown threshold too low for a new sample. Feature-similarity clusters do not find these series
    (shots of one sample are no closer than other samples of the class; union-find chains a whole
    class: ``benchmarks/results/unknown_threshold.md``). A file without a counter is its own group.
    A class with fewer than 2 series has its images split one by one, with a warning naming it.
    """
    groups: list[str | None] = []
    for path in paths:
        stem = PurePath(path).stem
        series = _COUNTER.sub("", stem)
        groups.append(series if series and series != stem else None)
    units: dict[str, set[str]] = defaultdict(set)
    for i, (label, g) in enumerate(zip(labels, groups)):
        units[str(label)].add(g if g is not None else f"\0{i}")
    single = sorted(c for c, u in units.items() if len(u) < 2)
    if single:
        groups = [None if str(label) in single else g for label, g in zip(labels, groups)]
        return groups, [(f"class(es) {', '.join(map(repr, single))} keep all images in one file-name series: their "
                         "images go into folds one by one, which sets the unknown threshold too low for a new "
                         "sample; name each sample with --group-by")]
    return groups, []


def fold_groups(paths: Sequence[str | PurePath], labels: Sequence[object],
                given: Sequence[str | None] | None = None) -> tuple[list[str | None], list[str], str]:
    """Groups that cross-fitting folds keep together, warnings, and a phrase naming the grouping.

    One rule for ``train``'s penalty choice, ``calibrate`` and background retraining: the ``given``
    sample groups (``--group-by``, the catalogue's duplicate groups) when there are any, else the
    file-name series (``series_groups``), so the shots of one sample never straddle a fold.
    """
    if given is not None:
        return list(given), [], "the given sample groups"
    groups, warnings = series_groups(paths, labels)
    how = "file-name series" if any(g is not None for g in groups) else "image by image (no file-name series found)"
    return groups, warnings, how


def fold_ids(
    y: Sequence[object] | np.ndarray,
    groups: Sequence[object | None] | None = None,
    *,
    k: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Fold index (0 .. k'-1) of each image and warnings to show the user.

    Folds are stratified by class; with ``groups`` (sample names, None = the image alone) all
    images of a group share a fold. A class with fewer than ``k`` images lowers the number of folds
    to that count, with a warning naming it; a class with fewer than ``k`` groups does not (it is
    held out in fewer folds, and its other samples are in every fit), unless the split would hold
    out all of it at once. Fewer folds shrink the unknown detector's reference, so its threshold flags
    fewer new samples (0.9% instead of 2.4% at 20 images per class: ``benchmarks/results/unknown_threshold.md``).
    A class with only one image (group) raises ``ValueError`` naming the class and the fix, since none
    of its images could be predicted by a head that saw it.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray([str(v) for v in y])
    if int(k) < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds; got {k}.")
    grouped = groups is not None
    keys = [f"g:{g}" if g is not None else f"i:{i}" for i, g in enumerate(groups)] if grouped else [f"i:{i}" for i in range(len(y))]
    units: dict[str, set[str]] = defaultdict(set)
    for label, key in zip(y.tolist(), keys):
        units[label].add(key)
    cls, fewest = min(((c, len(u)) for c, u in sorted(units.items())), key=lambda cu: cu[1])
    what = "sample groups" if grouped else "labelled images"
    if fewest < 2:
        fix = ("give its shots distinct sample names (check the --group-by pattern) or run without --group-by"
               if grouped else "add labelled images of it or leave its folder out")
        raise ValueError(f"class {cls!r} has only 1 of its {what} outside the test split; cross-fitting needs "
                         f"at least 2 (each image must be predicted by a head that did not see it): {fix}.")
    messages = []
    folds = np.empty(len(y), np.int64)
    limit = f"class {cls!r} has only {fewest} {what}"
    if grouped:
        names, counts = np.unique(y, return_counts=True)  # scikit-learn needs k images of every class
        n_groups = len(set(keys))  # ... and k groups in all (series may span classes: one per session)
        n_folds = min(int(k), int(counts.min()), n_groups)
        _grouped_split(folds, y, keys, n_folds, seed)
        if n_folds > fewest and any(len(np.unique(folds[y == c])) < 2 for c in units):  # a class held out at once
            n_folds = fewest
            _grouped_split(folds, y, keys, n_folds, seed)
        if n_folds == n_groups < min(int(k), int(counts.min())):
            limit = f"the labelled images form only {n_groups} sample groups in all"
        elif n_folds != fewest:
            limit = f"class {str(names[counts.argmin()])!r} has only {int(counts.min())} labelled images"
    else:
        n_folds = min(int(k), fewest)
        for f, (_, test) in enumerate(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
                                      .split(np.zeros(len(y)), y)):
            folds[test] = f
    if n_folds < k:
        messages.append(f"{limit} outside the test split: cross-fitting "
                        f"with {n_folds} folds instead of {k}")
    return folds, messages


def _grouped_split(folds: np.ndarray, y: np.ndarray, keys: list[str], n_folds: int, seed: int) -> None:
    """Write stratified group folds into ``folds`` (a class may have fewer groups than folds)."""
    from sklearn.model_selection import StratifiedGroupKFold

    with warnings.catch_warnings():  # "least populated class has only N members": intended here
        warnings.simplefilter("ignore", UserWarning)
        parts = list(StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
                     .split(np.zeros(len(y)), y, keys))
    for f, (_, test) in enumerate(parts):
        folds[test] = f


Augmented = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Augmented training rows: features, labels and the row of ``X`` (the image) each one copies."""


def out_of_fold_logits(X: np.ndarray, y: np.ndarray, folds: np.ndarray,
                       make_head: Callable[[], SoftmaxHead], extra: Augmented | None = None) -> np.ndarray:
    """Logits (N, n_classes) of each image from a head fitted on the other folds (and on the
    ``extra`` copies of their images: an image's copies stay in its fold)."""
    out: np.ndarray | None = None
    for f in np.unique(folds):
        held = folds == f
        Xf, yf = X[~held], y[~held]
        if extra is not None:
            copies = ~held[extra[2]]
            Xf, yf = np.concatenate([Xf, extra[0][copies]]), np.concatenate([yf, extra[1][copies]])
        head = make_head().fit(Xf, yf)
        logits = head.decision_function(X[held])
        if out is None:
            out = np.empty((len(X), logits.shape[1]), np.float32)
        out[held] = logits
    assert out is not None
    return out


def _log_loss(logits: np.ndarray, yi: np.ndarray) -> float:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-lp[np.arange(len(yi)), yi].mean())


def select_weight_decay(
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    classes: Sequence[str],
    make_head: Callable[[float], SoftmaxHead],
    grid: Sequence[float] = WEIGHT_DECAY_GRID,
    extra: Augmented | None = None,
) -> tuple[float, np.ndarray, dict[float, float]]:
    """The L2 penalty with the lowest out-of-fold log-loss, its out-of-fold logits, and every loss.

    Replaces early stopping on a validation split that, with a small set, holds too few images
    to stop on. ``make_head(weight_decay)`` builds an unfitted head whose logit columns are ``classes``.
    ``extra``: augmented copies that join each fold's training rows (the penalty is then chosen
    for the head that is fitted with them); the loss is still of the original images only.
    """
    index = {str(c): i for i, c in enumerate(classes)}
    yi = np.array([index[str(v)] for v in y], dtype=np.int64)
    losses: dict[float, float] = {}
    best: tuple[float, float, np.ndarray] | None = None
    for wd in grid:
        logits = out_of_fold_logits(X, y, folds, lambda wd=wd: make_head(wd), extra)
        losses[float(wd)] = _log_loss(logits, yi)
        if best is None or losses[float(wd)] < best[0]:
            best = (losses[float(wd)], float(wd), logits)
    assert best is not None
    return best[1], best[2], losses
