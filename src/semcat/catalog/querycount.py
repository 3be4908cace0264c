"""Count the SQL statements a process sends: the web load benchmark's queries-per-request column.

Off unless ``SEMCAT_COUNT_QUERIES`` names a folder (only ``benchmarks/web_load.py`` sets it, for
the server it starts). Then every catalogue engine counts the statements it executes, and a
daemon thread writes the process's running total to ``<folder>/<pid>`` whenever it changed
(at most every ``PERIOD_S``), so the benchmark can read the total before and after its load
without touching the server. On PostgreSQL each statement is a network round trip (a write
transaction adds its BEGIN and COMMIT).
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from semcat._io import atomic_write_bytes

ENV = "SEMCAT_COUNT_QUERIES"
PERIOD_S = 0.25

_counter = itertools.count(1)  # next() is atomic under the GIL: no lock on the hot path
_count = 0
_started = threading.Lock()
_writer: threading.Thread | None = None


def count_statements(engine: Engine) -> None:
    """Count ``engine``'s statements when ``SEMCAT_COUNT_QUERIES`` is set (else do nothing)."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    event.listen(engine, "before_cursor_execute", _counted)
    _start_writer(Path(folder))


def _counted(*_args: Any) -> None:
    global _count
    _count = next(_counter)


def _start_writer(folder: Path) -> None:
    global _writer
    with _started:
        if _writer is None:
            _writer = threading.Thread(target=_write_forever, args=(folder / str(os.getpid()),), daemon=True,
                                       name="semcat-query-count")
            _writer.start()


def _write_forever(path: Path) -> None:
    written = -1
    while True:
        if _count != written:
            written = _count
            atomic_write_bytes(path, str(written).encode(), durable=False)
        time.sleep(PERIOD_S)


def read_total(folder: Path) -> int:
    """The statements counted so far by every process writing into ``folder``."""
    return sum(int(p.read_text() or 0) for p in folder.iterdir() if p.name.isdigit())
