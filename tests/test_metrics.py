"""Metrics on tiny hand-checkable cases, and the files write_metrics produces."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from semcat.metrics import classification_metrics, run_stats, summarize_runs, write_metrics

CLASSES = ["a", "b", "c"]
# rows: true a, a, a, b, b, c ; top-1 predictions: a, a, b, b, a, a ; second choices noted
PROBA = np.array([
    [0.7, 0.2, 0.1],   # a -> a
    [0.6, 0.3, 0.1],   # a -> a
    [0.3, 0.6, 0.1],   # a -> b (top-2 has a)
    [0.1, 0.8, 0.1],   # b -> b
    [0.5, 0.4, 0.1],   # b -> a (top-2 has b)
    [0.5, 0.3, 0.2],   # c -> a (top-2 misses c)
], dtype=np.float32)
TRUE = ["a", "a", "a", "b", "b", "c"]


def test_hand_computed_values() -> None:
    m = classification_metrics(TRUE, PROBA, CLASSES)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["top2_accuracy"] == pytest.approx(5 / 6)
    # predicted a: 4 rows, 2 right; predicted b: 2 rows, 1 right; c never predicted -> 0
    assert m["precision"] == pytest.approx({"a": 2 / 4, "b": 1 / 2, "c": 0.0})
    assert m["macro_precision"] == pytest.approx((2 / 4 + 1 / 2 + 0) / 3)
    # recall@1 per class: a 2/3, b 1/2, c 0/1, macro-averaged
    assert m["recall"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 0.0})
    assert m["recall_at_1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert m["confusion_percent"][0] == pytest.approx([66.67, 33.33, 0.0])
    assert m["support"] == {"a": 3, "b": 2, "c": 1}
    json.dumps(m)  # JSON-safe


def test_classes_absent_from_truth_are_left_out_of_macro_averages() -> None:
    m = classification_metrics(["a", "b"], np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]]), CLASSES)
    assert m["accuracy"] == 1.0 and m["macro_precision"] == 1.0 and m["recall_at_1"] == 1.0
    assert "c" not in m["recall"] and m["support"]["c"] == 0
    assert m["confusion_percent"][2] == [0.0, 0.0, 0.0]


def test_unknown_labels_and_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"does not know: \['z'\]"):
        classification_metrics(["z"], np.array([[1.0, 0.0, 0.0]]), CLASSES)
    with pytest.raises(ValueError, match="2 wide"):
        classification_metrics(["a"], np.array([[1.0, 0.0]]), CLASSES)
    with pytest.raises(ValueError, match="same number of samples"):
        classification_metrics(["a", "b"], np.array([[1.0, 0.0, 0.0]]), CLASSES)


def test_run_stats_mean_and_sample_std() -> None:
    s = run_stats([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert run_stats([0.5])["std"] == 0.0
    runs = [classification_metrics(TRUE, PROBA, CLASSES), classification_metrics(["a"], PROBA[:1], CLASSES)]
    summary = summarize_runs(runs)
    assert summary["accuracy"]["mean"] == pytest.approx(0.75)


def test_write_metrics_files(tmp_path: Path) -> None:
    m = classification_metrics(TRUE, PROBA, CLASSES)
    paths = write_metrics(m, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["accuracy"] == pytest.approx(0.5)
    rows = list(csv.reader(paths["csv"].open()))
    assert rows[0] == ["true_class", "a", "b", "c", "N"]
    assert rows[1] == ["a", "66.7", "33.3", "0.0", "3"]
    counts = list(csv.reader(paths["counts_csv"].open()))
    assert counts[3] == ["c", "1", "0", "0"]
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
