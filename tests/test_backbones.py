"""Backbone registry, embedded weights and runtimes: real models, real OpenVINO, pinned numbers."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from skimage import color, data

from semcat.featurespec import FeatureSpec
from semcat.backbones import (
    WeightsError,
    UnknownBackboneError,
    build_model,
    create_timm_model,
    get_backbone,
    list_backbones,
)
from semcat.features import preprocess
from semcat.runtime import FAITHFUL_COSINE, OpenVINORuntime, TorchRuntime, load_runtime

LITE = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
SMALL_TIMM = "mobilenetv3_small_050"  # any timm architecture; small so tests stay fast


@pytest.fixture(scope="module")
def lite0():
    return get_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_classifier(lite0):
    return create_timm_model(lite0)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _constructed_image() -> np.ndarray:
    """Fixed, RNG-free test card: a sine/cosine texture on a checkerboard, 300x400."""
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    return (0.5 + 0.25 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + 0.2 * ((xx // 40 + yy // 40) % 2)).astype(np.float32)


# --- registry --------------------------------------------------------------------------------

def test_lite_specs_follow_the_package_and_timm_cfg() -> None:
    for name, size in LITE.items():
        spec = get_backbone(name)
        assert spec.input_size == size and spec.feature_dim == 1280
        assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)  # TF-Lite (x-127)/128
        assert spec.weights.startswith("embedded:") and "openvino" in spec.runtimes
    assert list_backbones("efficientnet_lite*") == list(LITE)
    assert "inception_v3" in list_backbones()


@pytest.mark.slow
def test_registered_timm_specs_have_the_right_feature_width() -> None:
    from semcat.backbones import _pooled_width

    for name in list_backbones():
        spec = get_backbone(name)
        assert _pooled_width(spec.timm_name, spec.input_size) == spec.feature_dim, name


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownBackboneError, match="efficientnet_lite0") as e:
        get_backbone("efficientnet_lite")
    assert "semcat backbones" in str(e.value)


def test_any_timm_name_with_explicit_random_weights_is_reproducible() -> None:
    spec = get_backbone(SMALL_TIMM, weights="random")
    x = torch.from_numpy(preprocess(_constructed_image(), spec))
    with torch.inference_mode():
        a, b = build_model(spec)(x), build_model(spec)(x)
    assert a.shape == (1, spec.feature_dim)
    assert torch.equal(a, b)  # seeded: cache keys for "random" stay valid


def test_hub_weights_unavailable_says_how_to_supply_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="--weights PATH"):
        build_model(get_backbone(SMALL_TIMM))


def test_local_checkpoint_loads_and_wrong_one_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    ref = create_timm_model(get_backbone(SMALL_TIMM, weights="random"))
    with torch.random.fork_rng():
        torch.manual_seed(7)
        for p in ref.parameters():
            p.data.normal_(0, 0.05)
    ckpt = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(ckpt))
    spec = get_backbone(SMALL_TIMM, weights=str(ckpt))
    assert spec.weights.startswith("file:") and spec.weights_id.startswith("file:")
    x = torch.from_numpy(preprocess(_constructed_image(), spec))
    with torch.inference_mode():
        assert torch.allclose(create_timm_model(spec)(x), ref(x), atol=1e-6)

    other = tmp_path / "lite0.pth"
    torch.save(create_timm_model(get_backbone("efficientnet_lite0")).state_dict(), other)
    with pytest.raises(WeightsError, match="another architecture"):
        create_timm_model(get_backbone(SMALL_TIMM, weights=f"file:{other}"))
    with pytest.raises(WeightsError, match="does not exist"):
        get_backbone(SMALL_TIMM, weights=str(tmp_path / "missing.pth"))


# --- the embedded weights are the real ones ----------------------------------------------------

@pytest.mark.parametrize("name", list(LITE))
def test_embedded_weights_reproduce_the_original_model(name: str) -> None:
    """"Original" = the model class the weight packages document: ``efficientnet_lite_pytorch``
    ``EfficientNet.from_pretrained('efficientnet-liteN', weights_path=...)`` (ML Illustrated's
    lukemelas-style port that produced the .pth files). Same weights file, same input → the same
    ImageNet logits from timm's ``tf_efficientnet_liteN`` with our in-order loading."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from semcat.backbones import embedded_weights_path

    spec = get_backbone(name)
    ref = ref_pkg.EfficientNet.from_pretrained(
        name.replace("_", "-"), weights_path=embedded_weights_path(spec.weights)).eval()
    ours = create_timm_model(spec)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, LITE[name], LITE[name])).astype(np.float32))
    with torch.inference_mode():
        a, b = ref(x), ours(x)
    assert a.abs().max() > 1  # real logits, not a degenerate model
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def _imagenet_input(rgb: np.ndarray, spec) -> np.ndarray:
    """The whole photo resized to S×S (area), normalised with the spec's mean/std: NCHW float32."""
    import cv2

    x = cv2.resize(rgb, (spec.input_size, spec.input_size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    x = (x - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
@pytest.mark.parametrize(("sample", "label"), [("chelsea", 285), ("coffee", 967)])
def test_imagenet_samples_get_their_class(lite0, lite0_classifier, runtime: str, sample: str, label: int) -> None:
    """Egyptian cat (285) and espresso (967): features from each runtime → the ImageNet head."""
    rgb = getattr(data, sample)()
    rt = load_runtime(lite0, runtime)
    head = lite0_classifier.get_classifier()
    for x in (_imagenet_input(rgb, lite0), preprocess(color.rgb2gray(rgb).astype(np.float32), lite0, view="full")):
        with torch.inference_mode():
            logits = head(torch.from_numpy(rt(x)))
        assert int(logits.argmax()) == label


# --- runtimes ----------------------------------------------------------------------------------

def test_openvino_matches_torch_fp32(lite0) -> None:
    images = [_constructed_image(), color.rgb2gray(data.chelsea()).astype(np.float32), data.camera() / 255.0]
    x = np.concatenate([preprocess(im, lite0, view="tiles5") for im in images])
    ov, pt = OpenVINORuntime(lite0), TorchRuntime(lite0, device="cpu")
    a, b = ov(x), pt(x)
    assert _cosine(a, b).min() >= FAITHFUL_COSINE
    assert ov.images == pt.images == len(x)
    assert load_runtime(lite0, "auto").name in ("openvino", "torch")


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="a CUDA machine uses the torch runtime")
def test_openvino_extraction_and_classification_do_not_import_torch(lite0, tmp_path) -> None:
    """With the IR converted, extracting and classifying never load torch (~480 MiB of CUDA
    libraries): peak memory of a 2,000-image run falls from ~880 to ~410 MiB (benchmarks/features.py)."""
    from semcat.head import SoftmaxHead
    from semcat.model import SemcatModel
    from semcat.runtime import ensure_ir
    from semcat.synth import write_dataset

    ensure_ir(lite0)  # conversion needs torch; this test's process already has it
    write_dataset(tmp_path / "imgs", per_class=1, size=96, seed=3)
    rng = np.random.default_rng(0)
    head = SoftmaxHead().fit(rng.random((20, lite0.feature_dim), np.float32), ["a", "b"] * 10)
    SemcatModel(FeatureSpec.resolve(lite0.name), head).save(tmp_path / "m.semcat")
    code = ("import sys; from semcat.features import extract_features; "
            "from semcat.engines.local import classify; "
            f"r = extract_features({str(tmp_path / 'imgs')!r}, store=None, progress=False); "
            f"p = list(classify({str(tmp_path / 'm.semcat')!r}, [{str(tmp_path / 'imgs')!r}], store=None)); "
            "print(len(r.paths), sum(x.error is None for x in p), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout.split()
    assert out == ["10", "10", "False"]


def test_runtime_refuses_wrong_input_shape(lite0) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, 224, 224\)"):
        load_runtime(lite0, "torch")(np.zeros((1, 3, 200, 200), np.float32))
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_runtime(lite0, "tensorrt")


GOLDEN_PREPROCESS = [0.576305, 0.720838, 0.841105, 0.925755, 0.965549, 0.963722, 0.920379, 0.832383]
GOLDEN_FEATURES = [0.0129, 0.0, 0.49068, 0.0, 0.0, 0.0, 0.0, 0.40451, 0.0, 0.0, 0.0, 0.0, 0.0, 0.07904, 0.0, 0.0]
GOLDEN_NORM = 17.21285


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_golden_features(lite0, runtime: str) -> None:
    """Fixed constructed image → stored values: preprocessing at 1e-5, features at 2e-4 (abs)."""
    x = preprocess(_constructed_image(), lite0, view="full")
    np.testing.assert_allclose(x[0, 0, 100, 100:108], GOLDEN_PREPROCESS, atol=1e-5)
    f = load_runtime(lite0, runtime)(x)[0]
    np.testing.assert_allclose(f[:16], GOLDEN_FEATURES, atol=2e-4)
    assert abs(float(np.linalg.norm(f)) - GOLDEN_NORM) < 1e-3
