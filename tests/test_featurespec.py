"""FeatureSpec: resolved once, carried by the model, one ``extract`` call for every stage (issue 19)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semcat.backbones import DEFAULT_BACKBONE, get_backbone
from semcat.features import DEFAULT_VIEW, FeatureStore, extract_files, feature_key, key_signature
from semcat.featurespec import FeatureSpec
from semcat.head import SoftmaxHead
from semcat.model import SemcatModel, load_model


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from semcat.synth import write_dataset

    root = tmp_path_factory.mktemp("spec_images")
    write_dataset(root, per_class=1, size=64, seed=5, categories=["Nanowires", "Particles", "Powder"])
    files = sorted(str(p) for p in root.rglob("*.tif"))
    broken = root / "broken.tif"
    broken.write_bytes(b"II*\x00not a tiff")
    return [files[0], str(broken), *files[1:]]


def test_resolve_derives_keys_signature_and_width_from_the_parts() -> None:
    spec = FeatureSpec.resolve(f"{DEFAULT_BACKBONE} + efficientnet_lite1", view="full", crop_databar=False)
    lite0, lite1 = get_backbone(DEFAULT_BACKBONE), get_backbone("efficientnet_lite1")
    assert spec.name == f"{DEFAULT_BACKBONE}+efficientnet_lite1" and spec.backbones == (lite0, lite1)
    assert spec.width == lite0.feature_dim + lite1.feature_dim == 1280 + 1280
    assert spec.keys == [feature_key(b, crop_databar=False, view="full") for b in (lite0, lite1)]
    assert spec.key == "+".join(spec.keys)
    assert spec.signature == " + ".join(key_signature(b, False, "full") for b in (lite0, lite1))
    default = FeatureSpec.resolve()
    assert (default.view, default.crop_databar, default.precision) == (DEFAULT_VIEW, True, "fp32")
    assert default.keys == [feature_key(DEFAULT_BACKBONE)]  # existing caches keep their key


@pytest.mark.parametrize(("backbone", "kwargs", "error", "match"), [
    ("efficientnet_lite0+", {}, ValueError, "empty part"),
    ("efficientnet_lite0", {"view": "middle"}, ValueError, "full, center, tiles5, plain"),
    ("efficientnet_lite0+efficientnet_lite1", {"weights": ["random"]}, ValueError, "1 weights for the 2 parts"),
])
def test_resolve_refuses_bad_specs_with_a_reason(backbone, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        FeatureSpec.resolve(backbone, **kwargs)


def test_spec_is_frozen_and_at_precision_returns_a_new_one() -> None:
    spec = FeatureSpec.resolve()
    with pytest.raises(AttributeError):
        spec.view = "full"  # type: ignore[misc]
    int8 = spec.at_precision("int8")
    assert int8.precision == "int8" and spec.precision == "fp32"
    assert all(b.precision == "int8" for b in int8.backbones) and int8.backbones[0].signature() != spec.backbones[0].signature()


@pytest.mark.slow
def test_extract_concatenates_parts_in_input_order_and_reports_bad_files(images: list[str], tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    one = FeatureSpec.resolve().extract(images, store=store)
    assert one.paths == [images[0], *images[2:]] and one.errors[0][0] == images[1]
    assert one.features.shape == (3, 1280) and (one.computed, one.cached) == (3, 0)
    direct = extract_files(images, DEFAULT_BACKBONE, store=None, progress=False)
    np.testing.assert_allclose(one.features, direct.features, rtol=0, atol=1e-6)
    both = FeatureSpec.resolve(f"{DEFAULT_BACKBONE}+{DEFAULT_BACKBONE}").extract(images, store=store)
    assert both.paths == one.paths and both.hashes == one.hashes and both.cached == 6  # cached once
    np.testing.assert_array_equal(both.features, np.hstack([one.features, one.features]))
    assert [p for p, _ in both.errors] == [images[1]]


def test_file_input_is_what_extract_feeds_the_network(images: list[str]) -> None:
    """int8 calibration takes its inputs from ``file_input``: the network run on them gives
    ``extract``'s features (the same decode, crop, view, resize and mean/std)."""
    from semcat.errors import ImageReadError
    from semcat.features import file_input
    from semcat.runtime import load_runtime

    spec = FeatureSpec.resolve(view="tiles5")  # 5 views averaged: the layout must match as well
    want = spec.extract([images[0]], store=None).features[0]
    backbone = spec.backbones[0]
    x = file_input(Path(images[0]).read_bytes(), images[0], backbone, view=spec.view)
    assert x.shape == (5, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(load_runtime(backbone, spec.runtime)(x).mean(0), want, rtol=0, atol=1e-5)
    with pytest.raises(ImageReadError):
        file_input(Path(images[1]).read_bytes(), images[1], backbone)


def test_the_model_carries_its_spec_through_save_and_load(tmp_path: Path) -> None:
    spec = FeatureSpec.resolve(view="tiles5", crop_databar=False)
    rng = np.random.default_rng(0)
    head = SoftmaxHead().fit(rng.normal(size=(12, spec.width)).astype(np.float32), ["a", "b", "c"] * 4)
    model = SemcatModel(spec, head)
    assert model.spec == model.trained_spec == spec and model.feature_keys == spec.keys
    back = load_model(model.save(tmp_path / "m.semcat"))
    assert back.spec == spec and back.model_id == model.model_id
    with pytest.raises(ValueError, match="1280-wide features but backbone efficientnet_lite0\\+efficientnet_lite0"):
        SemcatModel(FeatureSpec.resolve("efficientnet_lite0+efficientnet_lite0"), head)
    with pytest.raises(TypeError, match="FeatureSpec"):
        SemcatModel("efficientnet_lite0", head)  # type: ignore[arg-type]
