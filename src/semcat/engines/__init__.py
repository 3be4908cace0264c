"""Where classification runs: ``local`` (this machine, streamed) or ``spark`` (a cluster).

Both share one contract: ``classify(model, inputs, *, top_k, precision, chunk_size, progress, ...)``
over a model whose :class:`~semcat.featurespec.FeatureSpec` says how images become features, and
predictions from a :class:`~semcat.model.Predictor`.
"""
from __future__ import annotations

import warnings
from typing import Any

from semcat.errors import SemcatWarning


def run_at_precision(model: Any, precision: str) -> None:
    """Compute ``model``'s features at ``precision`` (fp32/int8/auto); a drift from the precision it
    was trained at is a :class:`~semcat.errors.SemcatWarning` stating the measured difference."""
    note = model.use_precision(precision)
    if note:
        warnings.warn(note, SemcatWarning, stacklevel=3)
