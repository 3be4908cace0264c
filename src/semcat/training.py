"""Train, evaluate and compare heads on labelled image folders (the paper's Tables 2 and 3).

By default (``protocol="crossfit"``) the head is fitted on every labelled image outside the
dataset's content-hash ``test`` split, with its L2 penalty chosen by k-fold cross-validation on
those images (``semcat.crossfit``), and reported on ``test``. ``protocol="val"`` is the paper's:
fit on ``train``, early-stop on ``val``, report on ``test``; it wastes the val images and, with a
small set, stops on a handful of them. ``compare`` repeats that over several runs
that differ in both the head seed and the split (a salted re-split), for several backbones and
preprocessing variants, and splits the time into feature extraction and head training.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from semcat import __version__
from semcat.adapt import reference_stats, reference_tensors
from semcat.crossfit import DEFAULT_FOLDS, fold_groups, fold_ids, select_weight_decay
from semcat.features import DEFAULT_VIEW, FeatureResult, StoreChoice
from semcat.featurespec import FeatureSpec
from semcat.head import SCALE_SHRINKAGE, SoftmaxHead
from semcat.metrics import classification_metrics, run_stats
from semcat.model import SemcatModel

__all__ = [
    "PROTOCOLS",
    "LabelledSet",
    "Variant",
    "compare",
    "evaluate_model",
    "labelled_set",
    "parse_variants",
    "train_on_dataset",
    "train_on_samples",
]

@dataclass
class LabelledSet:
    """Images with labels and splits, plus the files that could not be used."""

    paths: list[str]
    labels: list[str]
    splits: list[str]
    classes: list[str]
    errors: list[tuple[str, str]]
    root: str | None = None
    groups: list[str | None] | None = None
    """Sample group of each image with ``group_by`` (cross-validation folds keep groups together)."""


def labelled_set(data_dir: str | Path, *, group_by: str | None = None, split_salt: str = "") -> LabelledSet:
    """Scan a folder of category sub-folders (``semcat.dataset.scan_dataset``).

    A non-empty ``split_salt`` re-splits with the same fractions and grouping but another hash
    salt, so repeated runs see different train/val/test partitions.
    """
    from semcat.dataset import _split_keys, assign_split, scan_dataset

    ds = scan_dataset(data_dir, group_by=group_by)
    samples = list(ds.samples)
    if group_by is not None:
        _check_groups(samples, group_by)
    if split_salt:  # same split keys as the dataset (groups and duplicates stay together), new salt
        keys = _split_keys([(s.sha256, s.group) for s in samples], ds.near_links)
        splits = [assign_split(f"{split_salt}:{k}", ds.fractions) for k in keys]
    else:
        splits = [s.split for s in samples]
    return LabelledSet([str(s.path) for s in samples], [s.label for s in samples], splits,
                       list(ds.classes), [(str(p), str(e)) for p, e in ds.errors], str(data_dir),
                       [s.group for s in samples] if group_by is not None else None)


def _check_groups(samples: Sequence[Any], group_by: str) -> None:
    """A class whose images form one sample group cannot be both trained on and tested: say which."""
    groups: dict[str, set[str]] = {}
    for s in samples:
        groups.setdefault(s.label, set()).add(s.group if s.group is not None else s.sha256)
    for label, g in sorted(groups.items()):
        if len(g) == 1:
            raise ValueError(
                f"class {label!r}: all its images form one sample group ({next(iter(g))!r}) under --group-by "
                f"{group_by!r}, so it cannot be both trained on and tested; give its shots distinct sample "
                "names (fix the pattern) or run without --group-by.")


@dataclass(frozen=True)
class Variant:
    """A preprocessing variant of ``compare``: which view of the image, data-bar crop on/off."""

    view: str = DEFAULT_VIEW
    crop_databar: bool = True

    def __str__(self) -> str:
        return self.view + ("" if self.crop_databar else ":nocrop")


def parse_variants(text: str | Sequence[str] | None) -> list[Variant]:
    """``"center,full,tiles5,center:nocrop"`` → variants (None → the default variant only)."""
    if text is None:
        return [Variant()]
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        view, _, flag = item.partition(":")
        if flag not in ("", "nocrop", "crop"):
            raise ValueError(f"variant {item!r}: expected VIEW or VIEW:nocrop (e.g. center, full, tiles5, center:nocrop).")
        out.append(Variant(view, flag != "nocrop"))
    if not out:
        raise ValueError(f"no variants in {text!r}; expected e.g. 'center,full,tiles5,center:nocrop'.")
    return out


def _head(solver: str, seed: int, classes: list[str], **hyper: Any) -> SoftmaxHead:
    return SoftmaxHead(solver=solver, seed=seed, classes=classes,
                       **{"scale_shrinkage": SCALE_SHRINKAGE} | {k: v for k, v in hyper.items() if v is not None})


def _split_rows(splits: Sequence[str], name: str) -> np.ndarray:
    return np.array([i for i, s in enumerate(splits) if s == name], dtype=np.int64)


PROTOCOLS = ("crossfit", "val")


def train_on_samples(
    data: LabelledSet,
    spec: FeatureSpec | None = None,
    *,
    solver: str = "lbfgs",
    seed: int = 0,
    store: StoreChoice = "default",
    progress: bool = False,
    features: tuple[FeatureResult, float] | None = None,
    protocol: str = "crossfit",
    folds: int = DEFAULT_FOLDS,
    augment: Sequence[str] = (),
    **hyper: Any,
) -> tuple[SemcatModel, dict[str, Any]]:
    """Train a model on a ``LabelledSet`` and report metrics on its test split.

    ``spec`` says how images become features (backbone(s), view, data-bar crop, precision;
    default ``FeatureSpec.resolve(precision="auto")``); the model carries it.
    ``protocol="crossfit"`` (default): fit on train + val; without an explicit ``weight_decay``
    the penalty with the lowest out-of-fold log-loss over ``folds`` stratified folds is used, which
    keep each sample group (``data.groups``) or, without groups, each file-name series together
    (``semcat.crossfit.fold_groups``, as ``calibrate`` does). ``protocol="val"``: fit on train, early-stop on val.
    ``hyper`` passes head hyperparameters (weight_decay, lr, epochs, batch_size, class_weight).
    ``features`` = (result of ``spec.extract``, seconds) reuses features already extracted (``compare``).
    ``augment``: views of :data:`semcat.view_transforms.AUGMENTATIONS` whose features join the
    training rows (feature-space augmentation, of the model's view), or scale
    augmentations (``aug-noscale``, ``aug-scalejitter``: with ``spec.scale_nm``, any view); the penalty
    is still chosen on the original images, so no image's augmented copy sits in another fold.
    Returns the model (not yet saved) and a JSON-safe report.
    """
    spec = spec if spec is not None else FeatureSpec.resolve(precision="auto")
    aug_specs = _augment_specs(spec, augment)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}.")
    if features is None:
        t0 = time.perf_counter()
        res = spec.extract(data.paths, store=store, progress=progress)
        feat_s = time.perf_counter() - t0
    else:
        res, feat_s = features
    ok, X, errors = res.paths, res.features, res.errors
    row = {p: i for i, p in enumerate(ok)}
    keep = [i for i, p in enumerate(data.paths) if p in row]
    X = X[[row[data.paths[i]] for i in keep]]
    y = np.array([data.labels[i] for i in keep])
    splits = [data.splits[i] for i in keep]
    tr, va, te = (_split_rows(splits, s) for s in ("train", "val", "test"))
    if protocol == "crossfit":
        tr, va = np.sort(np.r_[tr, va]), np.zeros(0, np.int64)
    if len(tr) == 0:
        raise ValueError(
            f"no usable training images (found {len(data.paths)} images, {len(errors)} unreadable); "
            "expected a folder with one sub-folder per category holding images."
        )
    missing = sorted(set(data.classes) - set(y[tr].tolist()))
    if len(set(y[tr].tolist())) < 2:
        raise ValueError(f"training needs images of at least 2 categories in the train split; got {sorted(set(y[tr].tolist()))}.")
    t0 = time.perf_counter()
    cv: dict[str, Any] = {}
    if protocol == "crossfit" and hyper.get("weight_decay") is None:
        groups, warned, cv["grouping"] = fold_groups(
            [data.paths[keep[i]] for i in tr], y[tr].tolist(), None if data.groups is None else [data.groups[keep[i]] for i in tr])
        fold, cv["warnings"] = fold_ids(y[tr], groups, k=folds, seed=seed)
        cv["warnings"] = warned + cv["warnings"]
        wd, _, losses = select_weight_decay(
            X[tr], y[tr], fold, data.classes, lambda wd: _head(solver, seed, data.classes, **hyper | {"weight_decay": wd}))
        hyper = hyper | {"weight_decay": wd}
        cv.update(folds=int(fold.max()) + 1, log_loss={str(k): round(v, 4) for k, v in losses.items()})
    Xa, ya = _augmented_rows([data.paths[keep[i]] for i in tr], aug_specs, store, progress, X[tr], y[tr])
    head = _head(solver, seed, data.classes, **hyper)
    head.fit(Xa, ya, *((X[va], y[va]) if len(va) else ()))
    head_s = time.perf_counter() - t0

    def metrics(idx: np.ndarray) -> dict[str, Any] | None:
        return classification_metrics(y[idx], head.predict_proba(X[idx]), data.classes) if len(idx) else None

    report = {
        "dataset": data.root,
        "backbone": spec.name,
        "precision": spec.precision,
        "view": spec.view,
        "crop_databar": spec.crop_databar,
        "scale_nm": spec.scale_nm,
        "solver": solver,
        "seed": seed,
        "protocol": protocol,
        "weight_decay": float(head.weight_decay),
        "augment": list(augment),
        "training_rows": len(Xa),  # with augment: the images' rows and their augmented copies
        "weight_decay_cv": cv or None,
        "counts": {s: {c: int(np.sum(y[idx] == c)) for c in data.classes}
                   for s, idx in (("train", tr), ("val", va), ("test", te))},
        "classes_without_training_images": missing,
        "errors": [list(e) for e in errors] + [list(e) for e in data.errors],
        "features_computed": res.computed,
        "features_cached": res.cached,
        "time_features_s": round(feat_s, 3),
        "time_head_s": round(head_s, 3),
        "n_iter": int(head.n_iter_),
        "val_metrics": metrics(va),
        "test_metrics": metrics(te),
        "trained": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "semcat_version": __version__,
    }
    meta = {"training": {k: v for k, v in report.items() if k not in ("errors", "val_metrics")}}
    model = SemcatModel(spec, head, meta=meta,  # training statistics for `semcat classify --adapt`
                        extra_tensors=reference_tensors(reference_stats(X[tr], y[tr], data.classes)))
    return model, report


def _augment_specs(spec: FeatureSpec, augment: Sequence[str]) -> list[FeatureSpec]:
    """The feature specs of ``augment``'s training rows (checked before any extraction).

    Views of :data:`semcat.view_transforms.AUGMENTATIONS` are taken of the model's view (one of
    :data:`~semcat.view_transforms.AUGMENTED_BASES`); scale augmentations
    (:data:`semcat.physical_scale.SCALE_AUGMENTATIONS`) need ``spec.scale_nm`` and keep the view."""
    from dataclasses import replace

    from semcat.physical_scale import SCALE_AUGMENTATIONS, scale_variants
    from semcat.view_transforms import AUGMENTATIONS, AUGMENTED_BASES, augmented_view

    bad = [a for a in augment if a not in AUGMENTATIONS + SCALE_AUGMENTATIONS]
    if bad or (spec.view not in AUGMENTED_BASES and set(augment) - set(SCALE_AUGMENTATIONS)):
        raise ValueError(f"augment must name views of {', '.join(AUGMENTATIONS)} with view "
                         f"{' or '.join(map(repr, AUGMENTED_BASES))}, or {', '.join(SCALE_AUGMENTATIONS)} with any view; "
                         f"got {list(augment)} with view {spec.view!r}.")
    specs = [replace(spec, scale_nm=s) for aug in augment if aug in SCALE_AUGMENTATIONS
             for s in scale_variants(aug, spec.scale_nm)]
    return specs + [replace(spec, view=augmented_view(spec.view, aug)) for aug in augment if aug in AUGMENTATIONS]


def _augmented_rows(paths: list[str], specs: Sequence[FeatureSpec], store: StoreChoice, progress: bool,
                    X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training rows ``X``/``y`` (of ``paths``) plus the features of the same images under each of ``specs``."""
    rows, labels = [X], [y]
    for variant in specs:
        res = variant.extract(paths, store=store, progress=progress)
        index = {p: i for i, p in enumerate(res.paths)}
        have = [i for i, p in enumerate(paths) if str(Path(p)) in index]
        rows.append(res.features[[index[str(Path(paths[i]))] for i in have]])
        labels.append(y[have])
    return np.concatenate(rows), np.concatenate(labels)


def train_on_dataset(
    data_dir: str | Path,
    spec: FeatureSpec | None = None,
    *,
    group_by: str | None = None,
    split_salt: str = "",
    **kwargs: Any,
) -> tuple[SemcatModel, dict[str, Any]]:
    """Scan ``data_dir`` (category sub-folders) and ``train_on_samples`` on its splits."""
    return train_on_samples(labelled_set(data_dir, group_by=group_by, split_salt=split_salt), spec, **kwargs)


def evaluate_model(
    model: SemcatModel,
    data_dir: str | Path,
    *,
    split: str = "all",
    store: StoreChoice = "default",
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics of ``model`` on a labelled folder; categories the model does not know are excluded
    and named in ``unknown_classes`` (with their image counts), never an error."""
    if split not in ("all", "train", "val", "test"):
        raise ValueError(f"split must be one of all, train, val, test; got {split!r}.")
    data = labelled_set(data_dir)
    known = set(model.classes)
    unknown: dict[str, int] = {}
    paths, labels = [], []
    for p, lab, s in zip(data.paths, data.labels, data.splits):
        if split != "all" and s != split:
            continue
        if lab not in known:
            unknown[lab] = unknown.get(lab, 0) + 1
            continue
        paths.append(p)
        labels.append(lab)
    res = model.spec.extract(paths, store=store, progress=progress)
    label_of = dict(zip(paths, labels))
    metrics = classification_metrics([label_of[p] for p in res.paths], model.predict_features(res.features)
                                     if len(res.paths) else np.zeros((0, len(model.classes)), np.float32), model.classes)
    metrics.update({
        "model_id": model.model_id,
        "dataset": str(data_dir),
        "split": split,
        "unknown_classes": dict(sorted(unknown.items())),
        "errors": [list(e) for e in res.errors] + [list(e) for e in data.errors],
    })
    return metrics


def compare(
    data_dir: str | Path,
    backbones: Sequence[str],
    runs: int = 5,
    variants: Sequence[Variant] | None = None,
    *,
    solver: str = "lbfgs",
    group_by: str | None = None,
    seed: int = 0,
    store: StoreChoice = "default",
    progress: bool = False,
    **hyper: Any,
) -> list[dict[str, Any]]:
    """The paper's Table 3: test accuracy mean ± std over ``runs`` and time per stage.

    Run ``r`` trains with head seed ``seed + r`` on a split salted with ``r`` (run 0 uses the
    dataset's own split). Features are extracted once per backbone and variant (``time_features_s``,
    with how many came from the cache); ``time_head_s`` is the mean head-training time per run.
    Runs whose split has no test image are left out of the accuracy (``runs_tested`` counts the
    others); with none at all it raises ``ValueError`` rather than report an accuracy over nothing.
    """
    if int(runs) < 1:
        raise ValueError(f"runs must be >= 1; got {runs}.")
    variants = list(variants or [Variant()])
    splits = [labelled_set(data_dir, group_by=group_by, split_salt=f"run{r}" if r else "") for r in range(int(runs))]
    base = splits[0]
    rows = []
    for backbone in backbones:
        for var in variants:
            spec = FeatureSpec.resolve(backbone, view=var.view, crop_databar=var.crop_databar)
            t0 = time.perf_counter()
            res = spec.extract(base.paths, store=store, progress=progress)
            feat_s = time.perf_counter() - t0
            accs, heads = [], []
            for r, data in enumerate(splits):
                _, rep = train_on_samples(data, spec, solver=solver, seed=seed + r, features=(res, feat_s), **hyper)
                if rep["test_metrics"]:
                    accs.append(rep["test_metrics"]["accuracy"])
                heads.append(rep["time_head_s"])
            if not accs:
                raise ValueError(
                    f"no test images in any of the {runs} runs' splits of {data_dir} ({len(res.paths)} images"
                    + (f", grouped by {group_by!r}: too few sample groups to fill a test split" if group_by else "")
                    + "); add images or samples, or run without --group-by.")
            acc = run_stats(accs)
            rows.append({
                "backbone": backbone, "view": var.view, "crop_databar": var.crop_databar, "runs": int(runs),
                "accuracy_mean": acc["mean"], "accuracy_std": acc["std"], "runs_tested": len(accs),
                "n_images": len(res.paths), "n_test": sum(s == "test" for s in base.splits),
                "time_features_s": round(feat_s, 3), "features_computed": res.computed,
                "features_cached": res.cached, "time_head_s": round(float(np.mean(heads)), 3),
            })
    return rows


def compare_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a Markdown table (accuracy as mean ± std in percent)."""
    lines = [
        "| backbone | view | data-bar crop | test accuracy (%) | runs | features (s) | head (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['view']} | {'on' if r['crop_databar'] else 'off'} | "
            f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} | {_runs(r)} | "
            f"{r['time_features_s']:.1f} ({r['features_cached']} cached) | {r['time_head_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _runs(row: dict[str, Any]) -> str:
    """Runs behind an accuracy: ``3/5`` when some runs' splits had no test image."""
    tested = row.get("runs_tested", row["runs"])
    return str(row["runs"]) if tested == row["runs"] else f"{tested}/{row['runs']}"
