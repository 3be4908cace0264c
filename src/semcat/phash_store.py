"""Perceptual hashes kept on disk by content hash (SHA-256), beside the feature cache.

Why: every dataset scan merges near duplicates into one split, which needs a perceptual hash of
each image, which needs a decode (~10 ms a 1024x768 TIFF, twice: with and without the bar).
Like features, the hash depends only on the bytes, so a folder scanned before costs a lookup
per image and only new files are decoded. A cache that cannot be opened or written (a read-only
home) is skipped: hashes are then computed every time, never wrong.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from semcat.config import semcat_home

__all__ = ["PHASH_VERSION", "lookup", "store"]

PHASH_VERSION = 1
"""Bump when ``semcat.duplicates.phash_bytes`` or the data-bar crop it uses changes."""

_local = threading.local()


def _path() -> Path:
    return semcat_home() / "phash.sqlite"


def _connect() -> sqlite3.Connection | None:
    """This thread's connection to the cache (None when it cannot be opened)."""
    path = _path()
    conn = getattr(_local, "conns", {}).get(path)
    if conn is None:
        try:
            conn = sqlite3.connect(path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS phash (sha256 TEXT NOT NULL, version INTEGER NOT NULL, "
                         "cropped TEXT NOT NULL, whole TEXT NOT NULL, PRIMARY KEY (sha256, version))")
        except (sqlite3.Error, OSError):
            return None
        _local.conns = {**getattr(_local, "conns", {}), path: conn}
    return conn


def lookup(sha256: str) -> tuple[int, int] | None:
    """The cached (cropped, whole) perceptual hashes of this content, or None."""
    conn = _connect()
    if conn is None:
        return None
    try:
        row = conn.execute("SELECT cropped, whole FROM phash WHERE sha256 = ? AND version = ?",
                           (sha256, PHASH_VERSION)).fetchone()
    except sqlite3.Error:
        return None
    return (int(row[0], 16), int(row[1], 16)) if row else None


def store(hashes: Mapping[str, tuple[int, int]]) -> None:
    """Remember perceptual hashes by content hash, in one transaction (64-bit values as hex text)."""
    conn = _connect()
    if conn is None or not hashes:
        return
    try:
        with conn:
            conn.executemany("INSERT OR REPLACE INTO phash VALUES (?, ?, ?, ?)",
                             [(sha, PHASH_VERSION, f"{c:x}", f"{w:x}") for sha, (c, w) in hashes.items()])
    except sqlite3.Error:
        pass
