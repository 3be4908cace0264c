"""Recognise "the disk is full" and "this place is read-only" in any error, to say so in one line.

SQLite, PostgreSQL and the file system each report these their own way (``SQLITE_FULL``,
SQLSTATE 53100, ``ENOSPC`` ...), often wrapped by SQLAlchemy; callers (the web app, the CLI) turn
the message into a one-line error instead of a traceback or a bare 500.
"""
from __future__ import annotations

import errno
from typing import Literal

Problem = tuple[Literal["full", "read-only"], str]

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = "SQLITE_FULL"
_SQLITE_READONLY = "SQLITE_READONLY"
_PG_FULL = "53100"  # disk_full
_PG_READONLY = "25006"  # read_only_sql_transaction
FULL_HINT = "the disk is full: free some space (or move the catalogue/storage) and try again"
READ_ONLY_HINT = "the catalogue or its folder is read-only: nothing can be changed here"


def storage_problem(exc: BaseException) -> Problem | None:
    """``("full" | "read-only", message)`` when ``exc`` (or what it wraps) is one of those, else None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        kind = _kind(e)
        if kind is not None:
            return kind, FULL_HINT if kind == "full" else READ_ONLY_HINT
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return None


def _kind(e: BaseException) -> Literal["full", "read-only"] | None:
    name = str(getattr(e, "sqlite_errorname", ""))
    state = str(getattr(e, "sqlstate", "") or "")
    if name == _SQLITE_FULL or state == _PG_FULL:
        return "full"
    if name.startswith(_SQLITE_READONLY) or state == _PG_READONLY:
        return "read-only"
    if isinstance(e, OSError) and not isinstance(e, ConnectionError):
        if e.errno in _FULL_ERRNOS:
            return "full"
        if e.errno == errno.EROFS:
            return "read-only"
    return None
