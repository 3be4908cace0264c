"""One front door from image files to feature vectors: the frozen :class:`FeatureSpec`.

Which backbone(s) (``a+b`` joins several; their features are concatenated), which view of the
image, whether the data bar is cropped, the precision and the runtime are decided once, where the
user says so (command-line options, or the model file in :func:`semcat.model.load_model`), and
carried as data. Every caller (training, calibration, alignment, the unknown detector, both
engines) then asks the spec, ``spec.extract(files) -> FeatureResult``, so no caller retypes
preprocessing: timm's habit of resolving the data config once and attaching it to the model.
The cache keys, signature and feature width follow from the spec.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from semcat.backbones import DEFAULT_BACKBONE, BackboneSpec, get_backbone
from semcat.features import (
    DEFAULT_VIEW,
    FeatureResult,
    StoreChoice,
    check_view,
    extract_files,
    feature_key,
    key_signature,
    open_store,
)

__all__ = ["FeatureSpec", "split_backbone_name"]


def split_backbone_name(name: str) -> list[str]:
    """``"a+b"`` → ``["a", "b"]``; an empty part is refused."""
    parts = [p.strip() for p in str(name).split("+")]
    if not all(parts):
        raise ValueError(f"backbone name {name!r} has an empty part; expected NAME or NAME+NAME.")
    return parts


@dataclass(frozen=True)
class FeatureSpec:
    """How images become feature vectors: backbone spec(s), view, data-bar crop, runtime.

    Build one with :meth:`resolve` (names → specs, precision chosen) and call :meth:`extract`.
    The precision lives in each :class:`~semcat.backbones.BackboneSpec` (part of its signature).
    """

    backbones: tuple[BackboneSpec, ...]
    view: str = DEFAULT_VIEW
    crop_databar: bool = True
    runtime: str = "auto"
    scale_nm: float | None = None
    """Network-input pixel size in nm for images that record theirs (:mod:`semcat.physical_scale`);
    None: today's centre crop whatever the magnification."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbones", tuple(self.backbones))
        object.__setattr__(self, "crop_databar", bool(self.crop_databar))
        if not self.backbones:
            raise ValueError("a FeatureSpec needs at least one backbone.")
        check_view(self.view)
        if self.scale_nm is not None:
            if not (float(self.scale_nm) > 0 and np.isfinite(self.scale_nm)):
                raise ValueError(f"scale_nm must be a positive pixel size in nm or None; got {self.scale_nm!r}")
            object.__setattr__(self, "scale_nm", float(self.scale_nm))

    @classmethod
    def resolve(
        cls,
        backbone: str | BackboneSpec | Sequence[BackboneSpec] = DEFAULT_BACKBONE,
        *,
        view: str = DEFAULT_VIEW,
        crop_databar: bool = True,
        precision: str | None = None,
        runtime: str = "auto",
        weights: str | Sequence[str | None] | None = None,
        scale_nm: float | None = None,
    ) -> FeatureSpec:
        """The spec of a (possibly ``+``-joined) backbone name or of given BackboneSpecs.

        ``precision`` is ``fp32``, ``int8`` or ``auto`` (:func:`semcat.quantize.resolve_precision`,
        decided here, once); None keeps the specs' own (fp32 for names). ``weights`` overrides the weights source (one entry per ``+`` part, or
        one string for a single backbone); ``scale_nm`` the network-input pixel size of scale
        normalisation (:mod:`semcat.physical_scale`). Unknown names raise with close matches.
        """
        if isinstance(backbone, str):
            names = split_backbone_name(backbone)
            ws = [weights] if isinstance(weights, str) else list(weights or [None] * len(names))
            if len(ws) != len(names):
                raise ValueError(f"{len(ws)} weights for the {len(names)} parts of backbone {backbone!r}.")
            specs = [get_backbone(n, weights=w) for n, w in zip(names, ws)]
        else:
            specs = [backbone] if isinstance(backbone, BackboneSpec) else list(backbone)
        spec = cls(tuple(specs), view, crop_databar, runtime, scale_nm)
        return spec if precision is None else spec.at_precision(precision)

    def at_precision(self, choice: str) -> FeatureSpec:
        """This spec computing at ``choice`` (fp32/int8/auto, resolved on the first backbone)."""
        from semcat.quantize import resolve_precision

        run = resolve_precision(self.backbones[0], choice)
        return replace(self, backbones=tuple(replace(s, precision=run) for s in self.backbones))

    @property
    def name(self) -> str:
        """The backbone name as the user writes it (``a+b`` for a concatenation)."""
        return "+".join(s.name for s in self.backbones)

    @property
    def precision(self) -> str:
        """fp32 or int8 (all parts compute at the same precision)."""
        return str(self.backbones[0].precision)

    @property
    def width(self) -> int:
        """Length of one feature vector (the parts' widths added)."""
        return sum(int(s.feature_dim) for s in self.backbones)

    @property
    def keys(self) -> list[str]:
        """The feature-cache key of each part (:func:`semcat.features.feature_key`)."""
        return [feature_key(s, crop_databar=self.crop_databar, view=self.view, scale_nm=self.scale_nm)
                for s in self.backbones]

    @property
    def key(self) -> str:
        """One key for the whole spec: the parts' keys joined with ``+``."""
        return "+".join(self.keys)

    @property
    def signature(self) -> str:
        """The full preprocessing + model signature of every part, joined with `` + ``."""
        return " + ".join(key_signature(s, self.crop_databar, self.view, self.scale_nm) for s in self.backbones)

    def extract(
        self,
        files: Sequence[str | Path],
        *,
        store: StoreChoice = "default",
        progress: bool = False,
        batch_size: int = 32,
        workers: int | None = None,
    ) -> FeatureResult:
        """Features of image ``files`` (not folders: expand them at the boundary), in input order.

        Rows only for files every part could read; the others are in ``errors`` as (path,
        problem), never raised; paths come back as ``str(Path(p))``. ``computed``/``cached``
        count feature vectors over all parts.
        """
        files = [str(Path(p)) for p in files]
        store = open_store(store)
        parts = [extract_files(files, spec, runtime=self.runtime, batch_size=batch_size, store=store,
                               crop_databar=self.crop_databar, view=self.view, scale_nm=self.scale_nm,
                               progress=progress, workers=workers)
                 for spec in self.backbones]
        if len(parts) == 1:
            return parts[0]
        return _concatenate(files, parts, self.width, self.key)


def _concatenate(files: list[str], parts: list[FeatureResult], width: int, key: str) -> FeatureResult:
    """The parts' rows side by side, for the files every part read."""
    errors: dict[str, str] = {}
    rows: list[dict[str, tuple[str, np.ndarray]]] = []
    for res in parts:
        for p, problem in res.errors:
            errors.setdefault(p, problem)
        rows.append({p: (h, f) for p, h, f in zip(res.paths, res.hashes, res.features)})
    out = FeatureResult([], [], np.zeros((0, width), np.float32), key=key,
                        computed=sum(r.computed for r in parts), cached=sum(r.cached for r in parts))
    vectors = []
    for p in files:
        if p in errors or not all(p in part for part in rows):
            errors.setdefault(p, "no features were computed for this file")
            continue
        out.paths.append(p)
        out.hashes.append(rows[0][p][0])
        vectors.append(np.concatenate([part[p][1] for part in rows]))
    if vectors:
        out.features = np.stack(vectors).astype(np.float32)
    out.errors = list(errors.items())
    out.unscaled = list(dict.fromkeys(p for res in parts for p in res.unscaled))
    return out
