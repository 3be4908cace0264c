"""Ingest: files → images, paths, metadata, predictions and feature vectors, one transaction per batch.

Idempotent and resumable: a path whose size and mtime are unchanged is not even re-hashed; an
image that already has a prediction from the model is not re-classified; content seen before
under another path is recognised by its hash (a move when the old path is gone). A crash or
Ctrl-C loses at most the batch in flight.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from semcat._io import iter_image_files, sha256_file
from semcat.catalog.db import Database
from semcat.catalog.schema import Feature, Image, ImagePath, IngestError, Prediction, utcnow
from semcat.catalog.similar import vector_to_bytes
from semcat.errors import SemcatError
from semcat.units import plural

if TYPE_CHECKING:
    from semcat.model import Predictor


@dataclass
class IngestSummary:
    """What an ingest did. ``known``: unchanged path; ``moved``: known content at a new path whose
    old path is gone; ``copies``: known content at an extra path; ``classified``: new predictions."""

    seen: int = 0
    new: int = 0
    known: int = 0
    moved: int = 0
    copies: int = 0
    classified: int = 0
    failed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def __add__(self, other: IngestSummary) -> IngestSummary:
        """Both summaries' counts added and errors joined (one summary over several ingests)."""
        return IngestSummary(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One human-readable summary line."""
        return (f"{plural(self.seen, 'files')}: {self.new} new, {self.known} known, {self.moved} moved, "
                f"{self.copies} copies, {self.classified} classified, {self.failed} failed")


def feature_key(model: Predictor) -> str:
    """Vectors are comparable when they come from the same backbone(s) and preprocessing."""
    return "+".join(model.feature_keys)


def describe(path: Path) -> dict[str, Any]:
    """``images`` columns for a file (decodes it once, small, to prove it is a readable image)."""
    from semcat.images import read_image

    _, info = read_image(path, crop_databar=False, max_side=256)
    meta = info.metadata
    rows, cols = info.shape
    cols_: dict[str, Any] = {
        "format": info.format, "width": int(cols), "height": int(rows), "bit_depth": info.bit_depth,
        "channels": info.channels, "pixel_size_m": info.pixel_size_m, "meta": None, "vendor": None,
        "instrument": None, "magnification": None, "high_voltage_v": None, "working_distance_m": None,
        "detector": None, "acquired": None,
    }  # every key always present: the rows of one batch are inserted with one executemany
    if meta is not None:
        cols_.update(
            vendor=meta.vendor, instrument=meta.instrument, magnification=meta.magnification,
            pixel_size_m=meta.pixel_size_m if meta.pixel_size_m is not None else info.pixel_size_m,
            high_voltage_v=meta.high_voltage_v, working_distance_m=meta.working_distance_m,
            detector=meta.detector, acquired=_naive(meta.acquired), meta=meta.to_dict(),
        )
    return cols_


def _naive(d: datetime | None) -> datetime | None:
    return d.replace(tzinfo=None) if d is not None and d.tzinfo is not None else d


def _insert(conn: Connection):  # dialect insert with ON CONFLICT support
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


@dataclass
class _File:
    path: Path
    key: str  # absolute path as stored
    size: int = 0
    mtime_ns: int = 0
    sha: str | None = None
    error: str | None = None


def ingest(db: Database, inputs: Iterable[str | Path], model: Predictor | None = None, *,
           batch_size: int = 64, progress: bool = True, follow_links: bool = False) -> IngestSummary:
    """Catalogue every image under ``inputs`` (files or folders, recursive); see module docstring.

    Symlinks inside the folders that lead out of them are skipped unless ``follow_links``
    (see ``semcat._io.iter_image_files``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    files = list(iter_image_files(inputs, follow_links=follow_links))
    summary = IngestSummary()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from semcat.commands._common import err_console

    with Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, disable=not progress, transient=False) as bar:
        task = bar.add_task("ingest", total=len(files))
        for start in range(0, len(files), batch_size):
            batch = files[start:start + batch_size]
            _ingest_batch(db, batch, model, summary)
            bar.advance(task, len(batch))
    return summary


def _file(path: Path) -> _File:
    """A batch entry; a name the database cannot store (not valid UTF-8) is an error, not a crash."""
    key = os.path.abspath(path)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        safe = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return _File(path, safe, error="file name is not valid UTF-8: rename the file to catalogue it")
    return _File(path, key)


def _ingest_batch(db: Database, paths: Sequence[Path], model: Predictor | None, summary: IngestSummary) -> None:
    files = [_file(p) for p in paths]
    with db.read() as conn:
        known_paths = {r.path: r for r in conn.execute(
            select(ImagePath.path, ImagePath.sha256, ImagePath.size, ImagePath.mtime_ns)
            .where(ImagePath.path.in_([f.key for f in files])))}
    for f in files:
        if f.error is not None:
            continue
        try:
            st = os.stat(f.path)
            f.size, f.mtime_ns = st.st_size, st.st_mtime_ns
            row = known_paths.get(f.key)
            if row is not None and row.size == f.size and row.mtime_ns == f.mtime_ns:
                f.sha = row.sha256
            else:
                f.sha = sha256_file(f.path)
        except OSError as e:
            f.error = f"cannot read file: {e.strerror or e}"
    ok = [f for f in files if f.error is None]
    with db.read() as conn:
        in_catalog = set(conn.execute(select(Image.sha256).where(Image.sha256.in_({f.sha for f in ok}))).scalars())
    new_images: dict[str, dict[str, Any]] = {}
    for f in ok:
        if f.sha in in_catalog or f.sha in new_images:
            continue
        try:
            new_images[f.sha] = {"sha256": f.sha, "file_size": f.size, **describe(f.path)}
        except (SemcatError, ValueError, OSError) as e:
            f.error = str(getattr(e, "problem", None) or e)
    ok = [f for f in ok if f.error is None]
    preds, vectors = _classify(db, ok, model) if model is not None else ({}, {})
    for f in ok:
        p = preds.get(f.sha)
        if p is not None and p.error:
            f.error = f"classification failed: {p.error}"
    now = utcnow()
    with db.write() as conn:
        ins = _insert(conn)
        inserted: set[str] = set()
        if new_images:
            inserted = set(conn.execute(
                ins(Image).on_conflict_do_nothing(index_elements=["sha256"]).returning(Image.sha256),
                [{"ingested": now, **v} for v in new_images.values()]).scalars())
        _record_paths(conn, [f for f in files if f.sha in in_catalog or f.sha in new_images], known_paths,
                      inserted, now, summary)
        mid = getattr(model, "model_id", None)
        for sha, p in preds.items():
            if p.error:
                continue
            _store_prediction(conn, sha, mid, p, now)
            summary.classified += 1
        if vectors:
            key = feature_key(model)
            conn.execute(ins(Feature).on_conflict_do_nothing(index_elements=["key", "sha256"]),
                         [{"key": key, "sha256": s, "vector": vector_to_bytes(v)} for s, v in vectors.items()])
        good = [f.key for f in files if f.error is None]
        if good:
            conn.execute(delete(IngestError).where(IngestError.path.in_(good)))
        for f in files:
            if f.error is not None:
                conn.execute(ins(IngestError).values(path=f.key, message=f.error, created=now)
                             .on_conflict_do_update(index_elements=["path"],
                                                    set_={"message": f.error, "created": now}))
    for f in files:
        summary.seen += 1
        if f.error is not None:
            summary.failed += 1
            summary.errors.append((str(f.path), f.error))


def _record_paths(conn: Connection, files: Sequence[_File], known_paths: dict[str, Any], inserted: set[str],
                  now: datetime, summary: IngestSummary) -> None:
    """Insert/refresh ``image_paths`` rows and count what this transaction did.

    Counts come from the rows the statements changed, not from what was read before: with
    several ingests at once another one may have catalogued the same path or content in between
    (a path it inserted first counts as known here, content it inserted first as a copy or move).
    ``inserted``: hashes of the ``images`` rows this transaction inserted.
    """
    unchanged = [f for f in files if f.key in known_paths and known_paths[f.key].sha256 == f.sha]
    fresh = [f for f in files if f.key not in known_paths]
    added: set[str] = set()
    if fresh:
        added = set(conn.execute(
            _insert(conn)(ImagePath).on_conflict_do_nothing(index_elements=["path"]).returning(ImagePath.path),
            [{"path": f.key, "sha256": f.sha, "size": f.size, "mtime_ns": f.mtime_ns, "first_seen": now,
              "last_seen": now, "missing": False} for f in fresh]).scalars())
        raced = {f.key for f in fresh if f.key not in added}
        if raced:  # another ingest inserted these paths since our read
            now_known = dict(conn.execute(select(ImagePath.path, ImagePath.sha256).where(ImagePath.path.in_(raced))).all())
            unchanged += [f for f in fresh if f.key in raced and now_known.get(f.key) == f.sha]
    if unchanged:
        conn.execute(update(ImagePath).where(ImagePath.path.in_([f.key for f in unchanged]))
                     .values(last_seen=now, missing=False))
        summary.known += sum(f.error is None for f in unchanged)
    done = {id(f) for f in unchanged}
    first: set[str] = set()
    for f in files:
        if id(f) in done:
            continue
        if f.key not in added:  # a known path whose content changed
            conn.execute(update(ImagePath).where(ImagePath.path == f.key).values(
                sha256=f.sha, size=f.size, mtime_ns=f.mtime_ns, last_seen=now, missing=False))
        if f.sha in inserted and f.sha not in first:
            first.add(f.sha)
            summary.new += int(f.error is None)
        else:
            _count_other_path(conn, f, summary)


def _count_other_path(conn: Connection, f: _File, summary: IngestSummary) -> None:
    """Known content at this path: a move when its other paths are gone (marked missing), else a copy."""
    others = conn.execute(select(ImagePath.id, ImagePath.path).where(
        ImagePath.sha256 == f.sha, ImagePath.path != f.key, ImagePath.missing.is_(False))).all()
    gone = [i for i, p in others if not os.path.exists(p)]
    if gone:
        conn.execute(update(ImagePath).where(ImagePath.id.in_(gone)).values(missing=True))
    if gone or not others:
        summary.moved += int(f.error is None)
    else:
        summary.copies += int(f.error is None)


def _classify(db: Database, files: Sequence[_File], model: Predictor) -> tuple[dict[str, Any], dict[str, Any]]:
    """Predictions (and feature vectors) for images without a prediction from this model."""
    with db.read() as conn:
        done = set(conn.execute(select(Prediction.sha256).where(
            Prediction.model_id == model.model_id, Prediction.sha256.in_({f.sha for f in files}))).scalars())
    todo: dict[str, _File] = {}
    for f in files:
        if f.sha not in done and f.sha not in todo:
            todo[f.sha] = f
    if not todo:
        return {}, {}
    results = model.predict_files([str(f.path) for f in todo.values()], with_features=True)
    preds, vectors = {}, {}
    for sha, p in zip(todo, results):
        preds[sha] = p
        if p.error is None and p.features is not None:
            vectors[sha] = p.features
    return preds, vectors


def _store_prediction(conn: Connection, sha: str, model_id: str, p: Any, now: datetime) -> None:
    top = [[str(c), float(s)] for c, s in p.top]
    top1, score = (top[0][0], top[0][1]) if top else (None, None)
    conn.execute(_insert(conn)(Prediction).values(
        sha256=sha, model_id=model_id, top=top, top1=top1, top1_score=score, decision=p.decision,
        candidates=list(p.candidates or []), ood_score=p.ood_score, created=now,
    ).on_conflict_do_nothing(index_elements=["sha256", "model_id"]))
    pid = conn.execute(select(Prediction.id).where(Prediction.sha256 == sha, Prediction.model_id == model_id)).scalar_one()
    label = conn.execute(select(Image.label).where(Image.sha256 == sha)).scalar()
    conn.execute(update(Image).where(Image.sha256 == sha).values(
        prediction_id=pid, model_id=model_id, top1=top1, top1_score=score, decision=p.decision,
        category=label or top1))
