"""Where classification runs: ``local`` (this machine, streamed) or ``spark`` (a cluster).

Both share one contract, :class:`Classify`: the same parameters, in the same order, keyword-only
after ``model, inputs``, over a model whose :class:`~semcat.featurespec.FeatureSpec` says how
images become features, with predictions from a :class:`~semcat.model.Predictor`. A caller can
swap engines without renaming an argument; only what comes back differs (a stream of predictions
locally, a Parquet folder and its :class:`~semcat.engines.spark.SparkSummary` on Spark).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from semcat.errors import SemcatWarning

if TYPE_CHECKING:
    from semcat.features import StoreChoice
    from semcat.model import SemcatModel

__all__ = ["Classify", "run_at_precision"]


class Classify(Protocol):
    """``engines.local.classify`` and ``engines.spark.classify``: the parameters both take.

    ``model`` a ``SemcatModel`` or its file (Spark: the file only, which every executor loads);
    ``top_k`` classes per image; ``precision`` as :meth:`~semcat.model.SemcatModel.use_precision`
    (decided once, before any image); ``chunk_size`` images per unit of work and of progress;
    ``progress`` a bar on stderr (off for library calls; the CLI turns it on); ``store`` the
    feature cache (:data:`~semcat.features.StoreChoice`). A default of ``...`` is the engine's
    own: 64 images per chunk locally, 2000 per Spark job; the machine's cache locally, none on
    Spark executors unless asked (each node would keep its own). Engine-specific parameters come
    after these, keyword-only with defaults, so any call written to this contract runs on either.
    """

    def __call__(
        self,
        model: SemcatModel | str | Path,
        inputs: Iterable[str | Path],
        *,
        top_k: int = 3,
        precision: str = "auto",
        chunk_size: int = ...,
        progress: bool = False,
        store: StoreChoice = ...,
    ) -> Any: ...


def run_at_precision(model: Any, precision: str) -> None:
    """Compute ``model``'s features at ``precision`` (fp32/int8/auto); a drift from the precision it
    was trained at is a :class:`~semcat.errors.SemcatWarning` stating the measured difference."""
    note = model.use_precision(precision)
    if note:
        warnings.warn(note, SemcatWarning, stacklevel=3)
