"""Find and read the vendor text file saved next to an image (JEOL/Hitachi ``.txt``, TESCAN ``.hdr``).

JEOL and Hitachi microscopes keep their acquisition data (pixel size, voltage, working distance,
magnification, scanned size) only in a sidecar ``NAME.txt`` beside ``NAME.tif``/``.bmp``/``.jpg``;
TESCAN writes ``NAME-tif.hdr`` (the same text as its TIFF tag 50431). :func:`read_sidecar` is
called for every image without metadata of its own, so the common case, no sidecar, costs one
``stat`` of the folder: its listing is read once per folder modification time and cached
(in a folder modified in the last 2 s, maybe still receiving files, the two exact names are
looked up instead).

A sidecar that cannot be read or holds no usable value is a one-line :class:`SidecarWarning`
naming the file; the image itself is never refused because of it.
"""
from __future__ import annotations

import os
import stat
import time
import warnings
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from semcat.errors import SemcatWarning
from semcat.semmeta import SemMetadata, parse_hitachi_text, parse_jeol_text, parse_tescan_text

__all__ = ["SidecarWarning", "find_sidecar", "read_sidecar", "sidecar_bytes"]

MAX_SIDECAR_BYTES = 1 << 20
"""Vendor sidecars are a few kB; anything larger is not one (and is not read into memory)."""
_SETTLED_NS = 2_000_000_000


class SidecarWarning(SemcatWarning):
    """A sidecar next to an image is unreadable or malformed; the image is read without it."""


def find_sidecar(image: str | Path) -> Path | None:
    """The sidecar of ``image`` (``NAME.txt``, else ``NAME-EXT.hdr``; any letter case once the
    folder has been unchanged for 2 s), or None."""
    folder, name = os.path.split(os.fspath(image))  # str operations: this runs for every image
    folder = folder or "."
    try:
        mtime = os.stat(folder).st_mtime_ns
    except OSError:
        return None
    stem, ext = os.path.splitext(name)
    candidates = (f"{stem}.txt", f"{stem}-{ext[1:]}.hdr")
    if time.time_ns() - mtime < _SETTLED_NS:
        # A folder changed in the last seconds may still be receiving files (a sidecar written
        # just after its image): look for the names themselves rather than cache a listing.
        found = next((c for c in candidates if os.path.lexists(os.path.join(folder, c))), None)
    else:
        names = _cached_listing(folder, mtime)
        found = next((names[c.lower()] for c in candidates if c.lower() in names), None) if names else None
    return Path(folder, found) if found else None


def read_sidecar(image: str | Path, image_rows: int) -> SemMetadata | None:
    """SEM metadata from the sidecar of ``image`` (``image_rows``: the file's height), or None.

    Warns (:class:`SidecarWarning`, one line naming the sidecar) when one exists but is not a
    readable JEOL, Hitachi or TESCAN file, or gives none of pixel size, voltage, working distance
    and magnification.
    """
    path = find_sidecar(image)
    if path is None:
        return None
    problem, meta = _parse(path, image_rows)
    if problem:
        warnings.warn(f"{path}: sidecar ignored: {problem}", SidecarWarning, stacklevel=2)
        return None
    return meta


def sidecar_bytes(image: str | Path) -> bytes | None:
    """The bytes of the sidecar of ``image`` that :func:`read_sidecar` would read, or None (no
    sidecar, or one it skips unread): the feature cache keys an image's features on them."""
    path = find_sidecar(image)
    if path is None:
        return None
    problem, data = _read(path)
    return None if problem else data


def _read(path: Path) -> tuple[str | None, bytes]:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file", b""
        if st.st_size > MAX_SIDECAR_BYTES:
            return f"{st.st_size:,} bytes is too large for a vendor sidecar", b""
        return None, path.read_bytes()
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})", b""


def _parse(path: Path, image_rows: int) -> tuple[str | None, SemMetadata | None]:
    problem, data = _read(path)
    if problem:
        return problem, None
    if b"\x00" in data:
        return "binary content, not vendor text", None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # JEOL and Hitachi write Windows code pages (latin-1 µ)
        text = data.decode("latin-1")
    try:
        if path.suffix.lower() == ".hdr":
            meta = parse_tescan_text(text, image_rows)
        else:
            meta = parse_jeol_text(text) or parse_hitachi_text(text)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        return f"cannot parse it ({type(exc).__name__}: {exc})", None  # a parser gap: warn, never fail
    if meta is None:
        return "not a JEOL, Hitachi or TESCAN sidecar (no vendor keys found)", None
    if not any((meta.pixel_size_m, meta.high_voltage_v, meta.working_distance_m, meta.magnification)):
        return f"no readable pixel size, voltage, working distance or magnification ({meta.vendor} keys)", None
    return None, replace(meta, sidecar=str(path))


@lru_cache(maxsize=256)
def _cached_listing(folder: str, mtime_ns: int) -> dict[str, str]:
    """Lower-case → real names of the ``.txt``/``.hdr`` files in ``folder``, once per folder and
    modification time (the cache key)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name.lower(): e.name for e in entries if e.name.lower().endswith((".txt", ".hdr"))}
    except OSError:
        return {}
