"""Apache Spark engine: classify, extract features and ingest archives too big for one machine.

The driver only lists paths; executors read the images themselves (so images and the model
must be at the same path on every node: a shared filesystem). Work runs through
``DataFrame.mapInPandas``; each executor Python process loads the model once and keeps it in a
module-level cache for every later batch. A file that cannot be read becomes a row with an
``error`` message, never a failed job.

Results go to a Parquet folder. The input is cut into chunks of ``chunk_size`` paths, one Spark
job each, appended to the output as it finishes: Ctrl-C loses at most the running chunk, and a
re-run skips every path already in the output without an error (resume).

Scores are the ones the local engine gives (same model, same preprocessing), so a job can move
between engines: the Spark test compares both on the same images.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcat._io import iter_image_files
from semcat.engines import run_at_precision

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from semcat.features import StoreChoice
    from semcat.featurespec import FeatureSpec

__all__ = [
    "FEATURES_SCHEMA",
    "SparkSummary",
    "classify",
    "classify_schema",
    "features",
    "ingest",
    "read_inputs",
    "read_results",
    "spark_session",
]

FEATURES_SCHEMA = "path string, sha256 string, backbone string, features array<float>, error string"
"""Columns of ``features`` output: one bottleneck vector per readable image."""


def classify_schema(top_k: int = 3, with_features: bool = False) -> str:
    """Columns of ``classify`` output: the local engine's ``Prediction.to_row`` columns
    (``semcat classify --csv``), typed (scores and ``ood_score`` double), plus ``model_id``
    (and ``features``, the bottleneck vector, for :func:`ingest`)."""
    from semcat.model import row_columns

    types = {"ood_score": "double", "features": "array<float>"}
    types.update({f"score_{i + 1}": "double" for i in range(top_k)})
    cols = [*row_columns(top_k), "model_id", *(["features"] if with_features else [])]
    return ", ".join(f"{c} {types.get(c, 'string')}" for c in cols)


DEFAULT_CHUNK = 2000
"""Paths per Spark job unless told otherwise."""


@dataclass(frozen=True)
class SparkSummary:
    """What a Spark run did: counts over the input, where results went, and how long it took."""

    total: int        # paths in the input
    ok: int           # processed now without error
    failed: int       # processed now with an error (see the ``error`` column)
    skipped: int      # already in the output from an earlier run (resume)
    out: str
    seconds: float
    master: str


# --------------------------------------------------------------------------- session


def spark_session(master: str = "local[2]", *, app_name: str = "semcat",
                  conf: dict[str, str] | None = None) -> SparkSession:
    """Start (or reuse) a Spark session set up as semcat needs it.

    Loopback binding and no UI, so it runs on locked-down hosts; workers run this very Python
    (``PYSPARK_PYTHON``) so they find semcat, torch and pyarrow; Arrow is on for
    ``mapInPandas``; one CPU per task (executors get ``OMP_NUM_THREADS=1`` and torch one thread)
    so N tasks on N cores do not oversubscribe.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    loopback = _is_loopback(master)
    if loopback:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .config("spark.task.cpus", "1")
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .config("spark.executorEnv.SEMCAT_THREADS", "1")
        .config("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"])
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if loopback:
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
            "spark.driver.host", "127.0.0.1"
        )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _is_loopback(master: str) -> bool:
    """``local[N]`` or a master on this host's loopback: the driver then binds to 127.0.0.1 too
    (executors on loopback cannot reach a driver that picked the machine's outside address)."""
    host = master.split("://", 1)[-1].split(":", 1)[0]
    return master.startswith("local") or host in {"127.0.0.1", "localhost"}


# --------------------------------------------------------------------------- inputs


def read_inputs(inputs: str | Path | Sequence[str | Path]) -> list[str]:
    """Absolute image paths from a folder, a text file list, a Parquet table or explicit paths.

    * a folder: its image files, recursively (as everywhere in semcat);
    * a ``.parquet`` file or folder of Parquet parts: its ``path`` column;
    * a ``.txt``/``.lst``/``.list``/``.csv`` file: one path per line (blank and ``#`` lines
      skipped; relative paths are relative to the list's folder);
    * any other file: that image.

    Paths keep their order, each once.
    """
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    out: list[str] = []
    for item in items:
        p = Path(item)
        if _is_parquet(p):
            out.extend(_parquet_paths(p))
        elif p.is_file() and p.suffix.lower() in {".txt", ".lst", ".list", ".csv"}:
            out.extend(_list_paths(p))
        elif p.is_dir() or p.exists():
            out.extend(str(f.absolute()) for f in iter_image_files([p]))
        else:
            raise FileNotFoundError(
                f"input not found: {p} (expected a folder of images, a file list, a Parquet "
                "table with a 'path' column, or an image file)"
            )
    return list(dict.fromkeys(out))


def _is_parquet(p: Path) -> bool:
    if p.suffix.lower() == ".parquet":
        return True
    return p.is_dir() and any(p.glob("*.parquet")) and not any(iter_image_files([p]))


def _parquet_paths(p: Path) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    if "path" not in table.column_names:
        raise ValueError(
            f"{p}: expected a Parquet table with a 'path' column, got columns "
            f"{table.column_names}; rename the column holding the image paths to 'path'"
        )
    return [str(Path(v).absolute()) for v in table.column("path").to_pylist() if v]


def _list_paths(p: Path) -> list[str]:
    paths = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.lower() == "path":
            continue
        q = Path(line)
        paths.append(str(q if q.is_absolute() else (p.parent / q).absolute()))
    return paths


# --------------------------------------------------------------------------- executor side

_MODELS: dict[str, Any] = {}
"""Executor-process cache: model id (digest) → loaded SemcatModel, so each Python worker loads and
compiles a model once for every later task and job of the session, and a model file replaced at
the same path is never answered from the cache."""


def _one_thread() -> None:
    """One inference thread per task: Spark already runs one task per core.

    Both runtimes take their thread count from ``SEMCAT_THREADS`` (a session passed in by the
    caller may lack ``spark.executorEnv.SEMCAT_THREADS``); torch is not imported here, so an
    OpenVINO executor never loads it.
    """
    os.environ.setdefault("SEMCAT_THREADS", "1")


def _ship_store(store: StoreChoice) -> str | None:
    """The cache an executor opens, as plain data: None, ``"default"`` (its own machine's) or the
    absolute folder of a given store (a lock-holding ``FeatureStore`` does not pickle)."""
    if store is None or (isinstance(store, str) and store == "default"):
        return store
    return str(Path(store.root).absolute())


def _executor_store(shipped: str | None) -> StoreChoice:
    """The :func:`_ship_store` choice opened on an executor."""
    from semcat.features import FeatureStore

    return shipped if shipped in (None, "default") else FeatureStore(shipped)


def _cached_model(model_path: str, model_id: str) -> Any:
    model = _MODELS.get(model_id)
    if model is None:
        from semcat.errors import ModelFileError
        from semcat.model import load_model

        model = load_model(model_path)
        if model.model_id != model_id:
            raise ModelFileError(f"{model_path}: the model file changed after the job started (model id "
                                 f"{model.model_id[:12]}, the driver's {model_id[:12]}); run the job again.")
        _MODELS[model_id] = model
    return model


def _classify_batches(model_path: str, model_id: str, top_k: int, store: str | None,
                      with_features: bool = False, precision: str = "fp32") -> Callable[
    [Iterator[pd.DataFrame]], Iterator[pd.DataFrame]
]:
    """The ``mapInPandas`` function: paths in, one prediction row per path out."""

    columns = [c.split()[0] for c in classify_schema(top_k, with_features).split(", ")]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        _one_thread()
        model = _cached_model(model_path, model_id)
        model.use_precision(precision)  # resolved on the driver: every executor computes alike
        cache = _executor_store(store)
        for batch in batches:
            paths = [str(p) for p in batch["path"]]
            rows = []
            for pred in model.predict_files(paths, top_k=top_k, store=cache, with_features=with_features):
                row: dict[str, Any] = {"path": pred.path, "sha256": pred.sha256}
                for i in range(top_k):
                    c, p = pred.top[i] if i < len(pred.top) else (None, None)
                    row[f"label_{i + 1}"] = c
                    row[f"score_{i + 1}"] = None if p is None else float(p)
                row.update({
                    "decision": pred.decision,
                    "candidates": "|".join(pred.candidates),
                    "ood_score": None if pred.ood_score is None else float(pred.ood_score),
                    "error": pred.error,
                    "model_id": model_id,
                })
                if with_features:
                    row["features"] = None if pred.features is None else pred.features.astype("float32").tolist()
                rows.append(row)
            yield pd.DataFrame(rows, columns=columns)

    return run


def _feature_batches(spec: FeatureSpec, store: str | None) -> Callable[
    [Iterator[pd.DataFrame]], Iterator[pd.DataFrame]
]:
    """The ``mapInPandas`` function for bottleneck extraction: one row per path, errors included.

    ``spec`` is resolved on the driver (precision included) and shipped: every executor computes alike.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        _one_thread()
        cache = _executor_store(store)
        for batch in batches:
            paths = [str(p) for p in batch["path"]]
            res = spec.extract(paths, store=cache)
            done = {p: (h, v) for p, h, v in zip(res.paths, res.hashes, res.features)}
            err = dict(res.errors)
            rows = []
            for p in paths:
                h, v = done.get(p, (None, None))
                rows.append({"path": p, "sha256": h, "backbone": spec.name,
                             "features": None if v is None else v.astype("float32").tolist(),
                             "error": None if v is not None else err.get(p, "not processed")})
            yield pd.DataFrame(rows, columns=["path", "sha256", "backbone", "features", "error"])

    return run


# --------------------------------------------------------------------------- driver side


def _done_paths(spark: SparkSession, out: Path) -> set[str]:
    """Paths already in the output without an error: a re-run skips them."""
    if not out.exists() or not any(out.glob("*.parquet")):
        return set()
    df = spark.read.parquet(str(out)).filter("error IS NULL").select("path")
    return {r.path for r in df.toLocalIterator()}


def _run_chunks(
    spark: SparkSession,
    paths: list[str],
    out: Path,
    fn: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]],
    schema: str,
    *,
    chunk_size: int,
    partitions: int | None,
    progress: bool,
    what: str,
) -> tuple[int, int, int]:
    """Run ``fn`` over ``paths`` chunk by chunk, appending each chunk's rows to ``out``.

    A driver killed mid-chunk leaves its tasks' files under ``out/_temporary``; the next job's
    commit would move the finished ones into ``out`` next to their re-run (duplicate rows), so
    they are deleted first: the chunk is redone as a whole. Each chunk is one Spark job; its
    ok/failed counts come from the part files it added (a second job over cached rows cost
    seconds per chunk).
    """
    shutil.rmtree(out / "_temporary", ignore_errors=True)
    done = _done_paths(spark, out)
    todo = [p for p in paths if p not in done]
    skipped = len(paths) - len(todo)
    ok = failed = 0
    parallelism = spark.sparkContext.defaultParallelism
    with _progress(progress, what, len(todo)) as advance:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            n_parts = partitions or _auto_partitions(len(chunk), parallelism)
            rdd = spark.sparkContext.parallelize([(p,) for p in chunk], n_parts)
            df = spark.createDataFrame(rdd, "path string")
            before = set(out.glob("*.parquet"))
            df.mapInPandas(fn, schema).write.mode("append").parquet(str(out))
            rows, errors = _count_rows(sorted(set(out.glob("*.parquet")) - before))
            ok, failed = ok + rows - errors, failed + errors
            advance(len(chunk))
    return ok, failed, skipped


def _count_rows(files: Sequence[Path]) -> tuple[int, int]:
    """(rows, rows with an error) of Parquet part files, reading only their ``error`` column."""
    import pyarrow.parquet as pq

    rows = errors = 0
    for f in files:
        col = pq.read_table(f, columns=["error"]).column("error")
        rows, errors = rows + len(col), errors + len(col) - col.null_count
    return rows, errors


_TASK_IMAGES = 128
"""Aim for tasks of about this many images: while the last task runs the other cores idle, so
smaller tasks waste less at the end of a job when task times differ (slow files, busy nodes),
and a task still amortises its start-up. On 2 quiet cores it changed little (Spark 1.10x
the time of two independent processes with 625-image tasks, 1.09x with 128)."""


def _auto_partitions(n_paths: int, parallelism: int) -> int:
    """Tasks per chunk: one per core at least, and none much over ``_TASK_IMAGES`` images.

    Each task costs a fixed time on top of its images (scheduling, handing the batch to the
    Python worker, writing and committing its part file): timestamps from the Python workers on a
    standalone cluster showed 6.5 s between 8 tasks of one job against 1.0 s between 2
    (``benchmarks/results/spark_overhead.md``), so a small job gets one task per core, not four.
    """
    return max(1, min(n_paths, max(parallelism, -(-n_paths // _TASK_IMAGES))))


class _progress:
    """A rich progress bar on stderr advanced per finished chunk (no-op when ``enabled`` is False)."""

    def __init__(self, enabled: bool, what: str, total: int) -> None:
        self.enabled, self.what, self.total = enabled, what, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        from semcat.commands._common import err_console

        self._bar = Progress(console=err_console, transient=False)
        self._bar.start()
        task = self._bar.add_task(self.what, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _prepare(inputs: Any, master: str, spark: SparkSession | None,
             conf: dict[str, str] | None) -> tuple[SparkSession, bool, list[str]]:
    own = spark is None
    session = spark or spark_session(master, conf=conf)
    try:
        paths = read_inputs(inputs)
    except BaseException:
        if own:
            session.stop()
        raise
    return session, own, paths


def classify(
    model: str | Path,
    inputs: str | Path | Sequence[str | Path],
    *,
    top_k: int = 3,
    precision: str = "auto",
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool = False,
    store: StoreChoice = None,
    out: str | Path | None = None,
    master: str = "local[2]",
    partitions: int | None = None,
    spark: SparkSession | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSummary:
    """Classify every input image on Spark and append one row per image to a Parquet folder.

    The engines' shared contract, :class:`semcat.engines.Classify` (the parameters of
    :func:`semcat.engines.local.classify` up to ``store``), then where the output goes and the
    cluster's settings.

    Parameters
    ----------
    model : path
        A ``.semcat`` model file, at the same path on every executor (executors load it
        themselves: a ``SemcatModel`` in memory is refused).
    inputs : path or list of paths
        Folder, text file list, Parquet table with a ``path`` column, or image files
        (see :func:`read_inputs`).
    top_k : int
        Classes kept per image, best first.
    precision : str
        Feature precision, as :meth:`semcat.model.SemcatModel.use_precision` (decided here, on
        the driver; executors need the int8 model built under their ``SEMCAT_HOME``).
    chunk_size : int
        Paths per Spark job: the unit of progress and of work lost on Ctrl-C.
    progress : bool
        A progress bar on stderr, advanced per finished chunk.
    store : None, "default" or FeatureStore
        The executors' feature cache: None (default) computes every image; ``"default"`` is
        each node's own cache (``SEMCAT_HOME``); a ``FeatureStore`` is opened by every executor
        at its folder, so only one on a shared filesystem.
    out : path or None
        Parquet folder; columns :func:`classify_schema`. Existing error-free rows are kept and
        their images skipped. Default ``$SEMCAT_HOME/spark/classify-<model id>``.
    master : str
        ``local[N]``, ``spark://host:7077``, ``yarn``...; ignored when ``spark`` is given.
    partitions : int or None
        Tasks per chunk; None = one per core at least and about 128 images per task, so a
        large chunk's stragglers balance out and a small chunk pays few per-task costs.
    spark : SparkSession or None
        Reuse a running session (then it is not stopped).
    conf : dict or None
        Extra Spark settings for a session started here, e.g. ``{"spark.archives":
        "env.tar.gz#environment"}`` to ship a packed environment (see :mod:`semcat.engines.packenv`).
    """
    from semcat.model import SemcatModel, load_model

    if isinstance(model, SemcatModel):
        raise TypeError("spark.classify needs the model's file path: executors load the model themselves.")
    model_path = Path(model).absolute()
    loaded = load_model(model_path)  # fail early, on the driver, for a bad model
    run_at_precision(loaded, precision)
    out = Path(out) if out is not None else _default_out("classify", loaded.model_id)
    t0 = time.perf_counter()
    session, own, paths = _prepare(inputs, master, spark, conf)
    try:
        fn = _classify_batches(str(model_path), loaded.model_id, int(top_k), _ship_store(store),
                               precision=loaded.spec.precision)
        ok, failed, skipped = _run_chunks(session, paths, out, fn, classify_schema(int(top_k)),
                                          chunk_size=chunk_size, partitions=partitions,
                                          progress=progress, what="classify (spark)")
        used = session.sparkContext.master
    finally:
        if own:
            session.stop()
    return SparkSummary(len(paths), ok, failed, skipped, str(out), time.perf_counter() - t0, used)


def _default_out(what: str, model_id: str) -> Path:
    """Where a job writes without ``out``: under ``$SEMCAT_HOME/spark``, one folder per model (resume)."""
    from semcat.config import semcat_home

    return semcat_home() / "spark" / f"{what}-{model_id[:16]}"


def features(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    spec: FeatureSpec | None = None,
    *,
    master: str = "local[2]",
    chunk_size: int = DEFAULT_CHUNK,
    partitions: int | None = None,
    store: StoreChoice = None,
    progress: bool = False,
    spark: SparkSession | None = None,
    conf: dict[str, str] | None = None,
) -> SparkSummary:
    """Extract bottleneck features on Spark into a Parquet folder (columns :data:`FEATURES_SCHEMA`).

    Same inputs, chunking, resume, ``store``, ``progress`` and ``conf`` as :func:`classify`;
    ``spec`` says how images become features (:class:`semcat.featurespec.FeatureSpec`, resolved
    here on the driver; default ``FeatureSpec.resolve(precision="auto")``) and is shipped to the
    executors as it is.
    """
    from semcat.featurespec import FeatureSpec

    spec = spec if spec is not None else FeatureSpec.resolve(precision="auto")
    t0 = time.perf_counter()
    session, own, paths = _prepare(inputs, master, spark, conf)
    try:
        ok, failed, skipped = _run_chunks(session, paths, Path(out), _feature_batches(spec, _ship_store(store)),
                                          FEATURES_SCHEMA, chunk_size=chunk_size,
                                          partitions=partitions, progress=progress,
                                          what="features (spark)")
        used = session.sparkContext.master
    finally:
        if own:
            session.stop()
    return SparkSummary(len(paths), ok, failed, skipped, str(out), time.perf_counter() - t0, used)


def read_results(out: str | Path) -> pd.DataFrame:
    """A Spark output folder as one pandas DataFrame (pyarrow; no Spark session needed)."""
    import pyarrow.parquet as pq

    return pq.read_table(str(out)).to_pandas()


class _SparkPredictions:
    """A :class:`~semcat.model.Predictor` for ``Catalog.ingest`` that answers from Spark's output rows.

    The catalog then stores predictions and feature vectors exactly as a local ingest would
    (same ``model_id`` and feature key), without classifying anything on the driver.
    """

    def __init__(self, model: Any, rows: pd.DataFrame, top_k: int) -> None:
        self.model_id = model.model_id
        self.feature_keys = model.feature_keys
        self._rows = {os.path.abspath(p): r for p, r in zip(rows["path"], rows.itertuples(index=False))}
        self._top_k = top_k

    def predict_files(self, files: Sequence[str], *, top_k: int = 3, with_features: bool = False) -> list[Any]:
        """The job's row of each file (features as the job wrote them; ``top_k`` is the job's)."""
        import numpy as np

        from semcat.model import Prediction

        out = []
        for p in map(str, files):
            r = self._rows.get(os.path.abspath(p))
            if r is None:
                out.append(Prediction(p, None, [], None, [], None, "not classified by the Spark job"))
                continue
            if r.error is not None:
                out.append(Prediction(p, r.sha256, [], None, [], None, r.error))
                continue
            top = [(getattr(r, f"label_{i + 1}"), float(getattr(r, f"score_{i + 1}")))
                   for i in range(self._top_k) if getattr(r, f"label_{i + 1}") is not None]
            out.append(Prediction(
                p, r.sha256, top, r.decision, [c for c in (r.candidates or "").split("|") if c],
                None if r.ood_score is None or r.ood_score != r.ood_score else float(r.ood_score),
                None, None if r.features is None else np.asarray(r.features, np.float32)))
        return out


def ingest(
    inputs: str | Path | Sequence[str | Path],
    db_url: str,
    model_path: str | Path,
    *,
    master: str = "local[2]",
    out: str | Path | None = None,
    top_k: int = 3,
    batch_size: int = 64,
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool = False,
    spark: SparkSession | None = None,
    precision: str = "auto",
    conf: dict[str, str] | None = None,
    on_classified: Callable[[SparkSummary], None] | None = None,
) -> Any:
    """Classify on Spark, then catalogue the results: returns the catalog's ``IngestSummary``.

    Executors do the expensive part (decoding and the CNN) and write predictions plus feature
    vectors to ``out`` (default: ``$SEMCAT_HOME/spark/ingest-<model id>``, reused on resume:
    a re-run after a crash classifies only what is not there yet). The driver then runs the
    ordinary catalog ingest (hashes, SEM metadata, paths, one transaction per ``batch_size``
    images) with those results, so the database sees exactly what a local ingest would write
    and only the driver talks to it. ``on_classified`` gets the Spark phase's summary (how many
    images it classified and how many it reused) before the catalog phase starts.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from semcat.catalog import IngestSummary, open_catalog
    from semcat.model import load_model

    model_path = Path(model_path).absolute()
    model = load_model(model_path)
    run_at_precision(model, precision)
    out = Path(out) if out is not None else _default_out("ingest", model.model_id)
    t0 = time.perf_counter()
    session, own, paths = _prepare(inputs, master, spark, conf)
    try:
        fn = _classify_batches(str(model_path), model.model_id, int(top_k), None, with_features=True,
                               precision=model.spec.precision)
        ok, failed, skipped = _run_chunks(session, paths, out, fn, classify_schema(int(top_k), True),
                                          chunk_size=chunk_size, partitions=None, progress=progress,
                                          what="classify (spark)")
        used = session.sparkContext.master
    finally:
        if own:
            session.stop()
    if on_classified is not None:
        on_classified(SparkSummary(len(paths), ok, failed, skipped, str(out), time.perf_counter() - t0, used))
    table = ds.dataset(str(out), format="parquet")
    catalog = open_catalog(db_url)
    summary = IngestSummary()
    try:
        for start in range(0, len(paths), chunk_size):
            chunk = paths[start:start + chunk_size]
            rows = table.to_table(filter=pc.field("path").isin(chunk)).to_pandas()
            rows = rows.sort_values("error", na_position="first").drop_duplicates("path")
            summary += catalog.ingest(chunk, _SparkPredictions(model, rows, int(top_k)),
                                      batch_size=batch_size, progress=progress)
    finally:
        catalog.close()
    return summary
