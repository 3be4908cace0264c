"""Local engine: classify files and folders on this machine, streaming predictions chunk by chunk.

Chunks bound memory on huge archives and let callers (``semcat classify``, the catalog's ingest)
write results as they come, so Ctrl-C keeps everything already printed or committed.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from semcat._io import iter_image_files
from semcat.engines import run_at_precision
from semcat.features import StoreChoice
from semcat.model import Prediction, SemcatModel, load_model

__all__ = ["classify"]


def classify(
    model: SemcatModel | str | Path,
    inputs: Iterable[str | Path],
    *,
    top_k: int = 3,
    precision: str = "auto",
    chunk_size: int = 64,
    progress: bool = False,
    store: StoreChoice = "default",
    recursive: bool = True,
    adapt: str | None = None,
) -> Iterator[Prediction]:
    """Yield one ``Prediction`` per image found in ``inputs`` (files and folders), in order.

    The engines' shared contract, :class:`semcat.engines.Classify` (the parameters of
    :func:`semcat.engines.spark.classify` up to ``store``). ``model`` is a ``SemcatModel`` or the
    path of a ``.semcat`` file; ``precision`` as :meth:`~semcat.model.SemcatModel.use_precision`
    (a drift from training is a warning). Files that cannot be read come out as predictions with
    ``error`` set; the stream goes on. ``chunk_size`` images are decoded and classified at a time
    (features come from, and go to, the cache ``store``).
    ``adapt`` (:data:`semcat.adapt.ADAPT_MODES`, local only): each folder is classified as one
    batch, its features mapped onto the training statistics first (test-time adaptation, one
    instrument per folder); predictions then come folder by folder.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}.")
    if not isinstance(model, SemcatModel):
        model = load_model(model)
    run_at_precision(model, precision)
    files = (str(p) for p in iter_image_files(inputs, recursive=recursive))  # the one folder walk
    if adapt is not None:
        folders: dict[str, list[str]] = {}
        for f in files:
            folders.setdefault(str(Path(f).parent), []).append(f)
        for group in folders.values():
            yield from model.predict_files(group, top_k=top_k, store=store, progress=progress, adapt=adapt)
        return
    while chunk := list(islice(files, int(chunk_size))):
        yield from model.predict_files(chunk, top_k=top_k, store=store, progress=progress)
