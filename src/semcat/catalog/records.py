"""``ImageRecord``: one catalogued image with its latest state, built in one query (PostgreSQL) or a few batched ones (SQLite)."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Connection, Select, String, bindparam, func, literal_column, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by

from semcat.catalog.schema import Image, ImagePath, Label, Measurement, Note, Prediction, Tag


@dataclass
class ImageRecord:
    """A catalogued image. ``label`` is the latest confirmed class; ``top`` the latest prediction."""

    sha256: str
    path: str | None
    paths: list[str]
    format: str | None
    width: int | None
    height: int | None
    bit_depth: int | None
    file_size: int | None
    magnification: float | None
    pixel_size_m: float | None
    high_voltage_v: float | None
    working_distance_m: float | None
    detector: str | None
    instrument: str | None
    acquired: datetime | None
    ingested: datetime | None
    model_id: str | None
    top: list[tuple[str, float]]
    decision: str | None
    candidates: list[str]
    label: str | None
    label_source: str | None
    label_who: str | None
    label_time: datetime | None
    tags: list[str] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def category(self) -> str | None:
        """The confirmed label if any, else the top prediction."""
        return self.label or (self.top[0][0] if self.top else None)

    @property
    def score(self) -> float | None:
        """Probability of the top prediction."""
        return self.top[0][1] if self.top else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (datetimes as ISO strings, top as [class, score] pairs).

        Built field by field: ``dataclasses.asdict`` deep-copies recursively and was most of the
        CPU time of a catalog page in the web API. Lists are copied; ``metadata`` is the record's
        own dict, not a copy (read it, don't change it): copying its nested vendor tags was a
        fifth of a catalog page's CPU, and every caller only serialises it.
        """
        d: dict[str, Any] = {}
        for name in _FIELDS:
            v = getattr(self, name)
            d[name] = v.isoformat() if isinstance(v, datetime) else v
        d["paths"], d["candidates"], d["tags"] = list(self.paths), list(self.candidates), list(self.tags)
        d["measurements"] = dict(self.measurements)
        d["metadata"] = self.metadata
        d["top"] = [[c, float(s)] for c, s in self.top]
        d["notes"] = [{**n, "time": n["time"].isoformat() if n.get("time") else None} for n in self.notes]
        d["category"] = self.category
        return d


_FIELDS = tuple(f.name for f in fields(ImageRecord))


def _one_of(column: Any) -> ColumnElement[bool]:
    """``column IN (the hashes)`` with the list bound as ONE value (``:shas``, a JSON array):
    SQLAlchemy's expanding ``IN`` renders one parameter per hash and re-renders the SQL on every
    call, which was half the CPU of a catalog page."""
    return column.in_(select(literal_column("value")).select_from(func.json_each(bindparam("shas"))))


@cache
def _queries() -> tuple[Select[Any], ...]:
    """The record queries on SQLite (in process: a query is no network round trip), built once."""
    images = (select(*Image.__table__.c, Prediction.model_id.label("pred_model_id"), Prediction.top,
                     Prediction.decision.label("pred_decision"), Prediction.candidates)
              .outerjoin(Prediction, Prediction.id == Image.prediction_id).where(_one_of(Image.sha256)))
    paths = (select(ImagePath.sha256, ImagePath.path, ImagePath.missing).where(_one_of(ImagePath.sha256))
             .order_by(ImagePath.missing, ImagePath.last_seen.desc(), ImagePath.id))
    labels = (select(Label.sha256, Label.label, Label.who, Label.source, Label.created)
              .where(_one_of(Label.sha256)).order_by(Label.created, Label.id))
    tags = select(Tag.sha256, Tag.tag).where(_one_of(Tag.sha256)).order_by(Tag.tag)
    notes = (select(Note.sha256, Note.text, Note.who, Note.created).where(_one_of(Note.sha256))
             .order_by(Note.created, Note.id))
    meas = select(Measurement.sha256, Measurement.name, Measurement.value).where(_one_of(Measurement.sha256))
    return images, paths, labels, tags, notes, meas


@lru_cache(maxsize=256)
def _pg_query(page: Select[Any] | None = None, count: Select[Any] | None = None) -> Select[Any]:
    """The records of a page in ONE PostgreSQL statement, in page order: each image with its
    latest prediction joined, and its paths, latest label, tags, notes and measurements as
    ``LATERAL`` aggregates (arrays, which psycopg decodes to typed lists). Each statement is a
    network round trip, and the six queries of the SQLite path were most of a catalog page's time
    under load. The page is the bound list ``:shas`` or ``page``, a query of (sha256, pos);
    ``count``, a query of one number, rides along as the column ``total``."""
    if page is None:
        source: Any = func.unnest(bindparam("shas", type_=ARRAY(String))).table_valued(
            "sha256", with_ordinality="pos").render_derived(name="page")
    else:
        source = page.subquery("page")
    p_order = (ImagePath.missing, ImagePath.last_seen.desc(), ImagePath.id)
    n_order = (Note.created, Note.id)
    paths = select(_agg(ImagePath.path, p_order, "paths"), _agg(ImagePath.missing, p_order, "missing")).where(
        ImagePath.sha256 == Image.sha256).lateral("p")
    label = (select(Label.label, Label.who, Label.source, Label.created).where(Label.sha256 == Image.sha256)
             .order_by(Label.created.desc(), Label.id.desc())
             .limit(literal_column("1")).lateral("lab"))  # a literal: the list stays the one parameter
    tags = select(_agg(Tag.tag, (Tag.tag,), "tags")).where(Tag.sha256 == Image.sha256).lateral("t")
    notes = select(_agg(Note.text, n_order, "texts"), _agg(Note.who, n_order, "whos"),
                   _agg(Note.created, n_order, "times")).where(Note.sha256 == Image.sha256).lateral("n")
    meas = select(_agg(Measurement.name, (), "names"), _agg(Measurement.value, (), "meas_values")).where(
        Measurement.sha256 == Image.sha256).lateral("m")
    joined = source.join(Image.__table__, Image.sha256 == source.c.sha256).outerjoin(
        Prediction, Prediction.id == Image.prediction_id)
    for lateral in (paths, label, tags, notes, meas):
        joined = joined.outerjoin(lateral, true())
    query = (select(*Image.__table__.c, Prediction.model_id.label("pred_model_id"), Prediction.top,
                    Prediction.decision.label("pred_decision"), Prediction.candidates,
                    paths.c.paths, paths.c.missing, label.c.label.label("lab_label"), label.c.who.label("lab_who"),
                    label.c.source.label("lab_source"), label.c.created.label("lab_created"), tags.c.tags,
                    notes.c.texts, notes.c.whos, notes.c.times, meas.c.names, meas.c.meas_values)
             .select_from(joined).order_by(source.c.pos))
    return query if count is None else query.add_columns(count.scalar_subquery().label("total"))


def _agg(column: Any, order: Sequence[Any], name: str) -> Any:
    """``array_agg(column ORDER BY order)`` (NULL for no rows)."""
    return func.array_agg(aggregate_order_by(column, *order) if order else column).label(name)


def page_records(conn: Connection, page: Select[Any], params: dict[str, Any]) -> list[ImageRecord]:
    """Records of the hashes ``page`` selects (columns sha256 and pos, with ``params``), in ``pos``
    order, in one statement: a PostgreSQL search page needs no round trip for its hashes first."""
    return [_pg_record(r) for r in conn.execute(_pg_query(page), params)]


def counted_page_records(conn: Connection, page: Select[Any], params: dict[str, Any],
                         count: Select[Any]) -> tuple[list[ImageRecord], int]:
    """``page_records`` and the number ``count`` selects, in one statement (two for an empty page)."""
    rows = conn.execute(_pg_query(page, count), params).all()
    total = rows[0].total if rows else conn.execute(count).scalar_one()
    return [_pg_record(r) for r in rows], total


def load_records(conn: Connection, shas: Sequence[str]) -> list[ImageRecord]:
    """Records for ``shas`` in the given order (unknown hashes are left out)."""
    if not shas:
        return []
    shas = list(dict.fromkeys(shas))
    if conn.dialect.name != "sqlite":
        return [_pg_record(r) for r in conn.execute(_pg_query(), {"shas": shas})]
    q_images, q_paths, q_labels, q_tags, q_notes, q_meas = _queries()
    arg = {"shas": json.dumps(shas)}
    images = {r.sha256: r for r in conn.execute(q_images, arg)}
    paths: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for sha, path, missing in conn.execute(q_paths, arg):
        paths[sha].append((path, bool(missing)))
    labels = {lab.sha256: (lab.label, lab.source, lab.who, lab.created)
              for lab in conn.execute(q_labels, arg)}  # ordered: the last one wins
    tags: dict[str, list[str]] = defaultdict(list)
    for sha, tag in conn.execute(q_tags, arg):
        tags[sha].append(tag)
    notes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in conn.execute(q_notes, arg):
        notes[n.sha256].append({"text": n.text, "who": n.who, "time": n.created})
    meas: dict[str, dict[str, float]] = defaultdict(dict)
    for sha, name, value in conn.execute(q_meas, arg):
        meas[sha][name] = value
    return [_record(img, paths.get(sha, []), labels.get(sha), tags.get(sha, []), notes.get(sha, []), meas.get(sha, {}))
            for sha in shas if (img := images.get(sha)) is not None]


def _pg_record(r: Any) -> ImageRecord:
    """An ``ImageRecord`` from a row of ``_pg_query``."""
    return _record(r, list(zip(r.paths or [], r.missing or [])),
                   (r.lab_label, r.lab_source, r.lab_who, r.lab_created) if r.lab_label is not None else None,
                   r.tags or [], [{"text": t, "who": w, "time": c} for t, w, c in zip(r.texts or [], r.whos or [], r.times or [])],
                   dict(zip(r.names or [], r.meas_values or [])))


def _record(img: Any, plist: list[tuple[str, bool]], lab: tuple[str, str | None, str | None, datetime] | None,
            tags: list[str], notes: list[dict[str, Any]], meas: dict[str, float]) -> ImageRecord:
    """An ``ImageRecord`` from the image row (with its latest prediction's columns) and its parts;
    ``lab`` is the latest label as (label, source, who, time)."""
    pred = img.pred_model_id is not None
    existing = next((p for p, missing in plist if not missing and os.path.exists(p)), None)
    return ImageRecord(
        sha256=img.sha256, path=existing, paths=[p for p, _ in plist], format=img.format, width=img.width,
        height=img.height, bit_depth=img.bit_depth, file_size=img.file_size,
        magnification=img.magnification, pixel_size_m=img.pixel_size_m,
        high_voltage_v=img.high_voltage_v, working_distance_m=img.working_distance_m,
        detector=img.detector, instrument=img.instrument, acquired=img.acquired, ingested=img.ingested,
        model_id=img.pred_model_id,
        top=[(str(c), float(s)) for c, s in (img.top if pred else [])],
        decision=img.pred_decision if pred else None,
        candidates=list(img.candidates or []) if pred else [],
        label=lab[0] if lab else None, label_source=lab[1] if lab else None,
        label_who=lab[2] if lab else None, label_time=lab[3] if lab else None,
        tags=tags, notes=notes, measurements=meas, metadata=img.meta or {},
    )
