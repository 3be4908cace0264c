"""Leave-one-group-out and within-group evaluation on cached features (issue 20).

Why: a random split mixes every instrument into train and test, so it measures recognition on
microscopes the model has already seen. Holding out one group (instrument, lab, detector) at a
time measures what a facility meets when it shares a model or buys a second microscope. Both
protocols run on the same cached features and compare heads side by side:

- ``semcat``: the project's softmax head (``semcat.head.SoftmaxHead``, L-BFGS);
- ``plain``: scikit-learn ``LogisticRegression`` on features of the plain centre crop (data bar
  kept, no contrast stretch: view ``plain``), the baseline any preprocessing or head must not fall below;
- ``semcat+groupstd``: the softmax head on features standardised per group (each training group
  with its own mean/std; the test group with the statistics of the batch being classified);
- ``semcat+adapt-*``: the default head, and test-time adaptation of the batch being classified
  (:mod:`semcat.adapt`, ``semcat classify --adapt``), also on batches holding 1 or 2 classes only;
- ``semcat+ft*``: the backbone's last blocks fine-tuned with SEM augmentations in a CPU time
  budget (:mod:`semcat.finetune`), then the default head on the tuned features.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semcat.features import DEFAULT_VIEW
from semcat.head import SCALE_SHRINKAGE
from semcat.metrics import classification_metrics, run_stats
from semcat.physical_scale import SCALE_AUGMENTATIONS, scale_variants
from semcat.view_transforms import ALL, DIHEDRAL

if TYPE_CHECKING:
    from semcat.adapt import Reference
    from semcat.backbones import BackboneSpec
    from semcat.features import StoreChoice
    from semcat.featurespec import FeatureSpec
    from semcat.finetune import FinetuneConfig

__all__ = ["METHODS", "PROTOCOLS", "GroupedFeatures", "cross_group_markdown", "grouped_features", "leave_one_group_out",
           "run_methods", "within_groups"]

Predictor = Callable[[np.ndarray], np.ndarray]
Fit = Callable[..., Predictor]
"""``fit(X, y, classes, seed, extra=None) -> predict_proba``; ``extra`` = augmented (X, y) rows."""


@dataclass
class GroupedFeatures:
    """Features of a labelled folder with each image's class and group."""

    paths: list[str]
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    classes: list[str]
    errors: list[tuple[str, str]]
    ungrouped: int = 0
    """Images whose group could not be read (regex did not match): left out."""


def grouped_features(data_dir: str | Path, group_by: str, spec: FeatureSpec, *, store: StoreChoice = "default",
                     progress: bool = False) -> GroupedFeatures:
    """Scan ``data_dir`` with ``group_by`` ("folder" or a regex) and extract (cached) features."""
    from semcat.dataset import scan_dataset

    ds = scan_dataset(data_dir, group_by=group_by, near_duplicates=False)
    grouped = [s for s in ds.samples if s.group is not None]
    res = spec.extract([str(s.path) for s in grouped], store=store, progress=progress)
    ok, X, errors = res.paths, res.features, res.errors
    info = {str(s.path): (s.label, s.group) for s in grouped}
    y = np.array([info[p][0] for p in ok], dtype=object)
    g = np.array([info[p][1] for p in ok], dtype=object)
    return GroupedFeatures(ok, X, y, g, list(ds.classes), [(str(p), str(e)) for p, e in ds.errors] + list(errors),
                           len(ds.samples) - len(grouped))


def fit_semcat(X: np.ndarray, y: np.ndarray, classes: list[str], seed: int,
               extra: tuple[np.ndarray, np.ndarray] | None = None, *, standardize: bool = True,
               scale_shrinkage: float = SCALE_SHRINKAGE, grid: Sequence[float] | None = None,
               aug_cv: bool = False) -> Predictor:
    """The project's default head, as ``semcat train`` fits it: L2 penalty chosen by 5-fold CV.

    ``extra`` (features of augmented views and their labels) joins the final fit only: the
    penalty is chosen on the original images, so no image's augmented copy sits in another fold.
    ``standardize=False``: the head on raw features (as the plain baseline's LogisticRegression);
    ``scale_shrinkage``: the head's shrinkage of feature scales (``semcat train``'s by default);
    ``grid``: the penalties tried (default ``semcat.crossfit.WEIGHT_DECAY_GRID``);
    ``aug_cv``: the penalty chosen for the augmented head (each fold trained with its images'
    ``extra`` copies, whose rows are blocks aligned with ``X``), not for the head on ``X`` alone.
    """
    from semcat.crossfit import (
        DEFAULT_FOLDS,
        WEIGHT_DECAY_GRID,
        fold_ids,
        select_weight_decay,
    )
    from semcat.head import SoftmaxHead

    y = y.astype(str)

    def head(wd: float) -> SoftmaxHead:
        return SoftmaxHead(seed=seed, classes=classes, weight_decay=wd, standardize=standardize,
                           scale_shrinkage=scale_shrinkage)

    grid = tuple(grid or WEIGHT_DECAY_GRID)
    wd = grid[0]
    copies = None
    if aug_cv and extra is not None:
        copies = (extra[0], extra[1].astype(str), np.tile(np.arange(len(X)), len(extra[0]) // len(X)))
    if min(np.unique(y, return_counts=True)[1]) >= 2:  # else no fold could predict that class's image
        wd, _, _ = select_weight_decay(X, y, fold_ids(y, k=DEFAULT_FOLDS, seed=seed)[0], classes, head, grid, copies)
    if extra is not None:
        X, y = np.concatenate([X, extra[0]]), np.concatenate([y, extra[1].astype(str)])
    return head(wd).fit(X, y).predict_proba


def fit_semcat_fixed(X: np.ndarray, y: np.ndarray, classes: list[str], seed: int,
                     extra: tuple[np.ndarray, np.ndarray] | None = None) -> Predictor:
    """The head with the fixed penalty 1e-3 (the default before cross-validated penalties)."""
    from semcat.head import SoftmaxHead

    if extra is not None:
        X, y = np.concatenate([X, extra[0]]), np.concatenate([y, extra[1]])
    return SoftmaxHead(seed=seed, classes=classes).fit(X, y.astype(str)).predict_proba


def fit_plain(X: np.ndarray, y: np.ndarray, classes: list[str], seed: int,
              extra: tuple[np.ndarray, np.ndarray] | None = None) -> Predictor:
    """scikit-learn ``LogisticRegression`` with its defaults (C=1), columns in ``classes`` order."""
    from sklearn.linear_model import LogisticRegression

    if extra is not None:
        X, y = np.concatenate([X, extra[0]]), np.concatenate([y, extra[1]])
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(X, y.astype(str))
    cols = [list(clf.classes_).index(c) if c in clf.classes_ else -1 for c in classes]

    def predict(Z: np.ndarray) -> np.ndarray:
        p = clf.predict_proba(Z)
        return np.stack([p[:, j] if j >= 0 else np.zeros(len(Z)) for j in cols], axis=1)

    return predict


def fit_finetuned(X: np.ndarray, y: np.ndarray, classes: list[str], seed: int,
                  extra: tuple[np.ndarray, np.ndarray] | None = None, *, config: FinetuneConfig,
                  spec: BackboneSpec) -> Predictor:
    """Fine-tune the backbone's tail on activations ``X`` (N, 1 + views, C, H, W) of
    :func:`semcat.finetune.file_activations`, then fit the default head on the tuned tail's
    features of the clean views (and of ``config.fixed`` views, as extra rows); the predictor
    reads activations of the same layout."""
    from semcat.finetune import finetune_tail, split_backbone, tail_features

    if extra is not None:
        raise ValueError("fine-tuning augments in the image domain; feature-space augmentation does not apply")
    tuned = finetune_tail(X, y, classes, split_backbone(spec)[1], config, seed).tail
    rows = [tail_features(tuned, X[:, 1 + k]) for k in range(len(config.fixed))]
    predict = fit_semcat(tail_features(tuned, X[:, 0]), y, classes, seed,
                         extra=(np.concatenate(rows), np.concatenate([y] * len(rows))) if rows else None)
    return lambda Z: predict(tail_features(tuned, Z[:, 0]))


@dataclass(frozen=True)
class Method:
    """A named head, the feature variant it reads and the options measured against the default.

    ``view``: the crop's view; ``center`` (the default view before issue 20's ``clean``) unless
    named, so every method measured on it reruns as it was; ``semcat`` reads the default view.
    ``augment``: views whose features join the training rows (feature-space augmentation), or
    :data:`semcat.physical_scale.SCALE_AUGMENTATIONS` (rows of the method's view unscaled or at
    other scales; with ``scale``);
    ``test_view``: the view classified (test-time augmentation), default ``view``;
    ``group_standardize``: features standardised per group (the test group by its own batch);
    ``adapt``: a :data:`semcat.adapt.ADAPT_MODES` mode applied to each classified batch at test time;
    ``scale``: scale normalisation with the pixel size (:mod:`semcat.physical_scale`) at the ``auto``
    target of the whole folder (pixel sizes only, no labels: one feature extraction per draw);
    ``test_scale``: whether the classified images are scale-normalised, default ``scale`` (False
    with ``scale``: a model trained with ``--scale`` meeting files without a pixel size);
    ``finetune``: rows are the activations of :func:`semcat.finetune.file_activations` (clean
    and augmented views of the ``view`` crop), not pooled features; ``fit`` gets the backbone.
    """

    name: str
    fit: Fit
    view: str = "center"
    crop_databar: bool = True
    group_standardize: bool = False
    augment: tuple[str, ...] = ()
    test_view: str | None = None
    adapt: str | None = None
    scale: bool = False
    test_scale: bool | None = None
    finetune: FinetuneConfig | None = None


def _finetune_method(name: str, scale: bool = False, **config: Any) -> Method:
    from semcat.finetune import FinetuneConfig

    cfg = FinetuneConfig(**config)
    return Method(name, partial(fit_finetuned, config=cfg), finetune=cfg, scale=scale)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("semcat", fit_semcat, view=DEFAULT_VIEW),
    Method("plain", fit_plain, view="plain", crop_databar=False),
    Method("semcat@center", fit_semcat),  # the default before issue 20's clean view: the paper's centre crop
    Method("semcat+groupstd", fit_semcat, group_standardize=True),
    # why the default lost to plain within instrument: the penalty, the head's standardisation or the view
    Method("semcat-wd1e-3", fit_semcat_fixed),
    Method("logreg@center", fit_plain),
    Method("semcat-nostd", partial(fit_semcat, standardize=False)),
    Method("semcat-fullstd", partial(fit_semcat, scale_shrinkage=0.0)),  # the default head before issue 20's shrinkage
    # intensity normalisation before the CNN
    Method("semcat+clahe", fit_semcat, view="clahe"),
    Method("semcat+histeq", fit_semcat, view="histeq"),
    # feature-space augmentation: the head also trained on features of augmented views
    Method("semcat+aug-all", fit_semcat, augment=ALL),
    Method("semcat+aug-all+groupstd", fit_semcat, augment=ALL, group_standardize=True),
    # test-time augmentation: features of the four rotations averaged
    Method("semcat+tta4", fit_semcat, view="tta4"),
    # test-time adaptation of the classified batch, as `semcat classify --adapt`
    Method("semcat+adapt-group", fit_semcat, adapt="group"),
    Method("semcat+adapt-balanced", fit_semcat, adapt="balanced"),
    Method("semcat+adapt-scale", fit_semcat, adapt="scale"),
    Method("semcat+adapt-classwise", fit_semcat, adapt="classwise"),
    # scale normalisation with the pixel size (a physical crop), images without one as today
    Method("semcat+scale", fit_semcat, scale=True),
    Method("semcat+scale+tta4", fit_semcat, view="tta4", scale=True),
    Method("semcat+scale/test-nopx", fit_semcat, scale=True, test_scale=False),  # test files without a pixel size
    Method("semcat+scale+tta4/test-nopx", fit_semcat, view="tta4", scale=True, test_scale=False),
    Method("semcat+ms3", fit_semcat, view="ms3"),  # multi-scale crops: for images without a pixel size
    # issue 20, second round: scale-mixed training (scaled and unscaled rows; each file classified by
    # whether it has a pixel size), scale jitter, and test-time augmentation at 2x the features
    Method("semcat+tta2", fit_semcat, view="tta2"),
    Method("semcat+scale+tta2", fit_semcat, view="tta2", scale=True),
    Method("semcat+scale+aug-flip", fit_semcat, augment=("aug-flip",), scale=True),
    Method("semcat+scale+aug-fliprot", fit_semcat, augment=("aug-flip", "aug-rot90"), scale=True),
    *(Method(f"semcat+scale-{name}{nopx}", fit_semcat, view=view, augment=aug, scale=True,
             test_scale=None if not nopx else False)
      for name, view, aug in (("mix", "center", ("aug-noscale",)),
                              ("jitter", "center", ("aug-scalejitter",)),
                              ("mix-jitter", "center", ("aug-noscale", "aug-scalejitter")),
                              ("mix+tta2", "tta2", ("aug-noscale",)),
                              ("mix+aug-flip", "center", ("aug-noscale", "aug-flip")),
                              ("mix+aug-fliprot", "center", ("aug-noscale", "aug-flip", "aug-rot90")))
      for nopx in ("", "/test-nopx")),
    # issue 20, third round: more training-side views on scale-mix+aug-fliprot (one feature per image
    # at classify time). Each is a change a real archive shows: an SEM image has no "up" (d4: the
    # whole dihedral group), operators and detectors set different gammas (gamma: 1.8 and 0.55),
    # detectors flip the contrast's polarity (invert: SE vs BSE), a lower dose or faster scan adds
    # shot noise (noise); +cv: the penalty chosen for the head trained with its augmented rows
    *(Method(f"semcat+scale-mix+aug-{name}{nopx}", partial(fit_semcat, aug_cv=name.endswith("+cv")), augment=aug,
             scale=True, test_scale=None if not nopx else False)
      for name, aug in (("d4", ("aug-noscale", *DIHEDRAL)),
                        ("d4+cv", ("aug-noscale", *DIHEDRAL)),
                        ("fliprot+cv", ("aug-noscale", "aug-flip", "aug-rot90")),
                        ("fliprot+gamma", ("aug-noscale", "aug-flip", "aug-rot90", "aug-dark", "aug-bright")),
                        ("fliprot+invert", ("aug-noscale", "aug-flip", "aug-rot90", "aug-invert")),
                        ("fliprot+noise", ("aug-noscale", "aug-flip", "aug-rot90", "aug-noise")),
                        ("d4+gamma", ("aug-noscale", *DIHEDRAL, "aug-dark", "aug-bright")),
                        ("d4+sem", ("aug-noscale", *DIHEDRAL, "aug-dark", "aug-bright", "aug-invert", "aug-noise")))
      for nopx in ("", "/test-nopx")),
    # the penalty fixed at 0.1 (the CV picks 0.01): picked on draws 0-2, so measured on fresh draws
    *(Method(f"semcat+scale-mix+aug-d4-wd0.1{nopx}", partial(fit_semcat, grid=(0.1,)), augment=("aug-noscale", *DIHEDRAL),
             scale=True, test_scale=None if not nopx else False) for nopx in ("", "/test-nopx")),
    # the backbone's last blocks fine-tuned with SEM augmentations on CPU, in a time budget per fit
    _finetune_method("semcat+ft", blocks=1, seconds=20),
    _finetune_method("semcat+ft2", blocks=2, seconds=20),
    _finetune_method("semcat+ft-60s", blocks=1, seconds=60),
    _finetune_method("semcat+ft-120s", blocks=1, seconds=120),
    # with the scale-mixed head's views: the scaled crop clean, today's crop, its mirror image and rotation
    _finetune_method("semcat+scale-mix+aug-fliprot+ft-60s", scale=True, blocks=1, seconds=60,
                     fixed=("noscale", "aug-flip", "aug-rot90")),
)}


PROTOCOLS: dict[str, int | None] = {"groups": None, "groups-2cls": 2, "groups-1cls": 1, "within": None}
"""Evaluation protocols of :func:`run_methods` -> classes per classified batch of the held-out group."""


def _group_standardize(X: np.ndarray, groups: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """``X`` and ``others`` (rows aligned with X) scaled by each group's own statistics in ``X``."""
    outs = [np.empty_like(Z, dtype=np.float32) for Z in (X, *others)]
    for g in np.unique(groups):
        m = groups == g
        mu, sd = X[m].mean(0), X[m].std(0) + 1e-6
        for Z, out in zip((X, *others), outs):
            out[m] = (Z[m] - mu) / sd
    return outs


def _prepare(X: np.ndarray, groups: np.ndarray, extra: Sequence[np.ndarray], X_test: np.ndarray | None,
             group_standardize: bool) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Training features, augmented rows and test features, standardised per group when asked."""
    if not group_standardize:
        return X, list(extra), X if X_test is None else X_test
    # the test view is standardised by its own batch statistics, like a classified folder
    Xs, *es = _group_standardize(X, groups, *extra)
    return Xs, es, Xs if X_test is None else _group_standardize(X_test, groups)[0]


def _extra(extra: Sequence[np.ndarray], rows: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if not extra:
        return None
    return np.concatenate([e[rows] for e in extra]), np.concatenate([y[rows]] * len(extra))


def _classify(predict: Predictor, X_test: np.ndarray, adapt: str | None, ref: Reference | None) -> np.ndarray:
    """``predict`` of one classified batch, adapted to the training statistics ``ref`` when asked."""
    if adapt is None or ref is None:
        return predict(X_test)
    from semcat.adapt import adapt_batch

    return predict(adapt_batch(X_test, ref, adapt, predict))


def _reference(X: np.ndarray, y: np.ndarray, classes: list[str], adapt: str | None) -> Reference | None:
    from semcat.adapt import reference_stats

    return None if adapt is None else reference_stats(X, y, classes)


def _class_batches(y: np.ndarray, size: int | None, seed: int) -> list[np.ndarray]:
    """Row masks of batches holding ``size`` classes each (the classes shuffled); one batch when None."""
    if size is None:
        return [np.ones(len(y), bool)]
    names = np.random.default_rng(seed).permutation(sorted(set(y.tolist())))
    return [np.isin(y, names[i: i + size]) for i in range(0, len(names), size)]


def leave_one_group_out(X: np.ndarray, y: np.ndarray, groups: np.ndarray, classes: list[str], fit: Fit,
                        *, seed: int = 0, group_standardize: bool = False, extra: Sequence[np.ndarray] = (),
                        X_test: np.ndarray | None = None, adapt: str | None = None,
                        batch_classes: int | None = None) -> dict[str, Any]:
    """Train on all groups but one, test on it, for each group.

    ``extra``: features of augmented views (rows aligned with ``X``) added to the training rows;
    ``X_test``: features classified instead of ``X`` (another view of the same images);
    ``adapt``: test-time adaptation of each classified batch; ``batch_classes``: the held-out group
    is classified in batches of that many classes (an imbalanced folder) instead of one batch.
    Returns ``per_group`` ({group: metrics}) and ``pooled`` (metrics of every held-out prediction
    together, with per-class ``recall``). Needs at least two groups.
    """
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise ValueError(f"leave-one-group-out needs at least 2 groups; found {names} "
                         "(check --group-by: 'folder' or a regex with one capture group over the file name)")
    Xs, es, Xt = _prepare(X, groups, extra, X_test, group_standardize)
    per_group, truth, probs = {}, [], []
    for g in names:
        test = groups == g
        train_classes = sorted(set(y[~test].tolist()))
        if len(train_classes) < 2:
            raise ValueError(f"holding out group {g!r} leaves {train_classes} to train on; need 2 classes")
        predict = fit(Xs[~test], y[~test], classes, seed, extra=_extra(es, ~test, y))
        rows = np.flatnonzero(test)
        batches = [rows[b] for b in _class_batches(y[rows], batch_classes, seed)]
        ref = _reference(Xs[~test], y[~test], classes, adapt)
        proba = np.concatenate([_classify(predict, Xt[b], adapt, ref) for b in batches])
        order = np.concatenate(batches)
        per_group[g] = classification_metrics(y[order].astype(str), proba, classes)
        truth.append(y[order].astype(str))
        probs.append(proba)
    pooled = classification_metrics(np.concatenate(truth), np.concatenate(probs), classes)
    return {"per_group": per_group, "pooled": pooled}


def within_groups(X: np.ndarray, y: np.ndarray, groups: np.ndarray, classes: list[str], fit: Fit,
                  *, seed: int = 0, test_share: float = 0.5, group_standardize: bool = False,
                  extra: Sequence[np.ndarray] = (), X_test: np.ndarray | None = None,
                  adapt: str | None = None) -> dict[str, Any]:
    """Train and test inside each group (a random ``test_share`` of each class held out).

    The within-instrument protocol: pooled metrics of every group's test images.
    """
    rng = np.random.default_rng(seed)
    Xs, es, Xt = _prepare(X, groups, extra, X_test, group_standardize)
    truth, probs, per_group = [], [], {}
    for g in sorted(set(groups.tolist())):
        idx = np.flatnonzero(groups == g)
        test = np.zeros(len(idx), bool)
        for c in sorted(set(y[idx].tolist())):  # sorted: set order of str changes between processes
            members = np.flatnonzero(y[idx] == c)
            test[rng.permutation(members)[: int(round(test_share * len(members)))]] = True
        if len(set(y[idx[~test]].tolist())) < 2 or not test.any():
            continue
        predict = fit(Xs[idx[~test]], y[idx[~test]], classes, seed, extra=_extra(es, idx[~test], y))
        proba = _classify(predict, Xt[idx[test]], adapt, _reference(Xs[idx[~test]], y[idx[~test]], classes, adapt))
        per_group[g] = classification_metrics(y[idx[test]].astype(str), proba, classes)
        truth.append(y[idx[test]].astype(str))
        probs.append(proba)
    if not truth:
        raise ValueError("no group has enough images of 2 classes to train and test within it")
    return {"per_group": per_group, "pooled": classification_metrics(np.concatenate(truth), np.concatenate(probs), classes)}


def run_methods(data_dir: str | Path, group_by: str, methods: Sequence[str] = ("semcat", "plain"), *,
                spec: FeatureSpec | None = None, protocol: str = "groups", seed: int = 0,
                store: StoreChoice = "default", progress: bool = False) -> dict[str, dict[str, Any]]:
    """Each method's results on one folder: ``protocol`` is one of :data:`PROTOCOLS`.

    ``groups``: leave one group out; ``groups-2cls`` / ``groups-1cls``: the same, the held-out group
    classified in batches of 2 / 1 classes (what test-time adaptation meets in an imbalanced
    folder; a method without ``adapt`` gives the same predictions as ``groups``); ``within``.

    ``spec`` (resolved by the caller: a model's, or the command line's; default
    ``FeatureSpec.resolve()``) gives the backbones, precision and runtime; each method sets the
    view and data-bar crop. Features are extracted once per (view, data-bar crop) and cached, so
    methods sharing a variant share the extraction.
    """
    from semcat.featurespec import FeatureSpec

    base = spec if spec is not None else FeatureSpec.resolve()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    feats: dict[tuple[str, bool, float | None], GroupedFeatures] = {}
    targets: dict[bool, float | None] = {}

    def variant(view: str, crop: bool, factor: float | None = None) -> GroupedFeatures:
        """Features of ``view``; ``factor``: scale-normalised at that multiple of the folder's target."""
        if (view, crop, factor) not in feats:
            if factor is not None and crop not in targets:
                targets[crop] = folder_scale_nm(data_dir, base.backbones[0].input_size, crop)
            scale_nm = None if factor is None or targets[crop] is None else targets[crop] * factor
            variant_spec = replace(base, view=view, crop_databar=crop, scale_nm=scale_nm)
            feats[(view, crop, factor)] = grouped_features(data_dir, group_by, variant_spec, store=store, progress=progress)
        return feats[(view, crop, factor)]

    def augmented(m: Method, aug: str) -> list[GroupedFeatures]:
        if aug not in SCALE_AUGMENTATIONS:
            return [variant(aug, m.crop_databar, 1.0 if m.scale else None)]
        return [variant(m.view, m.crop_databar, f) for f in scale_variants(aug, 1.0 if m.scale else None)]

    out = {}
    for name in methods:
        m = METHODS[name]
        if m.finetune is not None:
            out[name] = _run_finetuned(data_dir, group_by, m, base, protocol, seed, store)
            continue
        f = variant(m.view, m.crop_databar, 1.0 if m.scale else None)
        test_scale = m.scale if m.test_scale is None else m.test_scale
        others = [_aligned(g, f) for aug in m.augment for g in augmented(m, aug)]
        others.append(_aligned(variant(m.test_view or m.view, m.crop_databar, 1.0 if test_scale else None), f))
        run = within_groups if protocol == "within" else partial(leave_one_group_out, batch_classes=PROTOCOLS[protocol])
        res = run(f.X, f.y, f.groups, f.classes, m.fit, seed=seed, group_standardize=m.group_standardize,
                  extra=others[:-1], X_test=others[-1] if m.test_view or test_scale != m.scale else None,
                  adapt=m.adapt)
        res["errors"] = f.errors
        res["ungrouped"] = f.ungrouped
        out[name] = res
    return out


def _run_finetuned(data_dir: str | Path, group_by: str, m: Method, base: FeatureSpec, protocol: str, seed: int,
                   store: StoreChoice) -> dict[str, Any]:
    """One fine-tuning method on one protocol: activations of the default view's readable files."""
    assert m.finetune is not None
    if len(base.backbones) != 1 or base.backbones[0].precision != "fp32":
        raise ValueError("fine-tuning needs one fp32 backbone")
    f = grouped_features(data_dir, group_by, replace(base, view=m.view, crop_databar=m.crop_databar), store=store)
    scale_nm = folder_scale_nm(data_dir, base.backbones[0].input_size, m.crop_databar) if m.scale else None
    X, errors = _activations(tuple(f.paths), base.backbones[0], m.crop_databar, m.finetune, seed, scale_nm)
    ok = np.isin(f.paths, [p for p, _ in errors], invert=True)
    fit = partial(m.fit, spec=base.backbones[0])
    run = within_groups if protocol == "within" else partial(leave_one_group_out, batch_classes=PROTOCOLS[protocol])
    res = run(X, f.y[ok], f.groups[ok], f.classes, fit, seed=seed)
    return {**res, "errors": f.errors + errors, "ungrouped": f.ungrouped}


_ACTIVATIONS: dict[tuple[Any, ...], tuple[np.ndarray, list[tuple[str, str]]]] = {}


def _activations(paths: tuple[str, ...], spec: BackboneSpec, crop_databar: bool, config: FinetuneConfig,
                 seed: int, scale_nm: float | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """:func:`semcat.finetune.file_activations`, the last set kept: fine-tuning methods run one
    after another on the same images share the frozen prefix's (slow) pass."""
    from semcat.finetune import file_activations

    key = (paths, spec.signature(), crop_databar, config.views, config.fixed, seed, scale_nm)
    if key not in _ACTIVATIONS:
        _ACTIVATIONS.clear()
        _ACTIVATIONS[key] = file_activations(list(paths), spec, crop_databar=crop_databar, views=config.views,
                                             seed=seed, scale_nm=scale_nm, fixed=config.fixed)
    return _ACTIVATIONS[key]


def folder_scale_nm(data_dir: str | Path, size: int, crop_databar: bool = True) -> float | None:
    """The ``auto`` physical scale (:func:`semcat.physical_scale.auto_scale_nm`) of a folder's images."""
    from semcat._io import iter_image_files
    from semcat.physical_scale import survey

    return survey(list(iter_image_files([data_dir])), size, crop_databar)[0]


def _aligned(other: GroupedFeatures, base: GroupedFeatures) -> np.ndarray:
    """``other``'s features in ``base``'s row order (the same files seen through another view)."""
    row = {p: i for i, p in enumerate(other.paths)}
    missing = [p for p in base.paths if p not in row]
    if missing:
        raise ValueError(f"{len(missing)} images readable in one view failed in another, e.g. {missing[0]!r}")
    return other.X[[row[p] for p in base.paths]]


def cross_group_markdown(results: dict[str, dict[str, Any]]) -> str:
    """Per-group and pooled accuracy per method, then pooled per-class recall (percent).

    Group and class names come from outside (folder names, file names, SEM metadata): each is one
    escaped line (:func:`semcat.commands._common.shown`) with ``|`` escaped, so a name cannot
    break the table or forge lines."""
    from semcat.commands._common import shown

    def cell(name: object) -> str:
        return shown(name).replace("|", "\\|")

    groups = sorted({g for r in results.values() for g in r["per_group"]})
    lines = ["| method | " + " | ".join(f"{cell(g)} (held out)" for g in groups) + " | pooled |",
             "|---|" + "---|" * (len(groups) + 1)]
    for name, r in results.items():
        cells = [f"{100 * r['per_group'][g]['accuracy']:.1f}" if g in r["per_group"] else "–" for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * r['pooled']['accuracy']:.1f} |")
    classes = [c for c in next(iter(results.values()))["pooled"]["classes"]
               if any(c in r["pooled"]["recall"] for r in results.values())]
    lines += ["", "| class (recall %) | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for c in classes:
        lines.append(f"| {cell(c)} | " + " | ".join(f"{100 * r['pooled']['recall'].get(c, float('nan')):.1f}"
                                               for r in results.values()) + " |")
    return "\n".join(lines) + "\n"


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` in percent of repeated draws."""
    s = run_stats(values)
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
