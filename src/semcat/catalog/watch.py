"""Watch a microscope's output folder and ingest images once they are completely written.

A microscope (or a copy over the network) writes a file over seconds. A file is ingested only
after no file-system event touched it for ``settle_s`` seconds, its size and mtime stayed the
same across two polls and it can be opened for reading. Events for the same file are merged
(debounced), so one image is ingested once however many write events it produced.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from semcat._io import inside, is_image_file, open_regular, real_roots

if TYPE_CHECKING:
    from semcat.catalog.core import Catalog
    from semcat.catalog.ingest import IngestSummary
    from semcat.model import SemcatModel


_WRITE_EVENTS = frozenset({"created", "modified", "moved", "closed"})
"""watchdog event types that mean a file may have new content."""


class _Pending:
    """Paths seen by watchdog, with the time of their last event (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def touch(self, path: str) -> None:
        if is_image_file(path) and not any(part.startswith(".") for part in Path(path).parts[-1:]):
            with self._lock:
                self._last[path] = time.monotonic()

    def quiet(self, settle_s: float) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [p for p, t in self._last.items() if now - t >= settle_s]

    def drop(self, path: str) -> None:
        with self._lock:
            self._last.pop(path, None)


def _signature(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _readable(path: str) -> bool:
    try:
        with open_regular(path) as f:  # a FIFO dropped in the folder must not block the watcher
            f.read(1)
        return True
    except OSError:
        return False


def watch(catalog: Catalog, folders: Sequence[str | Path], model: SemcatModel | None = None, *,
          settle_s: float = 1.0, poll_s: float = 0.25, initial: bool = True,
          stop: threading.Event | None = None,
          on_ingest: Callable[[list[str], IngestSummary], None] | None = None) -> None:
    """Ingest new and changed images under ``folders`` until ``stop`` is set (or Ctrl-C).

    ``initial``: first ingest what is already there (resumes: finished files are skipped).
    ``on_ingest`` is called after each ingest with the paths and the summary.
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    for folder in folders:
        if not Path(folder).is_dir():
            raise NotADirectoryError(f"cannot watch {folder}: expected an existing folder")
    stop = stop or threading.Event()
    pending = _Pending()
    roots = real_roots(folders)  # a symlink dropped into the folder must not lead out of it

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.is_directory:
                return
            if event.event_type not in _WRITE_EVENTS:  # our own reads emit opened/closed_no_write
                return
            for attr in ("src_path", "dest_path"):
                p = getattr(event, attr, None)
                if p:
                    pending.touch(os.fsdecode(p))

    observer = Observer()
    for folder in folders:
        observer.schedule(Handler(), str(folder), recursive=True)
    observer.start()
    try:
        if initial:
            summary = catalog.ingest(folders, model, progress=False)
            if on_ingest is not None:
                on_ingest([str(f) for f in folders], summary)
        signatures: dict[str, tuple[int, int] | None] = {}
        while not stop.wait(poll_s):
            ready = []
            for path in pending.quiet(settle_s):
                sig = _signature(path)
                if sig is None or not inside(path, roots):  # deleted, renamed away, or a link out
                    pending.drop(path)
                    signatures.pop(path, None)
                elif signatures.get(path) == sig and _readable(path):
                    ready.append(path)
                else:
                    signatures[path] = sig  # check again next poll
            if ready:
                for path in ready:
                    pending.drop(path)
                    signatures.pop(path, None)
                summary = catalog.ingest(ready, model, progress=False)
                if on_ingest is not None:
                    on_ingest(ready, summary)
    finally:
        observer.stop()
        observer.join(timeout=5)
