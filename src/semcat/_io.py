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


MAX_FILE_BYTES = 4 << 30
"""Largest input file semcat opens (4 GiB: a 200-megapixel 16-bit RGBA TIFF is 1.6 GB); checked
before the first byte is read, so a huge or endless file is refused at once."""


def open_regular(path: str | Path, max_bytes: int | None = MAX_FILE_BYTES) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes`` bytes.

    The one file-opening rule of every entry point: a device (``/dev/zero``), FIFO or socket, or a
    symlink to one, would block or never end, so it is refused from its ``stat`` before it is
    opened, and checked again on the open descriptor (the path may be swapped in between).
    Raises ``OSError`` with a message saying what the file is.
    """
    _check_regular(os.stat(path), path, max_bytes)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd), path, max_bytes)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(st: os.stat_result, path: str | Path, max_bytes: int | None) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    if not stat.S_ISREG(mode):
        kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a FIFO or socket"
        raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
    if max_bytes is not None and st.st_size > max_bytes:
        raise OSError(errno.EFBIG, f"file too large ({st.st_size:,} bytes; the limit is {max_bytes:,})", str(path))


def read_regular_bytes(path: str | Path, max_bytes: int | None = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, under :func:`open_regular`'s rule."""
    with open_regular(path, max_bytes) as f:
        return f.read()


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes: the identity of an image everywhere in semcat."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """SHA-256 hex digest of bytes already in memory (avoids reading a file twice)."""
    return hashlib.sha256(data).hexdigest()


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, durable: bool = True) -> Iterator[IO]:
    """Write to a temp file in the target folder, fsync, then rename over ``path``.

    A crash or Ctrl-C leaves either the old file or the new one, never half of one. ``durable=False``
    skips the fsync (milliseconds a file): only for caches that are re-made when a reader finds a
    file cut short by a power loss (the viewer's tiles check their PNG trailer).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be as readable as open() makes them
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if durable:
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


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Atomically replace ``path`` with ``data`` (``durable``: see :func:`atomic_write`)."""
    with atomic_write(path, "wb", durable=durable) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def is_image_file(path: str | Path) -> bool:
    """True when the name has an image extension semcat reads (content is checked later)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def iter_image_files(inputs: Iterable[str | Path], *, recursive: bool = True,
                     follow_links: bool = False) -> Iterator[Path]:
    """Yield image paths from files and folders, sorted within each folder, each path once.

    Hidden files and folders (starting with '.') are skipped. A symlink found inside a folder is
    followed only when its target lies inside one of the folders given (``follow_links=True``
    follows it anywhere): ``ln -s .. loop`` must not bring the parent tree into a catalogue. Each
    real folder is visited once, so symlink loops end. Files named explicitly are yielded even
    when their extension is unusual, so the reader can say what is wrong with them.
    """
    inputs = [Path(item) for item in inputs]
    roots = None if follow_links else real_roots(p for p in inputs if p.is_dir())
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    for p in inputs:
        if p.is_dir():
            yield from _walk(p, recursive, seen_dirs, seen_files, roots)
        else:
            key = os.path.abspath(p)
            if key not in seen_files:
                seen_files.add(key)
                yield p


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def real_roots(folders: Iterable[str | Path]) -> tuple[str, ...]:
    """The real paths (symlinks resolved) of the folders a scan or a watch may not leave."""
    return tuple(_real(f) for f in folders)


def inside(path: str | Path, roots: tuple[str, ...] | None) -> bool:
    """True when ``path``, symlinks resolved, is one of ``roots`` or below one (``None``: no limit)."""
    if roots is None:
        return True
    real = _real(path)
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _walk(root: Path, recursive: bool, seen_dirs: set[str], seen_files: set[str],
          roots: tuple[str, ...] | None) -> Iterator[Path]:
    try:
        real = _real(root)
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
            if entry.is_symlink() and not inside(entry.path, roots):
                continue
            if entry.is_dir():
                if recursive:
                    yield from _walk(Path(entry.path), recursive, seen_dirs, seen_files, roots)
            elif entry.is_file() and is_image_file(entry.name):
                key = os.path.abspath(entry.path)
                if key not in seen_files:
                    seen_files.add(key)
                    yield Path(entry.path)
        except OSError:
            continue
