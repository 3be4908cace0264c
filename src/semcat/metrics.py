"""Evaluation as the paper reports it: accuracy, precision, recall@1, top-2, confusion (Table 2).

Definitions (Modarres et al. 2017, "Evaluation"): test accuracy is the fraction of correct top-1
guesses; precision is "the fraction of retrieved instances that are relevant" and recall@1 "the
fraction of relevant instances that are retrieved" by the top-1 prediction, both per class and
macro-averaged over the classes present in the ground truth. A class never predicted has
precision 0 (scikit-learn's ``zero_division=0``). The confusion matrix has one row per true class
(percent of that class, the paper's Table 2 layout) plus the row count N.
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semcat._io import atomic_write, atomic_write_text
from semcat._validation import check_consistent_length, check_features, check_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["classification_metrics", "confusion_counts", "confusion_figure", "run_stats", "summarize_runs",
           "write_metrics", "plot_confusion"]


def confusion_counts(true: object, predicted: object, k: int) -> np.ndarray:
    """Confusion counts (k, k) of class indices: rows = true class, columns = predicted class."""
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (np.asarray(true, np.int64), np.asarray(predicted, np.int64)), 1)
    return conf


def classification_metrics(y_true: object, proba: object, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of probabilities ``proba`` (n, k), columns in ``classes`` order, against labels.

    Returns a JSON-safe dict: ``n``, ``accuracy``, ``top2_accuracy``, ``precision`` and
    ``recall`` (per class), ``macro_precision``, ``recall_at_1`` (macro recall of the top-1
    prediction), ``support``, ``confusion`` (counts, rows = true class) and ``confusion_percent``
    (each row as percent of its true class).
    """
    classes = [str(c) for c in classes]
    y = check_labels(y_true, name="y_true").astype(str)
    P = check_features(proba, name="proba", n_features=len(classes)) if len(y) else np.zeros((0, len(classes)), np.float32)
    check_consistent_length(y_true=y, proba=P)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(y.tolist()) - set(index))
    if unknown:
        raise ValueError(
            f"y_true contains labels the classifier does not know: {unknown}; known: {classes}. "
            "Exclude those samples (semcat evaluate does this and names them)."
        )
    k = len(classes)
    yi = np.array([index[v] for v in y.tolist()], dtype=np.int64)
    order = np.argsort(-P, axis=1, kind="stable")
    pred = order[:, 0] if len(yi) else np.zeros(0, np.int64)
    conf = confusion_counts(yi, pred, k)
    support = conf.sum(axis=1)
    predicted = conf.sum(axis=0)
    diag = np.diag(conf)
    present = support > 0
    precision = np.where(predicted > 0, diag / np.maximum(predicted, 1), 0.0)
    recall = np.where(present, diag / np.maximum(support, 1), 0.0)
    percent = np.where(present[:, None], 100.0 * conf / np.maximum(support, 1)[:, None], 0.0)
    top2 = float(np.mean((order[:, :2] == yi[:, None]).any(axis=1))) if len(yi) else float("nan")
    return {
        "n": int(len(yi)),
        "classes": classes,
        "accuracy": float(diag.sum() / len(yi)) if len(yi) else float("nan"),
        "top2_accuracy": top2,
        "macro_precision": float(precision[present].mean()) if present.any() else float("nan"),
        "recall_at_1": float(recall[present].mean()) if present.any() else float("nan"),
        "precision": {c: float(precision[i]) for i, c in enumerate(classes) if present[i]},
        "recall": {c: float(recall[i]) for i, c in enumerate(classes) if present[i]},
        "support": {c: int(support[i]) for i, c in enumerate(classes)},
        "confusion": conf.tolist(),
        "confusion_percent": np.round(percent, 2).tolist(),
    }


def run_stats(values: Iterable[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single run) of repeated runs."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def summarize_runs(runs: Sequence[dict[str, Any]], keys: Sequence[str] = ("accuracy", "macro_precision", "recall_at_1", "top2_accuracy")) -> dict[str, dict[str, float]]:
    """Mean ± std of each scalar metric over repeated runs (different seeds / splits)."""
    return {k: run_stats(r[k] for r in runs if k in r and not math.isnan(r[k])) for k in keys}


def confusion_table(metrics: dict[str, Any]) -> str:
    """The Table 2 layout as CSV text: true class, percent per predicted class, N."""
    classes = metrics["classes"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true_class", *classes, "N"])
    for c, row, counts in zip(classes, metrics["confusion_percent"], metrics["confusion"]):
        w.writerow([c, *(f"{p:.1f}" for p in row), sum(counts)])
    return buf.getvalue()


def write_metrics(metrics: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, confusion.csv (percent + N), confusion_counts.csv and confusion.png.

    Every file is written atomically; returns the paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "metrics.json",
        "csv": out / "confusion.csv",
        "counts_csv": out / "confusion_counts.csv",
        "png": out / "confusion.png",
    }
    atomic_write_text(paths["json"], json.dumps(metrics, indent=2, allow_nan=True) + "\n")
    atomic_write_text(paths["csv"], confusion_table(metrics))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true_class", *metrics["classes"]])
    for c, row in zip(metrics["classes"], metrics["confusion"]):
        w.writerow([c, *row])
    atomic_write_text(paths["counts_csv"], buf.getvalue())
    plot_confusion(metrics, paths["png"])
    return paths


def confusion_figure(counts: object, classes: Sequence[str], *, title: str | None = None) -> Figure:
    """Heatmap of confusion ``counts`` (rows = true class) as percent of each true class, annotated,
    with each row's N; the one drawing behind ``confusion.png`` and the HTML report's figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m = np.asarray(counts, dtype=float)
    n = m.sum(axis=1)
    pct = 100 * m / np.maximum(n, 1)[:, None]
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.9 + 0.6 * k), dpi=110)
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [f"{c} (N={int(s)})" for c, s in zip(classes, n)], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(k):
        for j in range(k):
            if pct[i, j] > 0:
                ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if pct[i, j] > 55 else "black")
    ax.set_title(title or "Confusion matrix, % of true class", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    fig.tight_layout()
    return fig


def plot_confusion(metrics: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """``confusion.png`` of :func:`classification_metrics` output, titled with the accuracy."""
    import matplotlib.pyplot as plt

    acc = metrics.get("accuracy")
    fig = confusion_figure(metrics["confusion"], metrics["classes"], title=title or (
        f"Confusion matrix, % of true class (accuracy {100 * acc:.1f}%, N={metrics['n']})"))
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path
