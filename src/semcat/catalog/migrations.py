"""Schema versions: a ``schema_version`` row plus ordered upgrade functions.

A new database gets the current schema in one go and is stamped with ``SCHEMA_VERSION``.
An older one runs each missing step in order, inside the caller's write transaction, so a
failed upgrade leaves the database as it was.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import DBAPIError

from semcat.catalog.schema import SCHEMA_VERSION, Base, Category, Feature, Image, IngestError, SchemaVersion


def _v2_errors_and_features(conn: Connection) -> None:
    """Version 2: per-file ingest errors and stored feature vectors for ``similar``."""
    IngestError.__table__.create(conn, checkfirst=True)
    Feature.__table__.create(conn, checkfirst=True)


def _v3_path_search(conn: Connection) -> None:
    """Version 3: a trigram index so ``search(text=...)`` (path substring) needs no full scan.

    SQLite: an FTS5 trigram table kept in sync with ``image_paths`` by triggers. PostgreSQL: a
    pg_trgm GIN index on ``lower(path)``; skipped (substring search then scans) when the
    extension cannot be installed.
    """
    if conn.dialect.name == "sqlite":
        for stmt in _SQLITE_PATH_FTS:
            conn.exec_driver_sql(stmt)
        conn.exec_driver_sql("INSERT INTO image_paths_fts(image_paths_fts) VALUES ('rebuild')")
    elif conn.dialect.name == "postgresql":
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
                conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_image_paths_trgm ON image_paths "
                                     "USING gin (lower(path) public.gin_trgm_ops)")
        except DBAPIError:
            pass


def _v4_duplicates_and_categories(conn: Connection) -> None:
    """Version 4: ``images.dup_group`` (near-duplicate groups) and the ``categories`` table."""
    insp = inspect(conn)
    if "dup_group" not in {c["name"] for c in insp.get_columns("images")}:
        conn.exec_driver_sql("ALTER TABLE images ADD COLUMN dup_group VARCHAR(64)")
    if "ix_images_dup_group" not in {i["name"] for i in insp.get_indexes("images")}:
        next(i for i in Image.__table__.indexes if i.name == "ix_images_dup_group").create(conn)
    Category.__table__.create(conn, checkfirst=True)


_SQLITE_PATH_FTS = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS image_paths_fts USING fts5("
    "path, content='image_paths', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS image_paths_ai AFTER INSERT ON image_paths BEGIN "
    "INSERT INTO image_paths_fts(rowid, path) VALUES (new.id, new.path); END",
    "CREATE TRIGGER IF NOT EXISTS image_paths_ad AFTER DELETE ON image_paths BEGIN "
    "INSERT INTO image_paths_fts(image_paths_fts, rowid, path) VALUES ('delete', old.id, old.path); END",
    "CREATE TRIGGER IF NOT EXISTS image_paths_au AFTER UPDATE OF path ON image_paths BEGIN "
    "INSERT INTO image_paths_fts(image_paths_fts, rowid, path) VALUES ('delete', old.id, old.path); "
    "INSERT INTO image_paths_fts(rowid, path) VALUES (new.id, new.path); END",
)

MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _v2_errors_and_features, 3: _v3_path_search,
                                                      4: _v4_duplicates_and_categories}
"""Target version -> function that upgrades from the version before it."""


def current_version(conn: Connection) -> int | None:
    """The stamped version, or None for an empty database."""
    if not inspect(conn).has_table(SchemaVersion.__tablename__):
        return None
    return conn.execute(select(SchemaVersion.version)).scalar()


def upgrade(conn: Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; returns the version it started from (0 = new)."""
    if conn.dialect.name == "postgresql":  # serialise concurrent first opens
        conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    version = current_version(conn)
    if version is None:
        Base.metadata.create_all(conn)
        _v3_path_search(conn)  # objects outside the SQLAlchemy metadata
        conn.execute(SchemaVersion.__table__.insert().values(id=1, version=SCHEMA_VERSION))
        return 0
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"catalog schema version {version} is newer than this semcat understands "
            f"({SCHEMA_VERSION}); upgrade semcat"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[target](conn)
        conn.execute(SchemaVersion.__table__.update().values(version=target))
    return version
