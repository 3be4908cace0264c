"""SQLAlchemy 2 models of the catalog.

History tables (predictions, labels, notes) keep everything; the ``images`` row also carries
the *latest* prediction and label (``top1``, ``top1_score``, ``decision``, ``label``,
``category``) so that search filters hit one indexed table even with millions of rows.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from semcat import DECISIONS

SCHEMA_VERSION = 4
"""Bump together with a new function in ``migrations.MIGRATIONS``."""


def utcnow() -> datetime:
    """Timezone-naive UTC (stored the same way on SQLite and PostgreSQL)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is the whole catalog schema."""


_SHA = String(64)

REVIEW_DECISIONS = tuple(d for d in DECISIONS if d != "auto")
"""Decisions that need a person; unconfirmed images with one of them form the review queue."""
REVIEW_WHERE = f"label IS NULL AND decision IN ({', '.join(repr(d) for d in REVIEW_DECISIONS)})"
"""The review queue's condition, also the predicate of its partial index (keep them identical)."""


class SchemaVersion(Base):
    """One row: the schema version this database was migrated to."""

    __tablename__ = "schema_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class Image(Base):
    """One image, identified by the SHA-256 of its bytes, with its latest state denormalised."""

    __tablename__ = "images"
    sha256: Mapped[str] = mapped_column(_SHA, primary_key=True)
    file_size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    bit_depth: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    vendor: Mapped[str | None] = mapped_column(String(64))
    instrument: Mapped[str | None] = mapped_column(String(200))
    magnification: Mapped[float | None] = mapped_column(Float, index=True)
    pixel_size_m: Mapped[float | None] = mapped_column(Float, index=True)
    high_voltage_v: Mapped[float | None] = mapped_column(Float)
    working_distance_m: Mapped[float | None] = mapped_column(Float)
    detector: Mapped[str | None] = mapped_column(String(64))
    acquired: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, key="meta")
    ingested: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # latest prediction (denormalised from ``predictions``)
    prediction_id: Mapped[int | None] = mapped_column(Integer)
    model_id: Mapped[str | None] = mapped_column(String(64))
    top1: Mapped[str | None] = mapped_column(String(64))
    top1_score: Mapped[float | None] = mapped_column(Float)
    decision: Mapped[str | None] = mapped_column(String(16))
    # latest label (denormalised from ``labels``)
    label: Mapped[str | None] = mapped_column(String(64))
    label_source: Mapped[str | None] = mapped_column(String(16))
    # label if confirmed, else top1: what "category" means in a search
    category: Mapped[str | None] = mapped_column(String(64))
    # duplicate group (``semcat duplicates``): the smallest hash of the group, None when alone
    dup_group: Mapped[str | None] = mapped_column(_SHA)

    # Each index serves one filter *in result order* (LIMIT stops early instead of sorting).
    __table_args__ = (
        Index("ix_images_recent", "ingested", "sha256"),
        Index("ix_images_category_recent", "category", "ingested", "sha256"),
        Index("ix_images_category_score", "category", "top1_score", "sha256"),
        Index("ix_images_decision_recent", "decision", "ingested", "sha256"),
        Index("ix_images_label_decision_score", "label", "decision", "top1_score", "sha256"),
        Index("ix_images_score", "top1_score", "sha256"),
        Index("ix_images_dup_group", "dup_group"),
        Index("ix_images_review", "top1_score", "sha256",
              sqlite_where=text(REVIEW_WHERE), postgresql_where=text(REVIEW_WHERE)),
    )


class ImagePath(Base):
    """Where an image was seen. A path holds one image at a time; an image may have many paths."""

    __tablename__ = "image_paths"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(_SHA, ForeignKey("images.sha256", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)


class Prediction(Base):
    """One model's prediction for one image (at most one per model: re-ingest never re-classifies)."""

    __tablename__ = "predictions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(_SHA, ForeignKey("images.sha256", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    top: Mapped[list[Any]] = mapped_column(JSON)
    top1: Mapped[str | None] = mapped_column(String(64), index=True)
    top1_score: Mapped[float | None] = mapped_column(Float, index=True)
    decision: Mapped[str | None] = mapped_column(String(16))
    candidates: Mapped[list[Any] | None] = mapped_column(JSON)
    ood_score: Mapped[float | None] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("sha256", "model_id", name="uq_predictions_image_model"),)


class Label(Base):
    """A confirmed class. The latest one wins; older ones stay as history."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(_SHA, ForeignKey("images.sha256", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    who: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))  # "human" | "auto"
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Tag(Base):
    """A free-form tag on an image."""

    __tablename__ = "tags"
    sha256: Mapped[str] = mapped_column(_SHA, ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(200), primary_key=True)

    __table_args__ = (Index("ix_tags_tag", "tag"),)


class Note(Base):
    """A free-text note by a person."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(_SHA, ForeignKey("images.sha256", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    who: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Measurement(Base):
    """A named numeric value per image (e.g. alignment coherency); setting it again replaces it."""

    __tablename__ = "measurements"
    sha256: Mapped[str] = mapped_column(_SHA, ForeignKey("images.sha256", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_measurements_name_value", "name", "value"),)


class IngestError(Base):
    """The last problem met with a file; removed when the file is later ingested fine."""

    __tablename__ = "errors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True)
    message: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Feature(Base):
    """Backbone feature vector (float32 bytes) per image and feature key, for ``similar``."""

    __tablename__ = "features"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(_SHA, ForeignKey("images.sha256", ondelete="CASCADE"))
    vector: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        UniqueConstraint("key", "sha256", name="uq_features_key_image"),
        Index("ix_features_sha256", "sha256"),
    )


class Category(Base):
    """A category created by a person beyond the model's classes (a label outside both is refused)."""

    __tablename__ = "categories"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    who: Mapped[str | None] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


V1_TABLES = ("schema_version", "images", "image_paths", "predictions", "labels", "tags", "notes", "measurements")
"""Tables of schema version 1 (version 2 added ``errors`` and ``features``, version 3 the
path trigram index, version 4 ``images.dup_group`` and ``categories``: see ``migrations.py``)."""
