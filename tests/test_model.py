"""The .semcat artifact: round trip, safe loading with clear errors, predictions on real images."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from semcat.features import DEFAULT_VIEW
from semcat.featurespec import FeatureSpec
from semcat import CATEGORIES
from semcat.errors import ModelFileError
from semcat.head import SoftmaxHead
from semcat.model import Prediction, SemcatModel, load_model, row_columns


def _model(width: int = 1280, backbone: str = "efficientnet_lite0") -> SemcatModel:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, width)).astype(np.float32)
    y = np.array(CATEGORIES)[np.arange(60) % 10]
    head = SoftmaxHead(classes=list(CATEGORIES), epochs=5).fit(X, y)
    return SemcatModel(FeatureSpec.resolve(backbone), head, meta={"training": {"note": "test"}},
                       extra_tensors={"ood.params": np.arange(3, dtype=np.float64)})


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    m = _model()
    m.calibration = {"temperature": 2.0, "t_auto": 0.9, "t_suggest": 0.4}
    path = m.save(tmp_path / "m.semcat")
    back = load_model(path)
    assert back.classes == list(CATEGORIES) and back.view == DEFAULT_VIEW == "clean" and back.crop_databar
    assert back.backbone.name == "efficientnet_lite0" and back.meta["training"] == {"note": "test"}
    assert back.calibration == m.calibration and back.model_id == m.model_id
    np.testing.assert_array_equal(back.extra_tensors["ood.params"], [0.0, 1.0, 2.0])
    X = np.random.default_rng(1).normal(size=(4, 1280)).astype(np.float32)
    np.testing.assert_allclose(back.predict_features(X), m.predict_features(X), rtol=1e-6)
    # temperature 2 flattens the probabilities
    raw = SemcatModel(FeatureSpec.resolve(m.backbone_name), m.head).predict_features(X)
    assert back.predict_features(X).max() < raw.max()
    assert b"pickle" not in path.read_bytes()[:64]


def test_model_id_changes_with_calibration() -> None:
    m = _model()
    before = m.model_id
    m.calibration = {"temperature": 1.5}
    assert m.model_id != before


def test_width_mismatch_names_both_backbones() -> None:
    m = _model()
    with pytest.raises(ValueError, match=r"2048 wide \(from [^)]*resnet50\).*efficientnet_lite0.*semcat features"):
        m.predict_features(np.zeros((1, 2048), np.float32))


@pytest.mark.parametrize("problem", ["truncated", "garbage", "png", "not_semcat", "newer", "backbone"])
def test_bad_files_raise_model_file_error(tmp_path: Path, problem: str) -> None:
    good = _model().to_bytes()
    path = tmp_path / "bad.semcat"
    if problem == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif problem == "garbage":
        path.write_bytes(good[:8] + b"\x00{not json" + good[18:])
    elif problem == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    else:
        from safetensors.numpy import load, save

        n = struct.unpack("<Q", good[:8])[0]
        meta = json.loads(json.loads(good[8:8 + n])["__metadata__"]["semcat"])
        if problem == "newer":
            meta["format_version"] = 99
        if problem == "backbone":  # a consistent file (digest recomputed) of a backbone not installed here
            from semcat.model_check import content_digest

            meta["backbones"][0]["name"] = meta["backbone"] = "no_such_backbone"
            meta["digest"] = content_digest({k: v for k, v in meta.items() if k != "digest"}, load(good))
        md = {} if problem == "not_semcat" else {"semcat": json.dumps(meta)}
        path.write_bytes(save(load(good), metadata=md))
    expected = {"truncated": "corrupted", "garbage": "corrupted", "png": "not a semcat model",
                "not_semcat": "not a semcat model", "newer": "upgrade semcat", "backbone": "no_such_backbone"}
    with pytest.raises(ModelFileError, match=expected[problem]):
        load_model(path)


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="semcat train"):
        load_model(tmp_path / "nope.semcat")


@pytest.mark.slow
def test_predict_on_images_with_errors_in_place(small_dataset: Path, tmp_path: Path) -> None:
    from semcat.engines.local import classify
    from semcat.training import train_on_dataset

    model, report = train_on_dataset(small_dataset, FeatureSpec.resolve("efficientnet_lite0"))
    assert report["test_metrics"] is not None and report["counts"]["train"]
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    good = sorted((small_dataset / "Nanowires").glob("*.tif"))[:2]
    preds = model.predict([good[0], bad, good[1]], top_k=2, with_features=True)
    assert [p.path for p in preds] == [str(good[0]), str(bad), str(good[1])]
    assert preds[1].error and preds[1].top == [] and preds[1].sha256 is None
    ok = preds[0]
    assert isinstance(ok, Prediction) and len(ok.top) == 2 and ok.top[0][1] >= ok.top[1][1]
    assert ok.decision in ("auto", "suggest", "manual") and ok.features.shape == (1280,)
    assert set(ok.to_row(2)) == set(row_columns(2)) and "features" not in ok.to_dict()
    json.dumps(ok.to_dict())
    streamed = list(classify(model, [good[0].parent], chunk_size=4))
    assert len(streamed) == len(list(good[0].parent.glob("*.tif")))
    again = model.predict([streamed[0].path])[0].top
    assert [c for c, _ in streamed[0].top] == [c for c, _ in again]
    assert [p for _, p in streamed[0].top] == pytest.approx([p for _, p in again], abs=1e-5)
