"""Engine and transactions: SQLite (WAL, one writer path) or PostgreSQL, chosen by URL.

SQLite allows one writer at a time. Every write here starts with ``BEGIN IMMEDIATE`` (the write
lock is taken up front, so a transaction never fails half-way with "database is locked") and
waits up to ``busy_timeout`` for another process; threads of one process queue on a lock.
PostgreSQL writes run concurrently; code that needs an order locks its rows (``FOR UPDATE``).

An SQLite catalog on a read-only share (its folder cannot be written, so neither can the WAL
files) is opened read-only and immutable: it can be searched and served, and a write fails with
"attempt to write a readonly database".
"""
from __future__ import annotations

import os
import select
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from semcat.catalog.querycount import count_statements
from semcat.errors import SemcatError

BUSY_TIMEOUT_MS = 60_000
POOL_SIZE = 10
"""Connections kept open per process: at least the web server's request threads
(``semcat.web.app.REQUEST_THREADS``); with fewer, each request past them opened and closed one."""


class CatalogError(SemcatError, LookupError):
    """A catalog request that cannot be served (unknown image, ambiguous hash, bad URL)."""


def normalize_url(url: str | Path) -> str:
    """Accept ``postgresql://`` (mapped to psycopg 3), ``sqlite:///...`` or a plain file path."""
    s = str(url)
    if "://" not in s:
        return f"sqlite:///{Path(s).expanduser().resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if s.startswith(prefix):
            return "postgresql+psycopg://" + s[len(prefix):]
    if not (s.startswith("sqlite") or s.startswith("postgresql+")):
        raise CatalogError(
            f"unsupported catalog URL {s!r}: expected sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    return s


def sqlite_read_only(url: str | Path) -> bool:
    """True for a SQLite catalogue file that exists where this process cannot write (a read-only share)."""
    u = make_url(normalize_url(url))
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return False
    path = Path(u.database).expanduser()
    return path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _connect_read_only(path: str) -> sqlite3.Connection:
    """Open a SQLite file read-only; a WAL file on a read-only folder needs ``immutable`` (no -shm)."""
    uri = f"file:{quote(path)}"
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)


def create_catalog_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine with the pragmas and write discipline the catalog relies on.

    JSON columns are decoded by orjson: every record carries its vendor metadata, and decoding it
    with ``json`` was a large part of a catalog page's CPU.
    """
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        extra = {"connect_args": {"options": "-c default_transaction_read_only=on"}} if read_only else {}
        engine = create_engine(url, pool_size=POOL_SIZE, json_deserializer=orjson.loads, **extra)
        event.listen(engine, "checkout", _drop_if_closed_by_server)
        count_statements(engine)
        return engine
    if read_only and u.database:
        path = str(Path(u.database).expanduser())
        engine = create_engine(url, creator=lambda: _connect_read_only(path), pool_size=POOL_SIZE,
                               json_deserializer=orjson.loads)
    else:
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                               pool_size=POOL_SIZE, json_deserializer=orjson.loads)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        if not read_only:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("semcat_write", False)
        # on the driver's connection: through exec_driver_sql this was ~5% of a web request's CPU
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    count_statements(engine)
    return engine


def _drop_if_closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Hand out a pooled PostgreSQL connection only if the server has not closed it.

    Replaces ``pool_pre_ping``, a ``SELECT 1`` round trip on every checkout (with the BEGIN and
    ROLLBACK around each read, three extra round trips per catalogue call:
    ``benchmarks/results/web_load-pg-1client.md``). An idle
    connection has nothing to read unless the server ended it (``pg_terminate_backend``, a restart:
    its last message and end-of-file are waiting), so a zero-timeout poll of the socket finds a dead
    one without a round trip; the pool then discards it and connects anew.
    """
    if dbapi_conn.closed or dbapi_conn.broken:
        raise DisconnectionError("the connection is closed")
    poller = select.poll()  # poll, not select(): file numbers above 1023 are fine
    poller.register(dbapi_conn.fileno(), select.POLLIN)
    if poller.poll(0):
        raise DisconnectionError("the server closed the connection")


class Database:
    """Owns the engine; hands out read connections and serialised write transactions.

    ``read_only`` opens the database so that nothing can be written (a catalogue on a read-only
    share); ``write`` then refuses with a one-line ``CatalogError``.
    """

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = normalize_url(url)
        self.read_only = read_only or sqlite_read_only(self.url)
        self.engine = create_catalog_engine(self.url, read_only=self.read_only)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # PostgreSQL reads in autocommit: no BEGIN and ROLLBACK round trips around each query. Each
        # statement of a READ COMMITTED transaction takes its own snapshot anyway, so reads see the same.
        self._reads = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._write_lock = threading.RLock()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries (SQLite: its implicit transaction is rolled back at the end;
        PostgreSQL: autocommit, each query on its own)."""
        with self._reads.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        if self.read_only:
            raise CatalogError(f"the catalogue {self.url!r} is open read-only: nothing can be changed")
        # SQLite has one writer: threads queue on a lock instead of spinning in the busy handler.
        # PostgreSQL takes row locks itself; a process-wide lock only queued label writes (p95 1.5 s).
        with self._write_lock if self.is_sqlite else nullcontext(), self.engine.connect() as conn:
            conn = conn.execution_options(semcat_write=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()
