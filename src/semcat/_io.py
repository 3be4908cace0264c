"""File-system helpers every stage shares: content hashes, atomic writes, image discovery."""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}
)
"""Extensions semcat looks at when it scans folders (case-insensitive)."""

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes: the identity of an image everywhere in semcat."""
    h = hashlib.sha256()
    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # open() would block
        raise OSError(errno.EINVAL, "not a regular file (a FIFO or socket)", str(path))
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """SHA-256 hex digest of bytes already in memory (avoids reading a file twice)."""
    return hashlib.sha256(data).hexdigest()


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file in the target folder, fsync, then rename over ``path``.

    A crash or Ctrl-C leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be as readable as open() makes them
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once at import, before any threads write
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def is_image_file(path: str | Path) -> bool:
    """True when the name has an image extension semcat reads (content is checked later)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def iter_image_files(inputs: Iterable[str | Path], *, recursive: bool = True) -> Iterator[Path]:
    """Yield image paths from files and folders, sorted within each folder, each path once.

    Hidden files and folders (starting with '.') are skipped; symlink loops are not followed
    twice because each real folder is visited once. Files named explicitly are yielded even
    when their extension is unusual, so the reader can say what is wrong with them.
    """
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            yield from _walk(p, recursive, seen_dirs, seen_files)
        else:
            key = os.path.abspath(p)
            if key not in seen_files:
                seen_files.add(key)
                yield p


def _walk(root: Path, recursive: bool, seen_dirs: set[str], seen_files: set[str]) -> Iterator[Path]:
    try:
        real = os.path.realpath(root)
    except OSError:
        return
    if real in seen_dirs:
        return
    seen_dirs.add(real)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                if recursive:
                    yield from _walk(Path(entry.path), recursive, seen_dirs, seen_files)
            elif entry.is_file() and is_image_file(entry.name):
                key = os.path.abspath(entry.path)
                if key not in seen_files:
                    seen_files.add(key)
                    yield Path(entry.path)
        except OSError:
            continue
