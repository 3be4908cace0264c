"""The model artifact: one ``.semcat`` file that turns image paths into labelled predictions.

A ``.semcat`` file is a safetensors file (no pickle: loading never runs code). Its tensors are the
head (``head.coef``, ``head.intercept``, ``head.mean``, ``head.scale``) plus ``extra_tensors``
(e.g. the unknown detector's ``ood.*`` statistics); its JSON metadata header (key ``semcat``)
holds the format version, backbone(s) with weights source and preprocessing signature, view,
data-bar crop, class names, head hyperparameters, training metadata and the ``calibration`` dict.
From format version 2 it also holds ``digest``, the SHA-256 of everything else (metadata and
tensors): a file changed after it was written is refused, and every field is checked on load
(``semcat.model_check``). Version-1 files (no digest) still load, with every field checked.

How images become features is the model's :class:`~semcat.featurespec.FeatureSpec` (backbones,
view, data-bar crop), read from the file once and used for every prediction. A backbone name may
join several registered backbones with ``+`` (``efficientnet_lite0+efficientnet_lite2``): the
features of each are extracted (and cached) separately and concatenated.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from semcat import __version__
from semcat._io import atomic_write_bytes, iter_image_files, read_regular_bytes
from semcat._validation import check_features
from semcat.backbones import get_backbone
from semcat.errors import ModelFileError, NotFittedError
from semcat.features import StoreChoice
from semcat.featurespec import FeatureSpec
from semcat.head import SoftmaxHead, softmax
from semcat.model_check import check_model_content, content_digest, json_default

__all__ = ["FORMAT_VERSION", "Prediction", "Predictor", "SemcatModel", "load_model"]

FORMAT_VERSION = 2
"""Version of the artifact layout; a newer file is refused with a request to upgrade semcat.
2: adds the content ``digest`` (required from this version on), and the calibration dict may hold
``guarantee``, ``labels_needed``, ``*_interval`` per band, ``ood.heldout_flagged``/``flagged_interval``
and ``heldout.folds`` (cross-fitting); version-1 files load without them."""
_META_KEY = "semcat"
_HEAD_TENSORS = ("coef", "intercept", "mean", "scale")
_RESERVED_PREFIX = "head."


@dataclass(frozen=True)
class Prediction:
    """The classification of one input file; failures are predictions with ``error`` set."""

    path: str
    sha256: str | None
    top: list[tuple[str, float]]
    decision: str | None
    candidates: list[str]
    ood_score: float | None
    error: str | None
    features: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str | None:
        """The top-1 class (None for a failed file)."""
        return self.top[0][0] if self.top else None

    @property
    def score(self) -> float | None:
        """The top-1 (calibrated) probability (None for a failed file)."""
        return self.top[0][1] if self.top else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (features are never serialised)."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "top": [[c, round(float(p), 6)] for c, p in self.top],
            "decision": self.decision,
            "candidates": list(self.candidates),
            "ood_score": None if self.ood_score is None else round(float(self.ood_score), 6),
            "error": self.error,
        }

    def to_row(self, top_k: int = 3) -> dict[str, Any]:
        """Flat row for CSV/Spark: path, sha256, label_i/score_i for i ≤ top_k, decision,
        candidates ('|'-joined), ood_score, error. Missing ranks are empty."""
        row: dict[str, Any] = {"path": self.path, "sha256": self.sha256 or ""}
        for i in range(top_k):
            c, p = self.top[i] if i < len(self.top) else ("", None)
            row[f"label_{i + 1}"] = c
            row[f"score_{i + 1}"] = "" if p is None else f"{p:.6f}"
        row["decision"] = self.decision or ""
        row["candidates"] = "|".join(self.candidates)
        row["ood_score"] = "" if self.ood_score is None else f"{self.ood_score:.6f}"
        row["error"] = self.error or ""
        return row


class Predictor(Protocol):
    """What turns listed image files into :class:`Prediction` s: a :class:`SemcatModel` (local
    engine), or a Spark job's results read back on the driver (``semcat.engines.spark``), so
    ``Catalog.ingest`` stores either alike. ``feature_keys`` name the feature vectors it returns."""

    @property
    def model_id(self) -> str: ...

    @property
    def feature_keys(self) -> list[str]: ...

    def predict_files(self, files: Sequence[str], *, top_k: int = 3, with_features: bool = False) -> list[Prediction]:
        """One prediction per file, in order; a file that failed carries ``error``."""
        ...


def row_columns(top_k: int = 3) -> list[str]:
    """Column names of ``Prediction.to_row`` (the CSV header of ``semcat classify --csv``)."""
    ranks = [name for i in range(top_k) for name in (f"label_{i + 1}", f"score_{i + 1}")]
    return ["path", "sha256", *ranks, "decision", "candidates", "ood_score", "error"]


class SemcatModel:
    """A trained head bound to its backbone and preprocessing; see the module docstring.

    Build one with ``semcat.training.train_on_dataset`` (or directly from a fitted
    ``SoftmaxHead``), save it with ``save`` and read it back with ``load_model``.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        head: SoftmaxHead,
        *,
        meta: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
        extra_tensors: Mapping[str, np.ndarray] | None = None,
        feature_keys: Sequence[str] | None = None,
    ) -> None:
        if not hasattr(head, "coef_"):
            raise NotFittedError("SemcatModel needs a fitted SoftmaxHead: call head.fit(X, y) first.")
        if not isinstance(spec, FeatureSpec):
            raise TypeError(f"expected a FeatureSpec (FeatureSpec.resolve(name, view=...)); got {type(spec).__name__}.")
        self.trained_spec = spec
        """How the head's training features were computed: what the model file records."""
        self.spec = spec
        """How this model computes features: ``trained_spec`` unless :meth:`use_precision` changed it."""
        self.head = head
        self.classes = [str(c) for c in head.classes_]
        self.meta = dict(meta or {})
        self.calibration = dict(calibration) if calibration else None
        self.extra_tensors = {k: np.asarray(v) for k, v in (extra_tensors or {}).items()}
        self.format_version = FORMAT_VERSION  # a loaded file keeps its own, so its model id stays the same
        for k in self.extra_tensors:
            if k.startswith(_RESERVED_PREFIX):
                raise ValueError(f"extra tensor name {k!r} is reserved for the head; use another prefix (e.g. 'ood.').")
        self._trained_keys = list(feature_keys) if feature_keys else None
        if spec.width != head.n_features_in_:
            raise ValueError(
                f"the head was trained on {head.n_features_in_}-wide features but backbone "
                f"{spec.name} gives {spec.width}; train the head on this backbone's features."
            )

    @property
    def backbone_name(self) -> str:
        """The backbone name (``a+b`` for a concatenation)."""
        return self.trained_spec.name

    @property
    def backbones(self) -> list[Any]:
        """The BackboneSpecs as trained (one per ``+`` part)."""
        return list(self.trained_spec.backbones)

    @property
    def backbone(self) -> Any:
        """The BackboneSpec (the first one for a ``+``-joined concatenation)."""
        return self.trained_spec.backbones[0]

    @property
    def view(self) -> str:
        """Which part of the image the backbone sees (``semcat.features.VIEWS``)."""
        return self.trained_spec.view

    @property
    def crop_databar(self) -> bool:
        """Whether the instrument's data bar is cropped before the backbone sees the image."""
        return self.trained_spec.crop_databar

    @property
    def precision(self) -> str:
        """The feature precision (fp32/int8) the head was trained on, recorded in the model file."""
        return str(self.backbone.precision)

    def use_precision(self, choice: str = "auto") -> str | None:
        """Compute features at ``choice`` (fp32/int8/auto) from now on; returns a warning stating
        the measured drift when that differs from :attr:`precision`. ``auto`` keeps the trained
        precision, or falls back to fp32 (warned) where no int8 model has been built."""
        from semcat.quantize import drift_note, model_precision

        run = model_precision(self.backbone, self.precision, choice)
        self.spec = replace(self.trained_spec, backbones=tuple(replace(s, precision=run) for s in self.backbones))
        return drift_note(self.spec.backbones[0], self.precision)

    @property
    def feature_keys(self) -> list[str]:
        """Feature-cache keys (backbone + preprocessing signature) of the features this model computes."""
        return self.spec.keys

    # -- prediction ---------------------------------------------------------------------------
    def logits(self, X: object) -> np.ndarray:
        """Head logits of features ``X`` (n, d), width checked against this model's backbone."""
        X = check_features(X, n_features=self.head.n_features_in_, backbone=self.backbone_name)
        return self.head.decision_function(X)

    def predict_features(self, X: object) -> np.ndarray:
        """Calibrated class probabilities: softmax(logits / temperature), columns = ``classes``."""
        t = float((self.calibration or {}).get("temperature", 1.0))
        return softmax(self.logits(X) / np.float32(t))

    def ood_scores(self, X: np.ndarray) -> np.ndarray | None:
        """Unknown-detector scores of features (None when the model has no detector)."""
        from semcat.ood import load_detector

        det = load_detector(self.extra_tensors)
        return None if det is None else det.score(X)

    def predict(
        self,
        paths: Iterable[str | Path],
        *,
        top_k: int = 3,
        store: StoreChoice = "default",
        progress: bool = False,
        with_features: bool = False,
        batch_size: int = 32,
    ) -> list[Prediction]:
        """One ``Prediction`` per image file, in input order (folders are expanded, each file once);
        unreadable files carry ``error``."""
        return self.predict_files([str(p) for p in iter_image_files(paths)], top_k=top_k, store=store,
                                  progress=progress, with_features=with_features, batch_size=batch_size)

    def predict_files(
        self,
        files: Sequence[str],
        *,
        top_k: int = 3,
        store: StoreChoice = "default",
        progress: bool = False,
        with_features: bool = False,
        batch_size: int = 32,
        adapt: str | None = None,
    ) -> list[Prediction]:
        """:meth:`predict` of image files already listed (the engines' :class:`~semcat.engines.Predictor` call).

        ``adapt``: a :data:`semcat.adapt.ADAPT_MODES` mode; ``files`` are then one group (one
        instrument's folder) whose features are mapped onto the training statistics first.
        """
        files = [str(Path(p)) for p in files]
        if not files:
            return []
        res = self.spec.extract(files, store=store, progress=progress, batch_size=batch_size)
        X = res.features
        done = {p: i for i, p in enumerate(res.paths)}
        err = dict(res.errors)
        Xa = self.adapt_features(X, adapt) if adapt and len(X) else X
        proba = self.predict_features(Xa) if len(X) else np.zeros((0, len(self.classes)), np.float32)
        ood = self.ood_scores(Xa) if len(X) else None
        out = []
        for p in files:
            i = done.get(p)
            if i is None:
                out.append(Prediction(p, None, [], None, [], None, err.get(p, "not processed")))
                continue
            out.append(self._prediction(p, res.hashes[i], proba[i], None if ood is None else float(ood[i]),
                                        top_k, X[i] if with_features else None))
        return out

    def adapt_reference(self) -> Any:
        """The training feature statistics (:class:`semcat.adapt.Reference`) that ``--adapt`` maps onto;
        ValueError for a model trained before they were stored."""
        from semcat.adapt import load_reference

        ref = load_reference(self.extra_tensors)
        if ref is None or ref.class_means is None:
            raise ValueError("this model holds no training feature statistics (trained before test-time "
                             "adaptation existed): retrain it with `semcat train` to classify with --adapt.")
        return ref

    def adapt_features(self, X: np.ndarray, mode: str) -> np.ndarray:
        """Features of one group (e.g. one instrument's folder) mapped onto the training statistics
        (:func:`semcat.adapt.adapt_batch`); the head and the unknown detector read them unchanged."""
        from semcat.adapt import adapt_batch

        return adapt_batch(X, self.adapt_reference(), mode, self.logits)

    def _prediction(self, path: str, sha: str, row: np.ndarray, ood: float | None, top_k: int,
                    features: np.ndarray | None) -> Prediction:
        from semcat.calibration import decide

        order = np.argsort(-row, kind="stable")[: max(1, top_k)]
        top = [(self.classes[j], float(row[j])) for j in order]
        decision, candidates = decide(row, self.calibration, ood, classes=self.classes)
        return Prediction(path, sha, top, decision, candidates, ood, None, features)

    # -- persistence --------------------------------------------------------------------------
    def _metadata(self) -> dict[str, Any]:
        meta = dict(self.meta)
        meta.update({
            "format": "semcat-model",
            "format_version": self.format_version,
            "backbone": self.backbone_name,
            "backbones": [
                {"name": s.name, "weights": s.weights, "feature_dim": int(s.feature_dim), "signature": s.signature()}
                | ({} if s.precision == "fp32" else {"precision": s.precision})  # fp32 model ids unchanged
                for s in self.backbones
            ],
            # as trained: a loaded model keeps the file's keys (an int8 model must not need this machine's int8 IR)
            "feature_keys": self._trained_keys or self.trained_spec.keys,
            "view": self.view,
            "crop_databar": self.crop_databar,
            **({} if self.trained_spec.scale_nm is None else {"scale_nm": self.trained_spec.scale_nm}),
            "classes": self.classes,
            "head": self.head.get_params() | {"n_features_in": int(self.head.n_features_in_)},
            "calibration": self.calibration,
            "semcat_version": meta.get("semcat_version", __version__),
        })
        return meta

    def _tensors(self) -> dict[str, np.ndarray]:
        h = self.head
        d = h.n_features_in_
        tensors = {
            "head.coef": np.ascontiguousarray(h.coef_, np.float32),
            "head.intercept": np.ascontiguousarray(h.intercept_, np.float32),
            "head.mean": np.ascontiguousarray(getattr(h, "mean_", np.zeros(d, np.float32)), np.float32),
            "head.scale": np.ascontiguousarray(getattr(h, "scale_", np.ones(d, np.float32)), np.float32),
        }
        tensors.update({k: np.ascontiguousarray(v) for k, v in self.extra_tensors.items()})
        return tensors

    def to_bytes(self) -> bytes:
        """The artifact's bytes (safetensors with the JSON metadata header)."""
        from safetensors.numpy import save

        self.format_version = FORMAT_VERSION  # written in the current layout, with its digest
        meta, tensors = self._metadata(), self._tensors()
        meta["digest"] = content_digest(meta, tensors)
        return save(tensors, metadata={_META_KEY: json.dumps(meta, sort_keys=True, allow_nan=False, default=json_default)})

    def save(self, path: str | Path) -> Path:
        """Write the artifact atomically (a crash never leaves half a model)."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    @property
    def model_id(self) -> str:
        """SHA-256 of the head tensors and metadata: changes with retraining and recalibration."""
        return content_digest(self._metadata(), self._tensors())

    def __repr__(self) -> str:
        cal = "calibrated" if self.calibration else "uncalibrated"
        return f"SemcatModel(backbone={self.backbone_name!r}, view={self.view!r}, classes={len(self.classes)}, {cal})"


def _read_header(data: bytes, path: str) -> dict[str, Any]:
    if len(data) < 8:
        raise ModelFileError(f"{path}: not a semcat model (file is {len(data)} bytes); expected a .semcat file written by `semcat train`.")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100_000_000:
        raise ModelFileError(f"{path}: not a semcat model (no safetensors header); expected a .semcat file written by `semcat train`.")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: corrupted model file (unreadable header); re-download or retrain it with `semcat train`.") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupted model file (header is not an object); retrain it with `semcat train`.")
    return header


def load_model(path: str | Path) -> SemcatModel:
    """Read a ``.semcat`` artifact. Raises ``ModelFileError`` naming the problem and the fix."""
    from safetensors.numpy import load

    path = str(path)
    try:
        data = read_regular_bytes(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file; train one with `semcat train DATA_DIR --out {path}`.") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror or exc}).") from None
    header = _read_header(data, path)
    raw_meta = (header.get("__metadata__") or {}).get(_META_KEY)
    if raw_meta is None:
        raise ModelFileError(f"{path}: a safetensors file but not a semcat model (no '{_META_KEY}' metadata); use a file written by `semcat train`.")
    try:
        meta = json.loads(raw_meta)
        version = int(meta["format_version"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ModelFileError(f"{path}: corrupted model metadata; retrain it with `semcat train`.") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version} is newer than this semcat reads ({FORMAT_VERSION}); "
            f"upgrade semcat (`pip install -U semcat`) to use it (written by semcat {meta.get('semcat_version', '?')})."
        )
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error type for truncated/garbled data
        raise ModelFileError(f"{path}: corrupted model file ({exc}); re-copy it or retrain it with `semcat train`.") from None
    missing = [f"head.{t}" for t in _HEAD_TENSORS if f"head.{t}" not in tensors]
    if missing:
        raise ModelFileError(f"{path}: corrupted model file (missing tensors {missing}); retrain it with `semcat train`.")
    _check_content(meta, tensors, version, path)
    specs = _load_backbones(meta, path)
    head = _load_head(meta, tensors, path)
    extra = {k: v for k, v in tensors.items() if not k.startswith(_RESERVED_PREFIX)}
    known = {"format", "format_version", "backbone", "backbones", "feature_keys", "view", "crop_databar", "classes",
             "head", "calibration", "digest", "scale_nm"}
    try:
        model = SemcatModel(FeatureSpec(tuple(specs), meta["view"], meta["crop_databar"], scale_nm=meta.get("scale_nm")), head,
                            meta={k: v for k, v in meta.items() if k not in known},
                            calibration=meta.get("calibration"), extra_tensors=extra,
                            feature_keys=meta.get("feature_keys"))
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: inconsistent model file ({exc}); retrain it with `semcat train`.") from None
    model.format_version = version
    return model


def _check_content(meta: dict[str, Any], tensors: dict[str, np.ndarray], version: int, path: str) -> None:
    """The digest (required from version 2) and every field; ``ModelFileError`` naming what is wrong."""
    from semcat.ood import load_detector

    body = {k: v for k, v in meta.items() if k != "digest"}
    if "digest" in meta or version >= 2:
        if meta.get("digest") != content_digest(body, tensors):
            raise ModelFileError(
                f"{path}: the model file was changed after it was written (its content digest does not "
                "match); re-copy it or retrain it with `semcat train`.")
    try:
        check_model_content(body, tensors)
        load_detector({k: v for k, v in tensors.items() if not k.startswith(_RESERVED_PREFIX)})
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: invalid model file ({exc}); retrain it with `semcat train`.") from None


def _load_backbones(meta: dict[str, Any], path: str) -> list[Any]:
    entries = meta.get("backbones") or []
    specs = []
    for entry in entries:
        name, weights = entry.get("name"), entry.get("weights")
        try:
            spec = replace(get_backbone(name, weights=weights), precision=entry.get("precision", "fp32"))
        except Exception as exc:
            raise ModelFileError(
                f"{path}: the model needs backbone {name!r} with weights {weights!r}, which is not "
                f"available here ({exc}). Install the package that provides it, or retrain the head "
                "on an available backbone (`semcat train DATA_DIR --backbone NAME`)."
            ) from None
        if weights and weights.startswith("file:") and not Path(weights[5:]).exists():
            raise ModelFileError(f"{path}: the model's backbone weights file {weights[5:]} does not exist here; copy it there or retrain.")
        if int(spec.feature_dim) != int(entry.get("feature_dim", spec.feature_dim)):
            raise ModelFileError(
                f"{path}: backbone {name!r} here gives {spec.feature_dim}-wide features but the model "
                f"expects {entry.get('feature_dim')}; retrain the head with this semcat."
            )
        if entry.get("signature") and entry["signature"] != spec.signature():
            raise ModelFileError(
                f"{path}: backbone {name!r} preprocessing changed since this model was trained "
                f"(model: {entry['signature']}, here: {spec.signature()}); retrain with `semcat train`."
            )
        specs.append(spec)
    if not specs:
        raise ModelFileError(f"{path}: corrupted model metadata (no backbone); retrain it with `semcat train`.")
    return specs


def _load_head(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: str) -> SoftmaxHead:
    params = dict(meta.get("head") or {})
    params.pop("n_features_in", None)
    try:
        head = SoftmaxHead(**params)
        coef = tensors["head.coef"].astype(np.float32)
        k, d = coef.shape
        classes = np.asarray(meta["classes"])
        if len(classes) != k or tensors["head.intercept"].shape != (k,):
            raise ValueError(f"{len(classes)} class names for {k} head rows")
        head.classes_ = classes
        head.coef_ = coef
        head.intercept_ = tensors["head.intercept"].astype(np.float32)
        head.n_features_in_ = d
        if head.standardize:
            head.mean_ = tensors["head.mean"].astype(np.float32)
            head.scale_ = tensors["head.scale"].astype(np.float32)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: inconsistent head in model file ({exc}); retrain it with `semcat train`.") from None
    return head
