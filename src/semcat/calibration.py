"""Calibrated semi-automatic labelling: temperature, decision thresholds and the per-image decision.

The paper (Modarres et al. 2017, Figs. 4-6) found on a second test set that a top score >= ~0.8 can
be labelled automatically, 0.35-0.8 should offer the top two, and below that the user must choose.
semcat derives those thresholds from held-out data for any model (``Calibrator``) and applies them
per image (``decide``). The unknown test lives in ``semcat.ood``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from scipy.stats import beta
from sklearn.isotonic import IsotonicRegression

from semcat import DECISIONS
from semcat._validation import check_consistent_length, check_features, check_is_fitted, check_labels
from semcat.metrics import confusion_counts

__all__ = [
    "DECISIONS",
    "DEFAULT_T_AUTO",
    "DEFAULT_T_SUGGEST",
    "NEVER",
    "STATS_TENSOR",
    "INTERVAL_LEVEL",
    "Calibrator",
    "auto_threshold",
    "calibrate_crossfit",
    "calibrate_model",
    "band_report",
    "clopper_pearson",
    "labels_needed",
    "decide",
    "expected_calibration_error",
    "score_cases",
]

DEFAULT_T_AUTO = 0.8
"""The paper's automatic-label threshold, used before a model is calibrated."""
DEFAULT_T_SUGGEST = 0.35
"""The paper's suggest-top-2 threshold, used before a model is calibrated."""
INTERVAL_LEVEL = 0.95
"""Coverage of the Clopper-Pearson intervals reported for every band and threshold; ``--guarantee``
makes the lower end of the automatic band's interval meet the target precision."""
STATS_TENSOR = "calib.stats"
"""``extra_tensors`` key of the held-out score table (N, 3): raw top score, calibrated top score,
case (0 top-1 correct, 1 second correct, 2 neither). The report redraws its plots from it."""


def _ranked(proba_row: Any, classes: Sequence[str] | None) -> list[tuple[str, float]]:
    """(class, probability) pairs, best first, from a mapping, (class, p) pairs or a 1-D array."""
    if isinstance(proba_row, Mapping):
        pairs = [(str(k), float(v)) for k, v in proba_row.items()]
    else:
        items = list(proba_row)
        if items and isinstance(items[0], (tuple, list)) and len(items[0]) == 2:
            pairs = [(str(k), float(v)) for k, v in items]
        else:
            row = np.asarray(items, dtype=np.float64).ravel()
            if classes is None:
                raise ValueError(
                    f"decide() got a bare probability array of {row.size} values but no class names; "
                    "pass classes=[...] or a {class: probability} mapping"
                )
            if len(classes) != row.size:
                raise ValueError(f"decide() expected {len(classes)} probabilities (one per class), got {row.size}")
            pairs = [(str(c), float(p)) for c, p in zip(classes, row)]
    if not pairs:
        raise ValueError("decide() expected at least one class probability, got none")
    return sorted(pairs, key=lambda cp: -cp[1])


def decide(
    proba_row: Any,
    calibration: Mapping[str, Any] | None,
    ood_score: float | None,
    *,
    classes: Sequence[str] | None = None,
) -> tuple[str, list[str]]:
    """Decide how one image is labelled: ``auto``, ``suggest``, ``manual`` or ``unknown``.

    Parameters
    ----------
    proba_row : mapping {class: probability}, sequence of (class, probability) pairs, or 1-D array
        The image's *calibrated* class probabilities (``SemcatModel.predict_features``). A plain array
        needs ``classes`` (or ``calibration["classes"]``) to name the candidates. A truncated top-k
        list is fine: only the best two scores matter.
    calibration : dict or None
        The model's calibration dict (``{"t_auto", "t_suggest", "ood": {"threshold"}, ...}``). None
        means uncalibrated: the paper's thresholds (0.8 / 0.35) and no unknown test.
    ood_score : float or None
        The unknown detector's score (higher = less like the training images); None skips the test.

    Returns
    -------
    decision : str
        ``unknown`` when the score exceeds the detector's threshold (never auto-labelled);
        ``auto`` when top >= t_auto; ``suggest`` when top >= t_suggest; else ``manual``.
    candidates : list of str
        Classes to offer the reviewer: the top-1 (auto), the top-2 (suggest), or every given class
        ranked best first (manual, unknown).
    """
    cal = dict(calibration or {})
    if classes is None and cal.get("classes"):
        classes = list(cal["classes"])
    ranked = _ranked(proba_row, classes)
    names = [c for c, _ in ranked]
    top = ranked[0][1]
    t_auto = float(cal.get("t_auto", DEFAULT_T_AUTO))
    t_suggest = float(cal.get("t_suggest", DEFAULT_T_SUGGEST))
    ood = cal.get("ood") or {}
    threshold = ood.get("threshold")
    if ood_score is not None and threshold is not None:
        score = float(ood_score)
        if not np.isfinite(score) or score > float(threshold):  # NaN features are never trusted
            return "unknown", names
    if top >= t_auto:
        return "auto", names[:1]
    if top >= t_suggest:
        return "suggest", names[:2]
    return "manual", names

NEVER = math.nextafter(1.0, 2.0)
"""A threshold above any probability: used for ``t_auto`` when no score reaches the target precision."""


def score_cases(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 score and the paper's three cases per image: 0 top-1 correct, 1 second correct, 2 neither.

    Parameters
    ----------
    proba : ndarray of shape (N, K)
        Class probabilities.
    y : ndarray of shape (N,)
        True class indices into the K columns.
    """
    order = np.argsort(-proba, axis=1, kind="stable")
    top = proba[np.arange(len(proba)), order[:, 0]]
    case = np.full(len(proba), 2, dtype=np.int64)
    if proba.shape[1] > 1:
        case[order[:, 1] == y] = 1
    case[order[:, 0] == y] = 0
    return top.astype(np.float64), case


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-1 confidence: bin-weighted mean |accuracy - confidence| over equal-width bins."""
    top, case = score_cases(proba, y)
    correct = case == 0
    bins = np.minimum((top * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - top[m].mean())
    return float(ece)


def band_report(top: np.ndarray, case: np.ndarray, t_auto: float, t_suggest: float,
                unknown: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """Share, count, top-1 precision and top-2 accuracy of each decision band on labelled images,
    each with its ``clopper_pearson`` interval (``*_interval`` = [low, high]).

    ``unknown`` (bool per image) moves images to the ``unknown`` band first, as ``decide`` does.
    Precision is None for an empty band.
    """
    unknown = np.zeros(len(top), bool) if unknown is None else np.asarray(unknown, bool)
    masks = {
        "auto": ~unknown & (top >= t_auto),
        "suggest": ~unknown & (top < t_auto) & (top >= t_suggest),
        "manual": ~unknown & (top < t_suggest),
        "unknown": unknown,
    }
    n = max(len(top), 1)
    out: dict[str, dict[str, Any]] = {}
    for name, m in masks.items():
        k = int(m.sum())
        hits, hits2 = int((case[m] == 0).sum()), int((case[m] <= 1).sum())
        out[name] = {
            "count": k,
            "share": k / n,
            "share_interval": list(clopper_pearson(k, len(top))),
            "precision": hits / k if k else None,
            "precision_interval": list(clopper_pearson(hits, k)) if k else None,
            "top2_accuracy": hits2 / k if k else None,
            "top2_interval": list(clopper_pearson(hits2, k)) if k else None,
        }
    return out


def clopper_pearson(k: int | np.ndarray, n: int | np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[Any, Any]:
    """Exact (Clopper-Pearson) two-sided interval of a proportion ``k / n``: never narrower than its
    coverage promises, which matters with the tens of images behind a small set's bands."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    a = (1.0 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(a, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a, k + 1, n - k), 1.0)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def _crossover(top: np.ndarray, hit: np.ndarray, level: float = 0.5) -> float | None:
    """Lowest top score where the isotonic (monotone) estimate of P(hit | score) reaches ``level``.

    None when it never does; the lowest observed score when it already does there.
    """
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    fitted = iso.fit(top, hit.astype(float)).predict(top)
    above = fitted >= level
    return float(top[above].min()) if above.any() else None


def _cuts(top: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds best first (ends of runs of equal scores), images and hits above each."""
    order = np.argsort(-top, kind="stable")
    s, c = top[order], np.cumsum(correct[order].astype(np.int64))
    end = np.r_[s[1:] < s[:-1], True]
    return s[end], np.flatnonzero(end) + 1, c[end]


def auto_threshold(top: np.ndarray, correct: np.ndarray, target: float, min_support: int,
                   *, guarantee: bool = False) -> float:
    """Smallest threshold t whose band [t, 1] has precision >= target, reached by extending the
    first such band (of >= min_support images, best scores first) downwards while every band
    stays at or above the target; ``NEVER`` when no band of min_support images or more reaches it.

    Stopping at the first band below the target (a running minimum) keeps one lucky dip in the
    precision curve from pulling the threshold down. Starting from the first good band rather than
    the top lets a few confidently wrong images at the very top (one odd sample's shots, common with
    small sets) count against the band instead of forbidding automatic labels altogether. With
    ``guarantee`` the *lower end* of the band's Clopper-Pearson interval must meet the target instead
    of the observed precision (a band of 20 perfect images only proves >= 83%).
    """
    s, n, hits = _cuts(top, correct)
    valid = n >= min_support
    if not valid.any():
        return NEVER
    s, n, hits = s[valid], n[valid], hits[valid]
    good = (clopper_pearson(hits, n)[0] if guarantee else hits / n) >= target
    if not good.any():
        return NEVER
    first = int(np.argmax(good))
    run = good[first:]
    n_good = len(run) if run.all() else int(np.argmin(run))  # length of the all-good stretch
    return float(s[first + n_good - 1])


def labels_needed(top: np.ndarray, correct: np.ndarray, target: float, min_support: int,
                  *, guarantee: bool = False) -> int | None:
    """Roughly how many held-out images in all (same class mix, same model) would let
    ``auto_threshold`` find a threshold: each band of the top scores whose observed precision
    meets the target is scaled up, at its share of the images, until it holds ``min_support``
    images (with ``guarantee``: until its interval's lower end reaches the target at that
    precision); the fewest over the bands. None when no band of at least 5 images meets the target
    (beats it, when guaranteeing), so more labels alone would not help."""
    s, n, hits = _cuts(top, correct)
    p = hits / n
    keep = (n >= 5) & ((p > target) if guarantee else (p >= target))
    if not keep.any():
        return None
    idx = np.flatnonzero(keep)
    idx = idx[np.linspace(0, len(idx) - 1, min(len(idx), 200)).astype(int)]  # bounded cost
    need = np.maximum(n[idx], min_support).astype(np.float64)
    if guarantee:
        grid = np.unique(np.round(1.1 ** np.arange(0, 146)))  # 1 .. ~10^6 images
        lo, _ = clopper_pearson(np.floor(p[idx, None] * grid[None, :]), np.broadcast_to(grid, (len(idx), len(grid))))
        ok = lo >= target
        reach = np.where(ok.any(axis=1), grid[np.argmax(ok, axis=1)], np.inf)
        need = np.maximum(need, reach)
    total = need * len(top) / n[idx]
    return int(math.ceil(total.min())) if np.isfinite(total.min()) else None


class Calibrator:
    """Temperature scaling and decision thresholds fitted on held-out (validation) logits.

    Parameters
    ----------
    min_support : int
        Fewest held-out images the automatic band must contain for its precision to count.
    n_bins : int
        Bins of the expected calibration error and the reliability diagram.
    suggest_level : float
        P(top-2 contains the truth | score) needed for the suggest band (the paper: 0.5).

    Attributes (after ``fit``)
    --------------------------
    temperature_ : float
        Divides the logits; fitted by minimising the Brier score on the held-out set (bounded per
        image, so a few confidently wrong images cannot set it as they set the log-likelihood's),
        with a weak prior on log T that only matters when that set is small and perfectly separated;
        1.0 unless that fit beats T = 1 by more than twice the standard error of the per-image difference.
    temperature_fitted_ : float
        The fitted temperature before that test.
    t_auto_ : float
        Lowest calibrated top score whose automatic labels reach ``target_precision`` (see ``auto_threshold``;
        with ``guarantee`` the lower end of the precision's interval must); ``NEVER`` (just above 1) when none does.
    labels_needed_ : int or None
        When ``t_auto_`` is ``NEVER``: roughly how many held-out images in all would support the
        target (``labels_needed``); None otherwise, or when more labels alone would not help.
    t_suggest_ : float
        Lowest top score where the top two contain the truth with probability >= ``suggest_level``
        (isotonic estimate); never above ``t_auto_``.
    crossover_top1_ : float or None
        Top score where the top-1 label is as likely right as wrong (the paper's Fig. 6a).
    bands_ : dict
        ``band_report`` of the held-out set: share, precision and top-2 accuracy per band.
    ece_before_, ece_after_ : float
        Expected calibration error before and after temperature scaling.
    """

    def __init__(self, *, min_support: int = 20, n_bins: int = 15, suggest_level: float = 0.5) -> None:
        self.min_support = min_support
        self.n_bins = n_bins
        self.suggest_level = suggest_level

    def fit(self, logits_val: np.ndarray, y_val: np.ndarray, *, target_precision: float = 0.95,
            guarantee: bool = False) -> Calibrator:
        """Fit temperature, then thresholds on the temperature-scaled probabilities.

        ``logits_val`` are held-out logits: of a validation split, or out of fold (``semcat.crossfit``).
        ``guarantee`` picks ``t_auto_`` by the lower end of the auto band's precision interval.
        """
        if not 0.0 < target_precision <= 1.0:
            raise ValueError(f"target_precision must be in (0, 1]; got {target_precision}.")
        logits = check_features(logits_val, name="logits_val", min_samples=2).astype(np.float64)
        y = check_labels(y_val, name="y_val")
        check_consistent_length(logits_val=logits, y_val=y)
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= logits.shape[1]:
            raise ValueError(
                f"y_val must hold class indices 0..{logits.shape[1] - 1} (columns of logits_val); "
                f"got {y.dtype} values {np.unique(y)[:5].tolist()}... Map class names to indices first."
            )

        # Minimise the Brier score, a proper scoring rule that is bounded per image: with tens of
        # images a class, one odd sample's shots predicted wrong at ~1.0 dominate the log-likelihood
        # (the demo: 6 of 326 images set T = 1.48 and raised the ECE from 0.04 to 0.17), not this.
        # A weak N(0, 1) prior on log T: when the held-out set is perfectly separated the score keeps
        # falling as T -> 0 and would make every future score ~1.0; its weight (1/n) vanishes with data.
        onehot = np.eye(logits.shape[1])[y]

        def loss(log_t: float) -> float:
            p = softmax(logits / math.exp(log_t), axis=1)
            return float(((p - onehot) ** 2).sum(axis=1).mean()) + log_t**2 / (2 * len(y))

        res = minimize_scalar(loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
        # Keep the temperature only when it beats T = 1 on these images by more than twice the
        # standard error of the paired Brier difference: the penalty chosen by out-of-fold log-loss
        # has already set the head's sharpness, and a T fitted to noise raised the test ECE in 6 of 12
        # small-set fits tried (Lite0, 20 and 50 per class, three draws, with and without groups).
        self.temperature_fitted_ = float(math.exp(res.x))
        gain = ((softmax(logits, axis=1) - onehot) ** 2).sum(axis=1) \
            - ((softmax(logits / self.temperature_fitted_, axis=1) - onehot) ** 2).sum(axis=1)
        se = float(gain.std(ddof=1)) / math.sqrt(len(gain))
        self.temperature_ = self.temperature_fitted_ if gain.mean() > 2.0 * se else 1.0
        raw = softmax(logits, axis=1)
        proba = softmax(logits / self.temperature_, axis=1)
        top, case = score_cases(proba, y)
        self.target_precision_ = float(target_precision)
        self.guarantee_ = bool(guarantee)
        self.t_auto_ = auto_threshold(top, case == 0, target_precision, self.min_support, guarantee=guarantee)
        self.labels_needed_ = (labels_needed(top, case == 0, target_precision, self.min_support, guarantee=guarantee)
                               if self.t_auto_ > 1.0 else None)
        t_suggest = _crossover(top, case <= 1, self.suggest_level)
        self.t_suggest_ = min(t_suggest if t_suggest is not None else self.t_auto_, self.t_auto_)
        self.crossover_top1_ = _crossover(top, case == 0, 0.5)
        self.bands_ = band_report(top, case, self.t_auto_, self.t_suggest_)
        self.ece_before_ = expected_calibration_error(raw, y, self.n_bins)
        self.ece_after_ = expected_calibration_error(proba, y, self.n_bins)
        self.n_samples_ = int(len(y))
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: softmax(logits / temperature_)."""
        check_is_fitted(self, "temperature_")
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature_, axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; the model stores it as its ``calibration`` dict (read by ``decide``)."""
        check_is_fitted(self, "temperature_")
        return {
            "temperature": self.temperature_,
            "temperature_fitted": self.temperature_fitted_,
            "t_auto": self.t_auto_,
            "t_suggest": self.t_suggest_,
            "target_precision": self.target_precision_,
            "guarantee": self.guarantee_,
            "labels_needed": self.labels_needed_,
            "crossover_top1": self.crossover_top1_,
            "bands": self.bands_,
            "ece_before": self.ece_before_,
            "ece_after": self.ece_after_,
            "n_samples": self.n_samples_,
            "params": {"min_support": self.min_support, "n_bins": self.n_bins, "suggest_level": self.suggest_level},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibrator:
        """Rebuild a fitted calibrator from ``to_dict`` output (extra keys such as ``ood`` are ignored)."""
        missing = [k for k in ("temperature", "t_auto", "t_suggest") if k not in d]
        if missing:
            raise ValueError(f"calibration dict lacks {missing}; got keys {sorted(d)}. Re-run `semcat calibrate`.")
        self = cls(**dict(d.get("params") or {}))
        self.temperature_ = float(d["temperature"])
        self.temperature_fitted_ = float(d.get("temperature_fitted", self.temperature_))  # absent before issue 17's fix
        self.t_auto_ = float(d["t_auto"])
        self.t_suggest_ = float(d["t_suggest"])
        self.target_precision_ = float(d.get("target_precision", 0.95))
        self.guarantee_ = bool(d.get("guarantee", False))  # absent before model format 2
        self.labels_needed_ = d.get("labels_needed")
        self.crossover_top1_ = d.get("crossover_top1")
        self.bands_ = dict(d.get("bands") or {})
        self.ece_before_ = float(d.get("ece_before", float("nan")))
        self.ece_after_ = float(d.get("ece_after", float("nan")))
        self.n_samples_ = int(d.get("n_samples", 0))
        return self


def calibrate_model(
    model: Any,
    X_heldout: np.ndarray,
    y_heldout: Sequence[str],
    X_train: np.ndarray,
    *,
    target_precision: float = 0.95,
    guarantee: bool = False,
    source: str = "val",
    calibrator: Calibrator | None = None,
    detector: Any = None,
    y_train: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Calibrate a ``SemcatModel`` in place from a held-out split; returns its new ``calibration`` dict.

    Fits temperature and thresholds on the held-out features/labels, the unknown detector on the
    training features (threshold from the held-out features), records held-out accuracy and the
    confusion matrix, and stores the detector and the score table in ``model.extra_tensors``.
    Save the model afterwards (``model.save(path)``) to keep it. ``calibrate_crossfit`` uses every
    labelled image instead, which small sets need.

    Parameters
    ----------
    X_heldout : ndarray of shape (N, D)
        Backbone features of labelled images the head was NOT trained on.
    y_heldout : sequence of str
        Their class names; every one must be one of ``model.classes``.
    X_train : ndarray of shape (M, D)
        Training features, the reference of the unknown detector.
    y_train : sequence of str, optional
        Their class names: the detector then measures distance to each class (recommended).
    """
    from semcat.ood import UnknownDetector

    y = _class_indices(model, y_heldout, "held-out")
    logits = model.logits(X_heldout)
    cal = (calibrator or Calibrator()).fit(logits, y, target_precision=target_precision, guarantee=guarantee)
    det = (detector or UnknownDetector()).fit(X_train, X_heldout, y_train=y_train)
    return _store(model, cal, det, logits, y, {"source": source})


def calibrate_crossfit(
    model: Any,
    X: np.ndarray,
    labels: Sequence[str],
    *,
    groups: Sequence[str | None] | None = None,
    folds: int = 5,
    seed: int = 0,
    target_precision: float = 0.95,
    guarantee: bool = False,
    calibrator: Calibrator | None = None,
    detector: Any = None,
) -> tuple[dict[str, Any], list[str]]:
    """Calibrate a ``SemcatModel`` in place from out-of-fold predictions over every labelled image.

    ``X``/``labels`` are all labelled images outside the test split (those the final head is fitted
    on). Each is scored by a head with the model's hyperparameters fitted on the other folds
    (``semcat.crossfit``; stratified, and group-aware with ``groups``: ``calibrate`` passes file-name
    series, ``semcat.crossfit.series_groups``, unless ``--group-by`` names the samples); temperature and
    thresholds come from those out-of-fold logits, and the unknown detector's threshold from out-of-fold
    scores (its reference built per fold; it keeps the largest fold's fit). Returns the calibration dict and warnings
    (e.g. fewer folds because a class is small); raises ``ValueError`` naming a class that cannot be
    cross-fitted.
    """
    from semcat.crossfit import fold_ids, out_of_fold_logits
    from semcat.head import SoftmaxHead
    from semcat.ood import UnknownDetector

    y = _class_indices(model, labels, "labelled")
    fold, warnings = fold_ids(labels, groups, k=folds, seed=seed)
    params = model.head.get_params() | {"classes": list(model.classes)}
    names = np.asarray([str(c) for c in labels])
    logits = out_of_fold_logits(check_features(X, name="X"), names, fold, lambda: SoftmaxHead(**params))
    cal = (calibrator or Calibrator()).fit(logits, y, target_precision=target_precision, guarantee=guarantee)
    det = (detector or UnknownDetector()).fit(X, y_train=names, folds=fold)
    n_folds = int(fold.max()) + 1
    source = f"cross-fitted: {n_folds} folds over {len(y)} labelled images" + (", grouped" if groups is not None else "")
    return _store(model, cal, det, logits, y, {"source": source, "folds": n_folds, "grouped": groups is not None}), warnings


def _class_indices(model: Any, labels: Sequence[str], what: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(model.classes)}
    strange = sorted({str(c) for c in labels} - set(index))
    if strange:
        raise ValueError(
            f"{what} labels {strange} are not classes of this model (it knows {model.classes}); "
            "leave those images out or retrain with them."
        )
    return np.array([index[str(c)] for c in labels], dtype=np.int64)


def _store(model: Any, cal: Calibrator, det: Any, logits: np.ndarray, y: np.ndarray,
           heldout: dict[str, Any]) -> dict[str, Any]:
    """Write the calibration, detector and score table into ``model``; the calibration dict."""
    from semcat.ood import TENSOR_PREFIX

    raw_top, _ = score_cases(softmax(np.asarray(logits, np.float64), axis=1), y)
    proba = cal.transform(logits)
    top, case = score_cases(proba, y)
    confusion = confusion_counts(y, proba.argmax(axis=1), len(model.classes))
    flagged = int(det.heldout_flagged_)
    d = cal.to_dict()
    d["classes"] = list(model.classes)
    d["ood"] = det.to_dict() | {"heldout_flagged": flagged,
                                "flagged_interval": list(clopper_pearson(flagged, len(y)))}
    d["heldout"] = heldout | {
        "n": int(len(y)),
        "accuracy": float((case == 0).mean()),
        "top2_accuracy": float((case <= 1).mean()),
        "confusion": confusion.tolist(),
        "unknown_share": flagged / len(y),
    }
    model.extra_tensors = {k: v for k, v in model.extra_tensors.items() if not k.startswith(TENSOR_PREFIX)}
    model.extra_tensors.update(det.to_tensors())
    model.extra_tensors[STATS_TENSOR] = np.stack([raw_top, top, case]).T.astype(np.float32)
    model.calibration = d
    return d
