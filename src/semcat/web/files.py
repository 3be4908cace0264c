"""Open a catalogued file only while it still holds the catalogued content.

After ingest a path can be replaced by another file, or by a symlink to ``/etc/passwd`` or
``/dev/zero``. Before a file is served or rendered it is opened (never blocking, never following
a final symlink), checked to be a regular file of the catalogued size, and its bytes are hashed
and compared with the catalogued SHA-256. A match is remembered by (device, inode, size, mtime),
so an unchanged file is hashed once per server. A path that leads out of its own folder through a
symlink is refused without being opened.
"""
from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
_CACHE_MAX = 100_000
_verified: dict[str, tuple[tuple[int, int, int, int], str]] = {}
_lock = threading.Lock()


def inside_own_folder(path: Path) -> str | None:
    """``path`` resolved when that stays inside its own (resolved) folder, else None."""
    real = os.path.realpath(path)
    return real if Path(real).is_relative_to(os.path.realpath(path.parent)) else None


def open_verified(path: Path, sha256: str, size: int | None) -> BinaryIO | None:
    """``path`` open for reading at offset 0 when it holds exactly the catalogued content, else None."""
    real = inside_own_folder(path)
    if real is None:
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
            f.close()
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if _verified.get(real) != (key, sha256):
            if hashlib.file_digest(f, "sha256").hexdigest() != sha256:
                f.close()
                return None
            with _lock:
                if len(_verified) >= _CACHE_MAX:
                    _verified.clear()
                _verified[real] = (key, sha256)
            f.seek(0)
        return f
    except OSError:
        f.close()
        return None

