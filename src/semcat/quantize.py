"""Post-training int8 of a backbone with NNCF: calibrate, quantise, measure the drift, cache.

Why: on CPUs with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX) OpenVINO's int8
kernels run EfficientNet-Lite0 several times faster than fp32, and features are the cost of every
command. int8 features are close to fp32 but not equal, so the int8 model is built once per
machine, its drift is measured and recorded, and the precision is part of every feature-cache key
and model file (see ``BackboneSpec.precision``).

Recipe (:data:`RECIPES`, default :data:`RECIPE`): NNCF's ``PERFORMANCE`` preset (symmetric
per-channel weights, symmetric activations) with full bias correction, calibrated on
``n_synthetic`` synthetic SEM images of all ten categories (``semcat.synth``) plus up to
``max_user`` images of the user's archive when given. benchmarks/int8_recipes.py measured it
against the ``MIXED`` preset (asymmetric activations, the first recipe): the network used less
CPU per image with the same or closer features (benchmarks/results/int8_recipes.md). In trials
while writing this, NNCF's default fast bias correction left a clearly worse worst-case feature
cosine than full bias correction, and keeping the depthwise convolutions in fp32
(``fp32_depthwise``, an ignored scope) improved it a little more but gave back much of the speed.

The int8 IR sits beside the fp32 IR (:func:`semcat.runtime.int8_ir_path`); its ``.json`` holds the
calibration key (fp32 IR, NNCF/OpenVINO versions, recipe, the view the calibration images are
preprocessed with: the default view, and their SHA-256) and the
parity to fp32 on :data:`HELD_OUT` synthetic images never used for calibration. A call with the
same inputs re-uses it; other inputs rebuild it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from semcat._io import atomic_write_text, iter_image_files, sha256_bytes
from semcat._sysinfo import has_int8_acceleration
from semcat.backbones import PRECISIONS, BackboneSpec
from semcat.errors import ImageReadError, SemcatError
from semcat.features import DEFAULT_VIEW, file_input, preprocess
from semcat.runtime import ensure_ir, int8_info, int8_ir_path, openvino_available

__all__ = [
    "PRECISION_CHOICES",
    "RECIPE",
    "RECIPES",
    "QuantizeResult",
    "quantize_backbone",
    "parity_ok",
    "resolve_precision",
    "with_precision",
    "model_precision",
    "drift_note",
]

PRECISION_CHOICES = ("auto", *PRECISIONS)
RECIPES = {"performance": "nncf-performance-fullbias-v2", "mixed": "nncf-mixed-fullbias-v1"}
"""NNCF preset → the name of its settings, part of the calibration key (change it with the settings)."""
PRESET = "performance"
RECIPE = RECIPES[PRESET]
N_SYNTHETIC = 300
MAX_USER = 300
HELD_OUT = 100
_SYNTH_SEED, _HELD_OUT_SEED = 2101, 2102
_SYNTH_SHAPE = (384, 512)  # resized to 224-260 px anyway; a quarter of the generation time of 768x1024
MIN_COSINE, MEDIAN_COSINE = 0.98, 0.995
"""Feature parity (held-out worst image / median) that ``--precision auto`` requires of an int8
model before it uses it. The default recipe's model (its held-out check: 0.990 / 0.998) kept test
accuracy, ECE, auto-band precision and the unknown rate on known images of its heads within 0.5
points of fp32, each 95 % interval inside; on the unseen category int8 flagged 1.25 points more
as unknown [0.49, 2.01] (benchmarks/results/int8.md: 2160 known, 480 unseen test images, 3 draws).
These bounds sit a little below it."""


@dataclass
class QuantizeResult:
    """What :func:`quantize_backbone` did: the int8 IR, its record, and the files it could not use."""

    path: Path
    info: dict
    built: bool
    errors: list[tuple[str, str]] = field(default_factory=list)


def quantize_backbone(
    spec: BackboneSpec,
    calibration: str | Path | Iterable[str | Path] | None = None,
    *,
    n_synthetic: int = N_SYNTHETIC,
    max_user: int = MAX_USER,
    held_out: int = HELD_OUT,
    preset: str = PRESET,
    fp32_depthwise: bool = False,
    rebuild: bool = False,
) -> QuantizeResult:
    """Build (or re-use) the int8 IR of ``spec``; see the module docstring.

    ``calibration`` adds up to ``max_user`` images (files or folders, evenly spaced over the sorted
    list) to the synthetic ones; unreadable files are skipped and returned in ``errors``. ``preset``
    is one of :data:`RECIPES` (NNCF's activation scheme).
    """
    if not openvino_available():
        raise SemcatError("int8 needs the openvino and nncf packages: pip install openvino nncf")
    if n_synthetic < 0 or max_user < 0 or held_out < 2:
        raise ValueError("n_synthetic and max_user must be >= 0 and held_out >= 2.")
    if preset not in RECIPES:
        raise ValueError(f"preset must be one of {', '.join(RECIPES)}; got {preset!r}.")
    import nncf
    import openvino as ov

    spec = replace(spec, precision="fp32")
    fp32_xml = ensure_ir(spec)
    sources = [str(p) for p in ([calibration] if isinstance(calibration, (str, Path)) else calibration or [])]
    files = _spread(list(iter_image_files(sources)), max_user)
    user, hashes, errors = _user_inputs(spec, files)
    if n_synthetic + len(user) == 0:
        raise SemcatError("no calibration images: every given file failed and n_synthetic is 0.")
    recipe = RECIPES[preset] + ("+fp32-depthwise" if fp32_depthwise else "")
    key = hashlib.sha256("|".join([
        fp32_xml.name, f"nncf={nncf.__version__}", f"ov={ov.get_version()}", recipe,
        f"synthetic={n_synthetic}@{_SYNTH_SEED}", f"view={DEFAULT_VIEW}", *sorted(hashes)]).encode()).hexdigest()[:16]
    xml = int8_ir_path(spec)
    old = int8_info(spec)
    if old is not None and old.get("key") == key and not rebuild:
        return QuantizeResult(xml, old, built=False, errors=errors)

    inputs = [*_synthetic_inputs(spec, n_synthetic, _SYNTH_SEED), *user]
    core = ov.Core()
    fp32 = core.read_model(str(fp32_xml))
    ignored = nncf.IgnoredScope(types=["GroupConvolution"]) if fp32_depthwise else None
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():  # NNCF's progress bars
        warnings.simplefilter("ignore")
        q = nncf.quantize(fp32, nncf.Dataset(inputs), subset_size=len(inputs), preset=nncf.QuantizationPreset[preset.upper()],
                          fast_bias_correction=False, **({"ignored_scope": ignored} if ignored else {}))
    tmp = xml.with_name(f".{xml.stem}.{os.getpid()}.{threading.get_ident()}.tmp.xml")
    ov.save_model(q, str(tmp), compress_to_fp16=False)
    test = np.concatenate(list(_synthetic_inputs(spec, held_out, _HELD_OUT_SEED)))
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    ref = core.compile_model(fp32, "CPU", config)(test)[0]
    got = core.compile_model(str(tmp), "CPU", config)(test)[0]
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    info = {
        "key": key, "signature": spec.signature(), "recipe": recipe,
        "calibration": {"synthetic": n_synthetic, "user": len(user),
                        "user_sources": sources},
        "held_out": held_out, "cosine_min": round(float(cos.min()), 5),
        "cosine_median": round(float(np.median(cos)), 5),
        "nncf": nncf.__version__, "openvino": ov.get_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
    atomic_write_text(xml.with_suffix(".json"), json.dumps(info, indent=1))
    os.replace(tmp, xml)
    return QuantizeResult(xml, info, built=True, errors=errors)


def parity_ok(info: dict | None) -> bool:
    """Whether a recorded int8 model is close enough to fp32 for ``--precision auto``."""
    return bool(info) and info["cosine_min"] >= MIN_COSINE and info["cosine_median"] >= MEDIAN_COSINE


def resolve_precision(spec: BackboneSpec, choice: str = "auto") -> str:
    """``fp32``/``int8`` as asked; ``auto`` is int8 only where the CPU has VNNI/AMX and an int8
    model of ``spec`` has been built (``semcat quantize``) with its parity met, else fp32."""
    if choice not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}; got {choice!r}.")
    if choice != "auto":
        return choice
    return "int8" if has_int8_acceleration() and parity_ok(int8_info(spec)) else "fp32"


def with_precision(spec: BackboneSpec, choice: str = "auto") -> BackboneSpec:
    """``spec`` at the precision :func:`resolve_precision` picks."""
    return replace(spec, precision=resolve_precision(spec, choice))


def model_precision(spec: BackboneSpec, trained: str, choice: str = "auto") -> str:
    """The precision to run a model's backbone at: ``auto`` keeps the one its head was trained on,
    unless that is int8 and no int8 model is built here (then fp32, and :func:`drift_note` says so)."""
    if choice != "auto":
        return resolve_precision(spec, choice)
    return "fp32" if trained == "int8" and int8_info(spec) is None else trained


def drift_note(spec: BackboneSpec, trained: str) -> str | None:
    """A warning when features at ``spec.precision`` feed a head trained at ``trained``, else None.

    States the drift measured when the int8 model was built, so the user can judge it.
    """
    if spec.precision == trained:
        return None
    info = int8_info(spec)
    measured = (f"on this machine int8 features differ from fp32 by cosine min {info['cosine_min']:.3f}, "
                f"median {info['cosine_median']:.4f} ({info['held_out']} held-out synthetic images)"
                if info else "int8 features differ from fp32")
    return (f"the head of this model was trained on {trained} features but {spec.name} runs at "
            f"{spec.precision} here; {measured}, so scores and decisions may shift slightly. Use "
            f"--precision {trained}, or retrain with --precision {spec.precision}.")


def _spread(files: list[Path], limit: int) -> list[Path]:
    """At most ``limit`` files, evenly spaced (an archive's folders are usually sorted by session)."""
    if len(files) <= limit:
        return files
    return [files[int(i)] for i in np.linspace(0, len(files) - 1, limit)]


def _user_inputs(spec: BackboneSpec, files: list[Path]) -> tuple[list[np.ndarray], list[str], list[tuple[str, str]]]:
    """Model inputs of the user's images as extraction makes them (by default: data bar cropped,
    the default view), their SHA-256, and failures."""
    from semcat.images import read_file_bytes

    inputs, hashes, errors = [], [], []
    for path in files:
        try:
            data = read_file_bytes(path)
            inputs.append(file_input(data, path, spec))
            hashes.append(sha256_bytes(data))
        except ImageReadError as e:
            errors.append((str(path), e.problem))
        except Exception as e:  # a bad file must never stop the calibration
            errors.append((str(path), f"{type(e).__name__}: {e}"))
    return inputs, hashes, errors


def _synthetic_inputs(spec: BackboneSpec, n: int, seed: int) -> Iterable[np.ndarray]:
    """``n`` synthetic SEM images cycling over the ten categories, as (1, 3, S, S) model inputs."""
    from semcat import CATEGORIES
    from semcat.synth import generate_image

    rng = np.random.default_rng(seed)
    for i in range(n):
        img = generate_image(CATEGORIES[i % len(CATEGORIES)], rng, shape=_SYNTH_SHAPE).astype(np.float32)
        yield preprocess(img, spec)  # the default view, as for the user's images
