"""Search filters → one SQL query over the indexed, denormalised ``images`` table."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, Select, and_, bindparam, exists, func, literal_column, select, text

from semcat.catalog.schema import Image, ImagePath, Measurement, Tag

ORDERS = ("recent", "oldest", "score", "score_desc", "acquired", "magnification")
"""``recent``: newest ingest first; ``score``: least sure first (review order)."""


@dataclass(frozen=True)
class Filters:
    """Every search filter; None means "don't filter on this"."""

    category: str | None = None
    decision: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    confirmed: bool | None = None
    mag_min: float | None = None
    mag_max: float | None = None
    pixel_size_min: float | None = None
    pixel_size_max: float | None = None
    date_from: date | datetime | None = None
    date_to: date | datetime | None = None
    text: str | None = None
    tag: str | None = None
    measurement: tuple[str, float | None, float | None] | None = None

    def __post_init__(self) -> None:  # hashable (statements are cached per filter set), also from a list
        if self.measurement is not None:
            object.__setattr__(self, "measurement", tuple(self.measurement))


def _day_start(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime.combine(d, time.min)


def _day_end(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime.combine(d, time.max)


def _fts_usable(text_: str) -> bool:
    """SQLite's trigram index answers LIKE patterns of >= 3 characters without escapes."""
    return len(text_) >= 3 and not any(ch in text_ for ch in "%_\\")


_COMMON_TRIGRAM = 20_000
"""A trigram in more paths than this is not used to find a path substring's candidates."""


COUNT_CAP = 10_000
"""Pages and `semcat search` count matches up to here and then say "10,000+": an exact count of
a broad filter reads every matching row (~0.1 s per million)."""


def rare_trigrams(conn: Connection, text_: str | None, *, most: int = 3, probes: int = 8,
                  cache: dict[str, list[str]] | None = None) -> list[str]:
    """Up to ``most`` of the substring's trigrams found in the fewest paths (each in fewer than
    ``_COMMON_TRIGRAM``); [] when the trigram index cannot answer or every trigram is common.

    FTS5 intersects the posting lists of every trigram of a LIKE pattern: for ``user42/Tips`` in
    an archive where every path holds ``/archive/user``, reading the lists of ``use`` and ``ser``
    (a million rows each) took most of a 60 ms search. A few rare trigrams find the candidates
    in ~2 ms, and the whole substring is then checked with LIKE, so ``_`` and ``%`` (common in
    file names, and wildcards to LIKE) are found through the index too. Each trigram is counted
    with a LIMIT, and at most ``probes`` evenly spaced ones, so the choice itself stays cheap.

    ``cache`` (needle → answer) saves the probes when a page searches and then counts: any
    trigrams of the needle find every match, so an answer gone stale costs speed, never results.
    """
    if conn.dialect.name != "sqlite" or not text_ or len(text_) < 3:
        return []
    needle = text_.lower()
    if cache is not None and needle in cache:
        return cache[needle]
    trigrams = list(dict.fromkeys(needle[i:i + 3] for i in range(len(needle) - 2)))
    if len(trigrams) > probes:
        trigrams = [trigrams[round(i * (len(trigrams) - 1) / (probes - 1))] for i in range(probes)]
    counts = {}
    for tri in trigrams:
        counts[tri] = conn.exec_driver_sql(
            "SELECT count(*) FROM (SELECT 1 FROM image_paths_fts WHERE image_paths_fts MATCH ? LIMIT ?)",
            (_phrase(tri), _COMMON_TRIGRAM)).scalar_one()
    rare = sorted((n, tri) for tri, n in counts.items() if n < _COMMON_TRIGRAM)
    found = [tri for _, tri in rare[:most]]
    if cache is not None:
        if len(cache) >= 256:
            cache.clear()
        cache[needle] = found
    return found


def _phrase(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def conditions(f: Filters, *, fts: bool = False, probe: bool = False,
               rare: Sequence[str] = ()) -> list[ColumnElement[bool]]:
    """SQL conditions for the filters that are set (an empty list matches everything).

    ``fts``: answer the path-substring filter from SQLite's trigram table (``image_paths_fts``)
    instead of testing each image's paths (best when few images match); with ``rare`` (from
    :func:`rare_trigrams`) only those trigrams find candidates, which are then checked against
    the whole substring. ``probe``: test tags and
    measurements row by row (``EXISTS`` on their primary key) instead of collecting every match
    first (``IN``): faster when walking an index in result order, where a broad filter's
    collection of 10,000 hashes would cost more than the walk.
    """
    c: list[ColumnElement[bool]] = []
    if f.category is not None:
        c.append(Image.category == f.category)
    if f.decision is not None:
        c.append(Image.decision == f.decision)
    if f.min_score is not None:
        c.append(Image.top1_score >= f.min_score)
    if f.max_score is not None:
        c.append(Image.top1_score <= f.max_score)
    if f.confirmed is True:
        c.append(Image.label.is_not(None))
    elif f.confirmed is False:
        c.append(Image.label.is_(None))
    if f.mag_min is not None:
        c.append(Image.magnification >= f.mag_min)
    if f.mag_max is not None:
        c.append(Image.magnification <= f.mag_max)
    if f.pixel_size_min is not None:
        c.append(Image.pixel_size_m >= f.pixel_size_min)
    if f.pixel_size_max is not None:
        c.append(Image.pixel_size_m <= f.pixel_size_max)
    if f.date_from is not None:
        c.append(Image.acquired >= _day_start(f.date_from))
    if f.date_to is not None:
        c.append(Image.acquired <= _day_end(f.date_to))
    if f.text and fts and rare:
        found = text("SELECT rowid FROM image_paths_fts WHERE image_paths_fts MATCH :fts_query").bindparams(
            fts_query=" AND ".join(map(_phrase, rare))).columns(rowid=Integer)
        c.append(Image.sha256.in_(select(ImagePath.sha256).where(
            ImagePath.id.in_(found), func.lower(ImagePath.path).like(_like_pattern(f.text), escape="\\"))))
    elif f.text and fts and _fts_usable(f.text):
        hits = text("SELECT rowid FROM image_paths_fts WHERE path LIKE :fts_pattern").bindparams(
            fts_pattern=f"%{f.text}%").columns(rowid=Integer)
        c.append(Image.sha256.in_(select(ImagePath.sha256).where(ImagePath.id.in_(hits))))
    elif f.text:
        c.append(exists().where(ImagePath.sha256 == Image.sha256,  # a substring: no index helps
                                func.lower(ImagePath.path).like(_like_pattern(f.text), escape="\\")))
    if f.tag:
        c.append(exists().where(Tag.sha256 == Image.sha256, Tag.tag == f.tag) if probe
                 else Image.sha256.in_(select(Tag.sha256).where(Tag.tag == f.tag)))
    if f.measurement is not None:
        name, lo, hi = f.measurement
        mc = [Measurement.name == name]
        if lo is not None:
            mc.append(Measurement.value >= lo)
        if hi is not None:
            mc.append(Measurement.value <= hi)
        c.append(exists().where(Measurement.sha256 == Image.sha256, *mc) if probe
                 else Image.sha256.in_(select(Measurement.sha256).where(*mc)))
    return c


def _order(order: str, f: Filters) -> list[Any]:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    # With a decision or score filter every row has a score: no NULL handling, so an index
    # on (..., top1_score, sha256) delivers rows already in order.
    scored = f.decision is not None or f.min_score is not None or f.max_score is not None
    nulls_last = [] if scored else [Image.top1_score.is_(None)]
    return {
        "recent": [Image.ingested.desc(), Image.sha256.desc()],
        "oldest": [Image.ingested, Image.sha256],
        "score": [*nulls_last, Image.top1_score, Image.sha256],
        "score_desc": [*nulls_last, Image.top1_score.desc(), Image.sha256.desc()],
        "acquired": [Image.acquired.is_(None), Image.acquired.desc(), Image.sha256],
        "magnification": [Image.magnification.is_(None), Image.magnification, Image.sha256],
    }[order]


def _like_pattern(text_: str) -> str:
    """A case-insensitive LIKE pattern (for ``lower(path)``) matching ``text_`` anywhere."""
    return "%" + text_.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_query(f: Filters, *, limit: int = 100, offset: int = 0, order: str = "recent",
                 fts: bool = False, rare: Sequence[str] = ()) -> Select[Any]:
    """SELECT of matching image hashes, ordered and paged."""
    check_page(limit, offset)
    return _matching(f, order, fts, tuple(rare)).limit(limit).offset(offset)


def check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0; got limit={limit}, offset={offset}")


@lru_cache(maxsize=256)
def ranked_page(f: Filters, order: str) -> Select[Any]:
    """Matching hashes with their place in ``order`` (``pos``), one page of them (bound
    ``page_limit`` and ``page_offset``): a subquery of the records query, so that a PostgreSQL
    search page is one round trip (``records.page_records``). Built once per filter set."""
    return ranked(select(Image.sha256).where(and_(True, *conditions(f))), _order(order, f))


def ranked(query: Select[Any], by: Sequence[Any]) -> Select[Any]:
    """``query`` (of ``Image.sha256``) with each row's place in the order ``by`` as ``pos``, one
    page of it (bound ``page_limit`` and ``page_offset``): the page source of ``records.page_records``."""
    return (query.add_columns(func.row_number().over(order_by=by).label("pos")).order_by(*by)
            .limit(bindparam("page_limit", type_=Integer)).offset(bindparam("page_offset", type_=Integer)))


@lru_cache(maxsize=256)
def _matching(f: Filters, order: str, fts: bool, rare: tuple[str, ...]) -> Select[Any]:
    """Matching hashes in ``order``, unpaged; built once per filter set: building the statement
    cost more CPU than SQLite's answer to it, on every catalog page."""
    return select(Image.sha256).where(and_(True, *conditions(f, fts=fts, rare=rare))).order_by(*_order(order, f))


SAMPLE = 1_000
"""Rows of the newest (or oldest) images sampled to judge how broad a filter is."""
MAX_SCAN = 10_000
"""Walk the ingest-time index when the sample predicts finding the page within this many rows."""

_RANGE_FIELDS = ("mag_min", "mag_max", "pixel_size_min", "pixel_size_max", "date_from", "date_to",
                 "tag", "measurement", "min_score", "max_score", "text")


def _likely(conds: list[ColumnElement[bool]]) -> list[ColumnElement[bool]]:
    """Tell SQLite's planner the conditions are mostly true, so it will not drive from them."""
    return [func.likelihood(c, literal_column("0.9")) for c in conds]


def run_search(conn: Connection, f: Filters, *, limit: int = 100, offset: int = 0,
               order: str = "recent", rare_cache: dict[str, list[str]] | None = None) -> list[str]:
    """Matching hashes, in order. On SQLite, broad range filters walk the ingest-time index.

    SQLite's planner (built without STAT4 histograms) always prefers a range index and then
    sorts every match: 100,000 rows for a wide magnification range at 1M images. So the
    filter is first tried on a sample of ``SAMPLE`` rows in result order; when it is broad
    enough that the page should be found within ``MAX_SCAN`` rows, the conditions are marked
    likely-true and SQLite walks ``ix_images_recent`` in order, stopping after ``limit`` rows.
    Narrow filters keep their index. PostgreSQL has histograms and decides well alone.
    """
    sqlite_ = conn.dialect.name == "sqlite"

    def indexed() -> list[str]:  # the trigram probes run only when this plan is taken
        rare = rare_trigrams(conn, f.text, cache=rare_cache)
        q = search_query(f, limit=limit, offset=offset, order=order, fts=sqlite_, rare=rare)
        return list(conn.execute(q).scalars())

    if not (sqlite_ and order in ("recent", "oldest") and any(getattr(f, k) is not None for k in _RANGE_FIELDS)):
        return indexed()
    conds = conditions(f, probe=True)
    sample = select(Image.sha256).order_by(*_order(order, f)).limit(SAMPLE)
    hits = conn.execute(select(func.count()).select_from(Image)
                        .where(Image.sha256.in_(sample), *_likely(conds))).scalar_one()
    if hits * MAX_SCAN < (limit + offset) * SAMPLE:
        return indexed()
    q = select(Image.sha256).where(*_likely(conds)).order_by(*_order(order, f)).limit(limit).offset(offset)
    return list(conn.execute(q).scalars())


def count_query(f: Filters, *, fts: bool = False, rare: Sequence[str] = (),
                at_most: int | None = None) -> Select[Any]:
    """SELECT COUNT(*) of matching images, or of the first ``at_most`` of them."""
    return _count_query(f, fts, tuple(rare), at_most)


@lru_cache(maxsize=256)
def _count_query(f: Filters, fts: bool, rare: tuple[str, ...], at_most: int | None) -> Select[Any]:
    where = and_(True, *conditions(f, fts=fts, rare=rare))
    if at_most is None:
        return select(func.count()).select_from(Image).where(where)
    if at_most < 0:
        raise ValueError(f"at_most must be >= 0; got {at_most}")
    return select(func.count()).select_from(select(Image.sha256).where(where).limit(at_most).subquery())


def parse_measurement(spec: str) -> tuple[str, float | None, float | None]:
    """``NAME:MIN:MAX`` (either bound may be empty) → (name, min, max)."""
    parts = spec.split(":")
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"measurement filter must be NAME:MIN:MAX (bounds may be empty), got {spec!r}")
    try:
        lo = float(parts[1]) if parts[1] else None
        hi = float(parts[2]) if parts[2] else None
    except ValueError:
        raise ValueError(f"measurement bounds must be numbers, got {spec!r} (e.g. coherency:0.5:)") from None
    return parts[0], lo, hi
