"""``Catalog``: the one object the CLI, the web app and the Spark engine use to read and write."""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, and_, bindparam, func, literal_column, null, select, type_coerce, union_all, update
from sqlalchemy import text as sql_text
from sqlalchemy.orm import aliased

from semcat.catalog import ingest as _ingest
from semcat.catalog import search as _search
from semcat.catalog.db import CatalogError, Database
from semcat.catalog.migrations import current_version, upgrade
from semcat.catalog.records import ImageRecord, counted_page_records, load_records, page_records
from semcat.catalog.schema import (
    Category,
    SCHEMA_VERSION,
    Feature,
    Image,
    ImagePath,
    IngestError,
    Label,
    Measurement,
    Note,
    Prediction,
    REVIEW_WHERE,
    Tag,
    utcnow,
)
from semcat.catalog.similar import FeatureIndex, bytes_to_vector
from semcat.config import default_db_url, semcat_home

if TYPE_CHECKING:
    from semcat.model import Predictor

LABEL_SOURCES = ("human", "auto")
MAX_CATEGORY = 64
"""Longest category name (the width of ``labels.label``)."""
_HEX = frozenset("0123456789abcdef")


def _resolve(conn: Connection, sha_or_prefix: str) -> str:
    """``Catalog.resolve`` on an open connection, as an index range scan on ``images.sha256``.

    A bare ``LIKE 'prefix%'`` cannot use the primary key (SQLite's LIKE is case-insensitive,
    PostgreSQL's needs C collation), so every lookup scanned the whole table; hex digits sort
    below ``g`` in any collation, so ``prefix <= sha256 < prefix || 'g'`` bounds the same rows.
    """
    s = sha_or_prefix.strip().lower()
    if len(s) < 6 or not _HEX.issuperset(s):
        raise CatalogError(f"expected a SHA-256 hash or a prefix of at least 6 hex digits, got {sha_or_prefix!r}")
    if len(s) == 64:
        found = list(conn.execute(select(Image.sha256).where(Image.sha256 == s)).scalars())
    else:
        found = list(conn.execute(select(Image.sha256).where(
            Image.sha256 >= s, Image.sha256 < s + "g", Image.sha256.like(s + "%")).limit(3)).scalars())
    if not found:
        raise _unknown(sha_or_prefix)
    if len(found) > 1:
        raise CatalogError(f"hash prefix {sha_or_prefix!r} is ambiguous ({', '.join(x[:12] for x in found)}…): "
                           "give more digits")
    return found[0]


def _unknown(sha_or_prefix: str) -> CatalogError:
    return CatalogError(f"no image with hash {sha_or_prefix!r} in the catalog: ingest it first (semcat ingest)")


def _full_hash(sha_or_prefix: str) -> str | None:
    """The hash itself when it is a whole SHA-256, else None (a prefix, to ``_resolve``).

    A caller whose own query finds the image by its whole hash needs no lookup first: on
    PostgreSQL every query is a network round trip, and an image page resolved its hash four times.
    """
    s = sha_or_prefix.strip().lower()
    return s if len(s) == 64 and _HEX.issuperset(s) else None


def _lock_images(conn: Connection, shas: list[str]) -> set[str]:
    """Lock the rows of these images (PostgreSQL ``FOR UPDATE``; SQLite has one writer) and return
    the hashes found: concurrent confirmations of one image queue on its row lock, so the label
    shown is always the latest one stored."""
    found: set[str] = set()
    for i in range(0, len(shas), 1000):
        found.update(conn.execute(select(Image.sha256).where(Image.sha256.in_(shas[i:i + 1000]))
                                  .with_for_update()).scalars())
    return found


def _write_labels(conn: Connection, shas: list[str], label: str, who: str | None, source: str) -> None:
    """Insert the label rows and update the images' latest label (full hashes, locked by the caller
    with ``_lock_images``)."""
    now = utcnow()
    conn.execute(Label.__table__.insert(), [{"sha256": s, "label": label, "who": who, "source": source,
                                             "created": now} for s in shas])
    for i in range(0, len(shas), 1000):
        conn.execute(update(Image).where(Image.sha256.in_(shas[i:i + 1000]))
                     .values(label=label, label_source=source, category=label))


_Q_HISTORY = union_all(
    select(literal_column("'prediction'").label("kind"), Prediction.created.label("time"), Prediction.model_id,
           Prediction.top, Prediction.decision, Prediction.candidates, type_coerce(null(), Label.label.type).label("label"),
           type_coerce(null(), Label.who.type).label("who"), type_coerce(null(), Label.source.type).label("source"),
           type_coerce(null(), Label.id.type).label("id"))
    .select_from(Image).outerjoin(Prediction, Prediction.sha256 == Image.sha256).where(Image.sha256 == bindparam("sha")),
    select(literal_column("'label'"), Label.created, null(), null(), null(), null(), Label.label, Label.who,
           Label.source, Label.id).where(Label.sha256 == bindparam("sha")))
"""An image's predictions and labels in one statement: no row when it is not catalogued, a
prediction row without a time when it has no prediction (the image row itself)."""
_Q_REVIEW_PAGE = _search.ranked(select(Image.sha256).where(sql_text(REVIEW_WHERE)), (Image.top1_score, Image.sha256))
"""The review queue's page (PostgreSQL), in the order of its partial index ix_images_review."""
_Q_REVIEW_COUNT = select(func.count()).select_from(Image).where(sql_text(REVIEW_WHERE))
_OTHER = aliased(Image)
_Q_DUPLICATES = (select(_OTHER.sha256).select_from(Image).outerjoin(_OTHER, and_(
    _OTHER.dup_group == Image.dup_group, _OTHER.sha256 != Image.sha256)).where(Image.sha256 == bindparam("sha"))
    .order_by(_OTHER.sha256))
"""The other images of an image's duplicate group: no row when it is not catalogued, one NULL when it has none."""


class Catalog:
    """A catalog database (SQLite or PostgreSQL), created or upgraded on open."""

    def __init__(self, url: str | Path, *, read_only: bool = False) -> None:
        self.db = Database(str(url), read_only=read_only)
        self.url = self.db.url
        self._rare_trigrams: dict[str, list[str]] = {}  # path-substring needle → trigrams to look up
        if self.db.read_only:  # asked for, or a SQLite file on a read-only share
            with self.db.read() as conn:
                found = current_version(conn)
            if found != SCHEMA_VERSION:
                raise CatalogError(f"cannot open {self.url!r} read-only: its schema is version {found}, this "
                                   f"semcat needs {SCHEMA_VERSION}; open it once where it can be written")
            return
        with self.db.write() as conn:
            upgrade(conn)

    def close(self) -> None:
        """Release pooled connections."""
        self.db.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.db.engine.url.render_as_string(hide_password=True)!r})"

    # ---- ingest -------------------------------------------------------------------------------
    def ingest(self, inputs: Iterable[str | Path], model: Predictor | None = None, *,
               batch_size: int = 64, progress: bool = True, follow_links: bool = False) -> _ingest.IngestSummary:
        """Catalogue images under ``inputs``; see ``semcat.catalog.ingest``."""
        return _ingest.ingest(self.db, inputs, model, batch_size=batch_size, progress=progress,
                              follow_links=follow_links)

    # ---- queries -------------------------------------------------------------------------------
    def search(self, *, category: str | None = None, decision: str | None = None,
               min_score: float | None = None, max_score: float | None = None, confirmed: bool | None = None,
               mag_min: float | None = None, mag_max: float | None = None,
               pixel_size_min: float | None = None, pixel_size_max: float | None = None,
               date_from: date | datetime | None = None, date_to: date | datetime | None = None,
               text: str | None = None, tag: str | None = None,
               measurement: tuple[str, float | None, float | None] | None = None,
               limit: int = 100, offset: int = 0, order: str = "recent") -> list[ImageRecord]:
        """Images matching every filter that is set (``category`` = confirmed label, else top-1)."""
        f = _search.Filters(category, decision, min_score, max_score, confirmed, mag_min, mag_max,
                            pixel_size_min, pixel_size_max, date_from, date_to, text, tag, measurement)
        with self.db.read() as conn:
            if not self.db.is_sqlite:  # the page's hashes are a subquery of the records query: one round trip
                _search.check_page(limit, offset)
                return page_records(conn, _search.ranked_page(f, order), {"page_limit": limit, "page_offset": offset})
            return load_records(conn, _search.run_search(conn, f, limit=limit, offset=offset, order=order,
                                                         rare_cache=self._rare_trigrams))

    def search_page(self, *, limit: int = 100, offset: int = 0, order: str = "recent", count_at_most: int | None = None,
                    **filters: Any) -> tuple[list[ImageRecord], int]:
        """``search`` and ``count`` (up to ``count_at_most``) of the same filters, as a catalog page
        shows them: on PostgreSQL in one statement, the count a column of the page's records."""
        if self.db.is_sqlite:
            return (self.search(limit=limit, offset=offset, order=order, **filters),
                    self.count(at_most=count_at_most, **filters))
        f = _search.Filters(**filters)
        _search.check_page(limit, offset)
        with self.db.read() as conn:
            return counted_page_records(conn, _search.ranked_page(f, order), {"page_limit": limit, "page_offset": offset},
                                        _search.count_query(f, at_most=count_at_most))

    def count(self, *, at_most: int | None = None, **filters: Any) -> int:
        """Number of images matching the same keyword filters as ``search``.

        ``at_most`` stops counting there (see ``search.COUNT_CAP``): an exact count of a broad
        filter reads every matching row.
        """
        with self.db.read() as conn:
            f = _search.Filters(**filters)
            rare = _search.rare_trigrams(conn, f.text, cache=self._rare_trigrams)
            q = _search.count_query(f, fts=conn.dialect.name == "sqlite", rare=rare, at_most=at_most)
            return conn.execute(q).scalar_one()

    def iter_records(self, batch: int = 500, **filters: Any) -> Iterator[ImageRecord]:
        """Every matching record in hash order, in pages (constant memory, for export)."""
        f = _search.Filters(**filters)
        last = ""
        while True:
            with self.db.read() as conn:
                shas = list(conn.execute(
                    select(Image.sha256).where(and_(Image.sha256 > last, *_search.conditions(f)))
                    .order_by(Image.sha256).limit(batch)).scalars())
                if not shas:
                    return
                records = load_records(conn, shas)
            yield from records
            last = shas[-1]

    def resolve(self, sha_or_prefix: str) -> str:
        """Full hash for a hash or unique prefix (at least 6 hex digits); CatalogError otherwise."""
        with self.db.read() as conn:
            return _resolve(conn, sha_or_prefix)

    def get(self, sha256: str) -> ImageRecord | None:
        """The record of one image (full hash or unique prefix), or None when it is not catalogued."""
        with self.db.read() as conn:
            sha = _full_hash(sha256)
            if sha is None:
                try:
                    sha = _resolve(conn, sha256)
                except CatalogError:
                    return None
            recs = load_records(conn, [sha])
        return recs[0] if recs else None

    def history(self, sha256: str) -> list[dict[str, Any]]:
        """Predictions and labels of one image, oldest first."""
        events: list[dict[str, Any]] = []
        with self.db.read() as conn:
            sha = _full_hash(sha256) or _resolve(conn, sha256)
            rows = conn.execute(_Q_HISTORY, {"sha": sha}).all()  # Core rows: no ORM objects per image page
        if not rows:
            raise _unknown(sha256)
        for r in rows:
            if r.kind == "label":
                events.append({"kind": "label", "time": r.time, "label": r.label, "who": r.who,
                               "source": r.source, "id": r.id})
            elif r.time is not None:
                events.append({"kind": "prediction", "time": r.time, "model_id": r.model_id,
                               "top": r.top, "decision": r.decision, "candidates": r.candidates})
        events.sort(key=lambda e: (e["time"], e["kind"] == "label", e.get("id", 0)))
        for e in events:
            e.pop("id", None)
            e["time"] = e["time"].isoformat()
        return events

    def records(self, shas: Iterable[str]) -> list[ImageRecord]:
        """Records of these full hashes, in the given order (unknown hashes left out)."""
        with self.db.read() as conn:
            return load_records(conn, list(shas))

    def review_queue(self, limit: int = 50, offset: int = 0) -> list[ImageRecord]:
        """Unconfirmed images whose decision needs a person, least sure first (``offset`` skipped)."""
        with self.db.read() as conn:
            if not self.db.is_sqlite:  # one round trip, as for a search page
                return page_records(conn, _Q_REVIEW_PAGE, {"page_limit": limit, "page_offset": offset})
            shas = list(conn.execute(  # served in order by the partial index ix_images_review
                select(Image.sha256).where(sql_text(REVIEW_WHERE))
                .order_by(Image.top1_score, Image.sha256).limit(limit).offset(offset)).scalars())
            return load_records(conn, shas)

    def review_count(self) -> int:
        """Number of images in the review queue (what ``review_queue`` would list without a limit)."""
        with self.db.read() as conn:
            return conn.execute(_Q_REVIEW_COUNT).scalar_one()

    def review_page(self, limit: int = 50, offset: int = 0) -> tuple[list[ImageRecord], int]:
        """``review_queue`` and ``review_count`` together, as the review page shows them: on
        PostgreSQL one statement, the count a column of the queue's records."""
        if self.db.is_sqlite:
            return self.review_queue(limit, offset), self.review_count()
        with self.db.read() as conn:
            return counted_page_records(conn, _Q_REVIEW_PAGE, {"page_limit": limit, "page_offset": offset},
                                        _Q_REVIEW_COUNT)

    def stats(self) -> dict[str, Any]:
        """Counts: images, per category, per decision, confirmed/unconfirmed, errors, missing paths."""
        with self.db.read() as conn:
            total = conn.execute(select(func.count()).select_from(Image)).scalar_one()
            cats = dict(conn.execute(select(Image.category, func.count()).group_by(Image.category)).all())
            decs = dict(conn.execute(select(Image.decision, func.count()).group_by(Image.decision)).all())
            confirmed = conn.execute(select(func.count()).select_from(Image).where(Image.label.is_not(None))).scalar_one()
            errors = conn.execute(select(func.count()).select_from(IngestError)).scalar_one()
            missing = conn.execute(select(func.count()).select_from(ImagePath).where(ImagePath.missing.is_(True))).scalar_one()
        return {
            "images": total,
            "categories": {k if k is not None else "(none)": v for k, v in sorted(cats.items(), key=lambda kv: str(kv[0]))},
            "decisions": {k if k is not None else "(none)": v for k, v in sorted(decs.items(), key=lambda kv: str(kv[0]))},
            "confirmed": confirmed, "unconfirmed": total - confirmed, "errors": errors, "missing_paths": missing,
        }

    def errors(self, limit: int = 1000) -> list[tuple[str, str]]:
        """Files the last ingests could not catalogue: (path, problem)."""
        with self.db.read() as conn:
            return [tuple(r) for r in conn.execute(
                select(IngestError.path, IngestError.message).order_by(IngestError.path).limit(limit))]

    def confirmed_labels(self) -> list[tuple[str, str, str]]:
        """(path, sha256, label) of every confirmed image whose file still exists, for retraining."""
        out = []
        for rec in self.iter_records(confirmed=True):
            if rec.path is not None and rec.label is not None:
                out.append((rec.path, rec.sha256, rec.label))
        return out

    def confirmation_count(self) -> int:
        """Labels people have confirmed, counting each confirmation (undone ones are gone): the
        clock of background retraining (``semcat serve --retrain-every``)."""
        with self.db.read() as conn:
            return conn.execute(select(func.count()).select_from(Label).where(Label.source == "human")).scalar_one()

    def existing_path(self, sha256: str) -> Path | None:
        """A catalogued file with this content that still exists on disk."""
        with self.db.read() as conn:
            paths = conn.execute(select(ImagePath.path).where(ImagePath.sha256 == sha256)
                                 .order_by(ImagePath.missing, ImagePath.last_seen.desc())).scalars()
            return next((Path(p) for p in paths if os.path.exists(p)), None)

    def file_candidates(self, sha256: str) -> tuple[int | None, list[Path]]:
        """(catalogued size, its paths: present ones first, newest first); (None, []) if not catalogued."""
        with self.db.read() as conn:
            size = conn.execute(select(Image.file_size).where(Image.sha256 == sha256)).scalar()
            paths = conn.execute(select(ImagePath.path).where(ImagePath.sha256 == sha256)
                                 .order_by(ImagePath.missing, ImagePath.last_seen.desc())).scalars()
            return size, [Path(p) for p in paths]

    def mark_missing(self, paths: Iterable[str | Path]) -> None:
        """Flag paths that no longer hold their catalogued content (gone, replaced or a bad symlink)."""
        names = [str(p) for p in paths]
        if names:
            with self.db.write() as conn:
                conn.execute(update(ImagePath).where(ImagePath.path.in_(names)).values(missing=True))

    # ---- writes by people (review) ---------------------------------------------------------------
    def confirm(self, sha256: str, label: str, *, who: str | None, source: str = "human",
                allowed: Iterable[str] | None = None) -> str:
        """Record a confirmed class; the latest label wins and the older ones stay in history.
        Returns the image's full hash (``sha256`` may be a unique prefix).

        A label must be a known category (``allowed``, else :meth:`known_labels`): an unknown
        one is refused, never stored, so a typo cannot start a class of its own. Create a new
        category first with :meth:`add_category`.
        """
        self._check_label(label, source, allowed)
        with self.db.write() as conn:
            sha = _full_hash(sha256) or _resolve(conn, sha256)
            if not _lock_images(conn, [sha]):
                raise _unknown(sha256)
            _write_labels(conn, [sha], label, who, source)
        return sha

    def confirm_many(self, shas: Iterable[str], label: str, *, who: str | None, source: str = "human",
                     allowed: Iterable[str] | None = None) -> int:
        """:meth:`confirm` for many full hashes in one transaction (all or none); returns how many.
        CatalogError when a hash is not catalogued."""
        shas = list(dict.fromkeys(shas))
        self._check_label(label, source, allowed)
        with self.db.write() as conn:
            found = _lock_images(conn, shas)
            missing = [s for s in shas if s not in found]
            if missing:
                raise CatalogError(f"{len(missing)} of {len(shas)} hashes are not catalogued "
                                   f"(first: {missing[0][:16]!r}); nothing was labelled")
            _write_labels(conn, shas, label, who, source)
        return len(shas)

    def _check_label(self, label: str, source: str, allowed: Iterable[str] | None) -> None:
        if not label or not label.strip():
            raise ValueError("label must be a non-empty class name")
        if source not in LABEL_SOURCES:
            raise ValueError(f"source must be one of {', '.join(LABEL_SOURCES)}; got {source!r}")
        known = set(allowed) if allowed is not None else set(self.known_labels())
        if label not in known:
            raise ValueError(f"label {label!r} is not a known category ({', '.join(sorted(known))}); "
                             f"create it first (semcat category add {label!r}, or 'New category' "
                             "on the review page) or pick an existing one")

    def undo_label(self, sha256: str, *, who: str | None = None) -> str | None:
        """Remove the latest label of an image (it is kept nowhere: undo is for a slip of the key);
        the one before it, if any, is in effect again and returned. With ``who``, only a latest
        label by ``who`` is removed (CatalogError otherwise)."""
        with self.db.write() as conn:
            sha = _resolve(conn, sha256)
            rows = conn.execute(select(Label.id, Label.label, Label.source, Label.who).where(Label.sha256 == sha)
                                .order_by(Label.created.desc(), Label.id.desc()).limit(2)).all()
            if not rows:
                raise CatalogError(f"image {sha[:12]} has no label to undo")
            if who is not None and rows[0].who != who:
                raise CatalogError(f"the latest label of image {sha[:12]} is by {rows[0].who!r}, not you: "
                                   "only your own last label can be undone")
            conn.execute(Label.__table__.delete().where(Label.id == rows[0].id))
            before = rows[1] if len(rows) > 1 else None
            top1 = conn.execute(select(Image.top1).where(Image.sha256 == sha)).scalar()
            conn.execute(update(Image).where(Image.sha256 == sha).values(
                label=before.label if before else None, label_source=before.source if before else None,
                category=before.label if before else top1))
        return before.label if before else None

    # ---- categories --------------------------------------------------------------------------------
    def categories(self) -> list[str]:
        """Categories created by people (:meth:`add_category`), oldest first."""
        with self.db.read() as conn:
            return list(conn.execute(select(Category.name).order_by(Category.created, Category.name)).scalars())

    def add_category(self, name: str, *, who: str | None) -> str:
        """Create a category (creating an existing one is a no-op); returns the cleaned name."""
        name = (name or "").strip()
        if not name or len(name) > MAX_CATEGORY or not name.isprintable():
            raise ValueError(f"category name must be 1-{MAX_CATEGORY} printable characters; got {name[:80]!r}")
        with self.db.write() as conn:
            conn.execute(_ingest._insert(conn)(Category).values(name=name, who=who, created=utcnow())
                         .on_conflict_do_nothing())
        return name

    def known_labels(self) -> list[str]:
        """Labels :meth:`confirm` accepts by default: the 10 NFFA categories, created categories,
        every class a model predicted into this catalog and every label already confirmed."""
        from semcat import CATEGORIES

        with self.db.read() as conn:
            predicted = conn.execute(select(Prediction.top1).distinct()).scalars()
            labelled = conn.execute(select(Image.label).distinct()).scalars()
            found = {x for x in [*predicted, *labelled] if x}
        created = self.categories()
        return list(dict.fromkeys([*CATEGORIES, *created, *sorted(found)]))

    def add_tag(self, sha256: str, tag: str) -> None:
        """Tag an image (adding the same tag twice is a no-op)."""
        tag = tag.strip()
        if not tag:
            raise ValueError("tag must be a non-empty string")
        with self.db.write() as conn:
            sha = _resolve(conn, sha256)
            conn.execute(_ingest._insert(conn)(Tag).values(sha256=sha, tag=tag).on_conflict_do_nothing())

    def remove_tag(self, sha256: str, tag: str) -> None:
        """Remove a tag (absent tags are ignored)."""
        with self.db.write() as conn:
            sha = _resolve(conn, sha256)
            conn.execute(Tag.__table__.delete().where(Tag.sha256 == sha, Tag.tag == tag))

    def add_note(self, sha256: str, text: str, *, who: str | None) -> None:
        """Attach a free-text note."""
        if not text.strip():
            raise ValueError("note text must not be empty")
        with self.db.write() as conn:
            sha = _resolve(conn, sha256)
            conn.execute(Note.__table__.insert().values(sha256=sha, text=text, who=who, created=utcnow()))

    def set_measurement(self, sha256: str, name: str, value: float, *, source: str | None) -> None:
        """Set (or replace) a named numeric measurement, e.g. ``alignment_coherency``."""
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"measurement {name!r} must be a finite number; got {value}")
        now = utcnow()
        with self.db.write() as conn:
            sha = _resolve(conn, sha256)
            conn.execute(_ingest._insert(conn)(Measurement).values(
                sha256=sha, name=name, value=value, source=source, created=now,
            ).on_conflict_do_update(index_elements=["sha256", "name"],
                                    set_={"value": value, "source": source, "created": now}))

    # ---- similarity ------------------------------------------------------------------------------
    def similar(self, sha256: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` images whose backbone features are closest (cosine) to this one's."""
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        with self.db.read() as conn:
            sha = _full_hash(sha256) or _resolve(conn, sha256)
            row = conn.execute(select(Feature.key, Feature.vector).select_from(Image)  # no row: not catalogued
                               .outerjoin(Feature, Feature.sha256 == Image.sha256).where(Image.sha256 == sha)
                               .limit(1)).first()
        if row is None:
            raise _unknown(sha256)
        if row.key is None:
            raise CatalogError(f"image {sha[:12]} has no stored features: ingest it with a model "
                               "(semcat ingest DIR --model MODEL) to enable similarity search")
        return FeatureIndex(self.db, row[0], self._index_dir()).query(bytes_to_vector(row[1]), k, exclude=sha)

    def feature_summary(self) -> tuple[str, int, int] | None:
        """(key, vectors, largest row id) of the most common feature key, None without features:
        what changes whenever vectors are added, so callers can cache what they derive."""
        with self.db.read() as conn:
            row = conn.execute(select(Feature.key, func.count(), func.max(Feature.id)).group_by(Feature.key)
                               .order_by(func.count().desc(), Feature.key).limit(1)).first()
        return (row[0], int(row[1]), int(row[2])) if row else None

    def image_states(self) -> dict[str, tuple[str | None, str | None, bool]]:
        """Every image's (category, decision, confirmed), in one query (for the map)."""
        with self.db.read() as conn:
            return {sha: (cat, dec, label is not None) for sha, cat, dec, label in conn.execute(
                select(Image.sha256, Image.category, Image.decision, Image.label))}

    def features(self, shas: Iterable[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Stored feature vectors (of the most common feature key): (hashes, matrix N x D),
        for ``shas`` (those without features left out) or for every image."""
        with self.db.read() as conn:
            key = conn.execute(select(Feature.key).group_by(Feature.key)
                               .order_by(func.count().desc(), Feature.key).limit(1)).scalar()
            if key is None:
                return [], np.zeros((0, 0), np.float32)
            q = select(Feature.sha256, Feature.vector).where(Feature.key == key)
            rows = []
            if shas is None:
                rows = conn.execute(q).all()
            else:
                wanted = list(shas)
                for i in range(0, len(wanted), 1000):
                    rows += conn.execute(q.where(Feature.sha256.in_(wanted[i:i + 1000]))).all()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        return [r[0] for r in rows], np.stack([bytes_to_vector(r[1]) for r in rows])

    # ---- duplicate groups ------------------------------------------------------------------------
    def set_duplicate_groups(self, groups: Iterable[Iterable[str]]) -> int:
        """Replace the stored duplicate groups (lists of full hashes); returns how many were stored."""
        n = 0
        with self.db.write() as conn:
            conn.execute(update(Image).where(Image.dup_group.is_not(None)).values(dup_group=None))
            for group in groups:
                members = sorted(set(group))
                if len(members) > 1:
                    conn.execute(update(Image).where(Image.sha256.in_(members)).values(dup_group=members[0]))
                    n += 1
        return n

    def duplicate_keys(self) -> dict[str, str]:
        """Every grouped image's group key (hash → the group's smallest hash), for splits."""
        with self.db.read() as conn:
            return dict(conn.execute(select(Image.sha256, Image.dup_group).where(Image.dup_group.is_not(None))).all())

    def duplicates_of(self, sha256: str) -> list[str]:
        """The other images of this image's duplicate group (empty when it has none)."""
        with self.db.read() as conn:
            sha = _full_hash(sha256) or _resolve(conn, sha256)
            found = list(conn.execute(_Q_DUPLICATES, {"sha": sha}).scalars())
        if not found:
            raise _unknown(sha256)
        return [s for s in found if s is not None]

    def _index_dir(self) -> Path:
        db = self.db.engine.url.database
        if self.db.is_sqlite and db and db != ":memory:":
            return Path(db + ".similar")
        return semcat_home() / "similar"


def open_catalog(url: str | Path | None = None, *, read_only: bool = False) -> Catalog:
    """Open (creating or upgrading as needed) the catalog at ``url``.

    ``url`` defaults to ``semcat.config.default_db_url()`` (``$SEMCAT_DB`` or SQLite in the
    semcat home). ``postgresql://`` URLs use psycopg 3. ``read_only`` opens it without writing
    anything (not even an upgrade): the schema must already be current.
    """
    return Catalog(url if url is not None else default_db_url(), read_only=read_only)
