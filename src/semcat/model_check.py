"""What a model file may contain: every field of a ``.semcat`` artifact checked on load, and its digest.

A model file comes from outside: a flipped byte, a hand-edited temperature of ``0`` or ``nan``, or a
``view`` the feature extractor does not know must stop the load with one line naming the field,
never give ``nan`` scores, confident wrong labels or a traceback later. Names of code (backbones,
weights packages) are looked up in registries by ``semcat.backbones``; nothing here imports code.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TEMPERATURE_RANGE", "check_model_content", "content_digest", "json_default"]

TEMPERATURE_RANGE = (0.01, 100.0)
"""Temperatures a model may carry (``Calibrator`` fits within 0.05-20)."""


def json_default(o: Any) -> Any:
    """JSON form of the numpy values and paths a model's metadata may hold."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def content_digest(meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the metadata (canonical JSON) and every tensor's name, dtype, shape and bytes.

    The model id and the digest stored in version-2 files, so a changed byte anywhere is seen.
    """
    h = hashlib.sha256()
    h.update(json.dumps(meta, sort_keys=True, default=json_default).encode())
    for name, t in sorted(tensors.items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(t.shape).encode())
        h.update(np.ascontiguousarray(t).tobytes())
    return h.hexdigest()


def check_model_content(meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming the first field of a model that is missing, of the wrong type,
    not finite, out of range or not one of its allowed values."""
    from semcat.features import VIEWS

    _one_of(meta.get("view"), VIEWS, "view")
    _one_of(meta.get("crop_databar"), (True, False), "crop_databar")
    scale = meta.get("scale_nm")
    if scale is not None and not (type(scale) in (int, float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"'scale_nm' is {scale!r}; expected a positive pixel size in nm (or absent)")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes)
            and len(set(classes)) == len(classes)):
        raise ValueError("'classes' must be a list of at least 2 distinct non-empty names")
    if not isinstance(meta.get("backbone"), str) or not meta["backbone"]:
        raise ValueError("'backbone' must be a backbone name")
    for entry in meta.get("backbones") or []:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("weights"), (str, type(None)))
                and isinstance(entry.get("feature_dim"), int) and entry["feature_dim"] > 0):
            raise ValueError("each of 'backbones' must give a name, a weights source and a positive feature_dim")
    if not isinstance(meta.get("head"), dict):
        raise ValueError("'head' must hold the head's parameters")
    _check_tensors(tensors, len(classes), bool(meta["head"].get("standardize", True)))
    _check_calibration(meta.get("calibration"))


def _one_of(value: Any, allowed: tuple, name: str) -> None:
    if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        raise ValueError(f"{name!r} is {value!r}; expected one of {', '.join(map(repr, allowed))}")


def _check_tensors(tensors: Mapping[str, np.ndarray], n_classes: int, standardize: bool) -> None:
    for name, t in tensors.items():
        if np.issubdtype(t.dtype, np.floating) and not np.isfinite(t).all():
            raise ValueError(f"tensor {name!r} holds NaN or infinite values")
    coef = tensors["head.coef"]
    if coef.ndim != 2 or coef.shape[0] != n_classes or coef.shape[1] < 1:
        raise ValueError(f"tensor 'head.coef' has shape {coef.shape}; expected ({n_classes}, features)")
    d = coef.shape[1]
    for name, shape in (("head.intercept", (n_classes,)), ("head.mean", (d,)), ("head.scale", (d,))):
        if tensors[name].shape != shape:
            raise ValueError(f"tensor {name!r} has shape {tensors[name].shape}; expected {shape}")
    if standardize and not (tensors["head.scale"] > 0).all():
        raise ValueError("tensor 'head.scale' must be positive")


def _check_calibration(cal: Any) -> None:
    if cal is None:
        return
    if not isinstance(cal, dict):
        raise ValueError("'calibration' must be an object or null")
    lo, hi = TEMPERATURE_RANGE
    t = _number(cal, "temperature", required=True)
    if not lo <= t <= hi:
        raise ValueError(f"calibration temperature is {t!r}; expected {lo} to {hi}")
    for key in ("t_auto", "t_suggest"):
        v = _number(cal, key, required=True)
        if not 0.0 <= v <= math.nextafter(1.0, 2.0):
            raise ValueError(f"calibration {key} is {v!r}; expected a probability threshold in [0, 1]")
    ood = cal.get("ood")
    if ood is not None:
        if not isinstance(ood, dict):
            raise ValueError("calibration 'ood' must be an object")
        _number(ood, "threshold", required=False)


def _number(d: Mapping[str, Any], key: str, *, required: bool) -> float:
    v = d.get(key)
    if v is None and not required:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"calibration {key} is {v!r}; expected a finite number")
    return float(v)
