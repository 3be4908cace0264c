"""semcat: turn an SEM image archive into a labelled, searchable catalogue.

The public Python API is re-exported here lazily so ``import semcat`` stays fast
(torch is only imported when a model or backbone is actually used).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

DECISIONS: tuple[str, ...] = ("auto", "suggest", "manual", "unknown")
"""What happens to a classified image: labelled automatically, top-2 suggested, a person decides,
or not one of the known classes (``semcat.calibration.decide``)."""

CATEGORIES: tuple[str, ...] = (
    "Porous_Sponge",
    "Patterned_surface",
    "Particles",
    "Films_Coated_Surface",
    "Powder",
    "Tips",
    "Nanowires",
    "Biological",
    "MEMS_devices_and_electrodes",
    "Fibres",
)
"""The 10 NFFA categories of Modarres et al. (Sci Rep 2017), in the paper's L0..L9 order."""

_LAZY = {
    "read_image": "semcat.images",
    "ImageReadError": "semcat.errors",
    "load_model": "semcat.model",
    "SemcatModel": "semcat.model",
    "Prediction": "semcat.model",
    "extract_features": "semcat.features",
    "FeatureStore": "semcat.features",
    "get_backbone": "semcat.backbones",
    "list_backbones": "semcat.backbones",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'semcat' has no attribute {name!r}")


__all__ = ["CATEGORIES", "__version__", *_LAZY]
