"""Nearest images by cosine similarity of backbone features.

Vectors live in the ``features`` table (float16, one row per image and feature key). Small
catalogs are searched exactly with NumPy; above ``EXACT_MAX`` vectors a usearch HNSW index is
kept on disk and updated incrementally: only rows added since the last save are inserted.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from semcat._io import atomic_write_text
from semcat.catalog.db import Database
from semcat.catalog.schema import Feature

EXACT_MAX = 20_000
"""Up to this many vectors an exact NumPy scan is fast enough (a few ms) and always right."""

_CHUNK = 20_000


def vector_to_bytes(v: np.ndarray) -> bytes:
    """Store a feature vector compactly (float16; cosine ranking is unaffected in practice)."""
    return np.asarray(v, dtype=np.float16).ravel().tobytes()


def bytes_to_vector(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.float16).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def exact_search(matrix: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k over the rows of ``matrix``: (row indices, similarities), best first."""
    sims = _normalise(matrix) @ _normalise(query)
    k = min(k, len(sims))
    idx = np.argpartition(-sims, k - 1)[:k] if k else np.empty(0, dtype=int)
    idx = idx[np.argsort(-sims[idx], kind="stable")]
    return idx, sims[idx]


def new_ann_index(ndim: int):  # -> usearch.index.Index
    """An HNSW cosine index (float16 storage) as used for large catalogs."""
    from usearch.index import Index

    return Index(ndim=ndim, metric="cos", dtype="f16", connectivity=16, expansion_add=128, expansion_search=64)


class FeatureIndex:
    """Similarity search over the vectors of one feature key."""

    def __init__(self, db: Database, key: str, index_dir: Path) -> None:
        self.db = db
        self.key = key
        tag = hashlib.sha256(f"{db.url}|{key}".encode()).hexdigest()[:16]
        self.index_path = index_dir / f"{tag}.usearch"
        self.state_path = index_dir / f"{tag}.json"

    def _count(self) -> int:
        with self.db.read() as conn:
            return conn.execute(select(func.count()).select_from(Feature).where(Feature.key == self.key)).scalar_one()

    def query(self, vector: np.ndarray, k: int, *, exclude: str | None = None) -> list[tuple[str, float]]:
        """The ``k`` most similar images (sha256, cosine similarity), best first."""
        if self._count() <= EXACT_MAX:
            return self._exact(vector, k, exclude)
        return self._ann(vector, k, exclude)

    def _exact(self, vector: np.ndarray, k: int, exclude: str | None) -> list[tuple[str, float]]:
        with self.db.read() as conn:
            rows = conn.execute(select(Feature.sha256, Feature.vector).where(Feature.key == self.key)).all()
        rows = [r for r in rows if r[0] != exclude]
        if not rows:
            return []
        matrix = np.stack([bytes_to_vector(r[1]) for r in rows])
        idx, sims = exact_search(matrix, vector, k)
        return [(rows[i][0], float(s)) for i, s in zip(idx, sims)]

    def _ann(self, vector: np.ndarray, k: int, exclude: str | None) -> list[tuple[str, float]]:
        index = self.update()
        matches = index.search(np.asarray(vector, dtype=np.float32), k + 1)
        ids = [int(i) for i in matches.keys]
        with self.db.read() as conn:
            sha_of = dict(conn.execute(select(Feature.id, Feature.sha256).where(Feature.id.in_(ids))).all())
        out = [(sha_of[i], 1.0 - float(d)) for i, d in zip(ids, matches.distances) if i in sha_of]
        return [(s, v) for s, v in out if s != exclude][:k]

    def update(self):  # -> usearch.index.Index
        """Load the on-disk index and add the vectors stored since it was saved."""
        max_id = 0
        index = None
        if self.index_path.exists() and self.state_path.exists():
            max_id = json.loads(self.state_path.read_text())["max_id"]
            from usearch.index import Index

            index = Index.restore(str(self.index_path))
        added = 0
        while True:
            with self.db.read() as conn:
                rows = conn.execute(
                    select(Feature.id, Feature.vector).where(Feature.key == self.key, Feature.id > max_id)
                    .order_by(Feature.id).limit(_CHUNK)
                ).all()
            if not rows:
                break
            vecs = np.stack([bytes_to_vector(r[1]) for r in rows])
            if index is None:
                index = new_ann_index(vecs.shape[1])
            index.add(np.array([r[0] for r in rows], dtype=np.uint64), vecs)
            max_id = rows[-1][0]
            added += len(rows)
        if added:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.index_path.with_suffix(".tmp")
            index.save(str(tmp))
            os.replace(tmp, self.index_path)
            atomic_write_text(self.state_path, json.dumps({"max_id": max_id, "key": self.key}))
        return index
