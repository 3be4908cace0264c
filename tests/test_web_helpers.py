"""Helpers shared by the web tests (imported by ``tests/test_web_*.py``): a real catalog of
synthetic SEM images with predictions, on SQLite or PostgreSQL, and an app + client on it.

Predictions are written the way ``Catalog.ingest`` writes a model's output, from a seeded RNG, so
the review queue, filters and dashboards have known, varied content without training a model.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from semcat import CATEGORIES

DECISIONS = ("auto", "suggest", "manual", "unknown")
BASE_URL = "http://127.0.0.1:8000"
HOSTILE_NAME = '<img src=x onerror=alert(1)>"evil.tif'
SCRIPT = """<script>alert("xss")</script>'"&"""



def write_archive(root: Path) -> Path:
    """20 synthetic 96-px TIFFs with data bars (2 per class), plus one file with a hostile name."""
    import tifffile

    from semcat.synth import generate_image, write_dataset

    write_dataset(root, per_class=2, size=96, seed=7, databar=True)
    hostile = root / "Particles" / HOSTILE_NAME
    tifffile.imwrite(hostile, generate_image("Particles", np.random.default_rng(99), size=96, databar=True))
    return root


def add_predictions(cat, seed: int = 0, model_id: str = "web-test-model") -> dict[str, tuple[str, float, str]]:
    """Store a prediction for every catalogued image: sha → (top-1 class, score, decision)."""
    from semcat.catalog.ingest import _store_prediction
    from semcat.catalog.schema import utcnow
    from semcat.model import Prediction

    rng = np.random.default_rng(seed)
    truth = {}
    shas = sorted(r.sha256 for r in cat.search(limit=1000))
    with cat.db.write() as conn:
        for i, sha in enumerate(shas):
            proba = rng.dirichlet(np.full(len(CATEGORIES), 0.6))
            order = np.argsort(-proba)
            top = [(CATEGORIES[j], float(proba[j])) for j in order[:3]]
            decision = DECISIONS[i % len(DECISIONS)]
            candidates = [c for c, _ in top[:2]] if decision == "suggest" else []
            p = Prediction(path="", sha256=sha, top=top, decision=decision, candidates=candidates,
                           ood_score=None, error=None)
            _store_prediction(conn, sha, model_id, p, utcnow())
            truth[sha] = (top[0][0], top[0][1], decision)
    return truth


def fresh_pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL with its own schema, dropped afterwards (skips/fails when no server)."""
    import sqlalchemy as sa

    base = request.getfixturevalue("pg_url")
    schema = f"web_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as e:
        from conftest import missing_service

        missing_service(f"PostgreSQL at {base} unreachable: {e.orig}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def make_catalog(url: str, archive: Path, seed: int = 0):
    """Open ``url``, ingest ``archive`` (no model) and add seeded predictions."""
    from semcat.catalog import open_catalog

    cat = open_catalog(url)
    summary = cat.ingest([archive], progress=False)
    assert summary.failed == 0, summary.errors
    add_predictions(cat, seed)
    return cat


def client(app, **kwargs):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=BASE_URL, **kwargs)


def csrf(c) -> dict[str, str]:
    """The CSRF header of the client's session (starts one when needed)."""
    return {"X-CSRF-Token": c.get("/api/whoami").json()["csrf_token"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on a free loopback port in a thread (stopped by ``stop``)."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_until(page, expression: str, timeout_s: float = 20.0) -> None:
    """Poll ``expression`` in ``page`` until truthy: Playwright's ``wait_for_function`` polls by
    ``eval``, which the app's Content-Security-Policy (rightly) refuses."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout_s} s: {expression}")
        page.wait_for_timeout(50)
