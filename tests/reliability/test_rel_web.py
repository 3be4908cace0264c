"""Concurrency and load on the real web app (uvicorn on loopback), SQLite and PostgreSQL.

Concurrency: an ingest, a folder watcher fed by a writer, and several reviewers confirming labels
through HTTP, all at once. No label may be lost or stored twice, the label shown must be the latest
one stored, every new file must be catalogued, and no request may fail ("database is locked" ...).
Load: 50 concurrent clients for ``SEMCAT_LOAD_SECONDS`` (default 10) s of mixed reads and label
writes; p95 latency and errors are reported, and errors must be zero.
"""
from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from test_web_helpers import LiveServer

from reliability.conftest import p95
from semcat import CATEGORIES
from semcat.synth import write_dataset

REVIEWERS = 4
LOAD_CLIENTS = 50
LOAD_SECONDS = float(os.environ.get("SEMCAT_LOAD_SECONDS", "10"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("fresh_pg")


def _server(url: str, tmp_path: Path) -> LiveServer:
    from semcat.web.app import create_app
    from semcat.web.settings import Settings

    return LiveServer(create_app(Settings(db_url=url, storage_dir=tmp_path / "storage", local_user="rel")))


def _reviewer(base: str, shas: list[str], who: int, posted: list, errors: list) -> None:
    rng = random.Random(who)
    order = shas[:]
    rng.shuffle(order)
    with httpx.Client(base_url=base, timeout=60) as c:
        csrf = {"X-CSRF-Token": c.get("/api/whoami").json()["csrf_token"]}
        for i, sha in enumerate(order):
            label = CATEGORIES[(who + i) % len(CATEGORIES)]
            try:
                r = c.post(f"/api/images/{sha}/label", json={"label": label}, headers=csrf)
                ok = r.status_code == 200 and r.json()["image"]["label"] is not None
            except httpx.HTTPError as e:
                ok, r = False, e
            (posted if ok else errors).append((sha, label) if ok else f"{sha[:8]}: {getattr(r, 'text', r)}")


def _label_state(url: str) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    from semcat.catalog import open_catalog
    from semcat.catalog.schema import Image, Label

    with open_catalog(url) as cat, cat.db.read() as conn:
        history: dict[str, list[str]] = {}
        for sha, label in conn.execute(sa.select(Label.sha256, Label.label).order_by(Label.id)):
            history.setdefault(sha, []).append(label)
        shown = dict(conn.execute(sa.select(Image.sha256, Image.label)).all())
    return history, shown


def test_ingest_watch_and_reviewers_at_once(db_url, tmp_path, figures) -> None:
    from semcat.catalog import open_catalog
    from semcat.catalog.watch import watch

    base_dir, ingest_dir, watch_dir = tmp_path / "base", tmp_path / "incoming", tmp_path / "watched"
    write_dataset(base_dir, per_class=2, size=64, seed=21)
    write_dataset(ingest_dir, per_class=2, size=64, seed=22)
    watch_dir.mkdir()
    with open_catalog(db_url) as cat:
        assert cat.ingest([base_dir], progress=False).failed == 0
        shas = [r.sha256 for r in cat.search(limit=1000)]
    server = _server(db_url, tmp_path)
    stop = threading.Event()
    watched: list[str] = []
    ingest_result: list = []
    posted: list[tuple[str, str]] = []
    errors: list[str] = []
    watcher_cat, ingest_cat = open_catalog(db_url), open_catalog(db_url)
    threads = [
        threading.Thread(target=watch, args=(watcher_cat, [watch_dir]), daemon=True,
                         kwargs={"settle_s": 0.3, "poll_s": 0.1, "initial": False, "stop": stop,
                                 "on_ingest": lambda paths, s: watched.extend(paths)}),
        threading.Thread(target=lambda: ingest_result.append(ingest_cat.ingest([ingest_dir], batch_size=2, progress=False))),
        *[threading.Thread(target=_reviewer, args=(server.url, shas, w, posted, errors)) for w in range(REVIEWERS)],
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)  # let the watcher's observer start (files written before it are not its job)
        write_dataset(watch_dir, per_class=1, size=64, seed=23)  # 10 files appear while all this runs
        for t in threads[1:]:
            t.join(timeout=300)
        deadline = time.monotonic() + 60
        with open_catalog(db_url) as cat:
            while cat.count() < 50 and time.monotonic() < deadline:
                time.sleep(0.3)
            total = cat.count()
            missing = sorted({str(p.relative_to(tmp_path)) for p in watch_dir.rglob("*.tif")}
                             - {str(Path(p).relative_to(tmp_path)) for r in cat.search(limit=1000) for p in r.paths
                                if p.startswith(str(watch_dir))})
    finally:
        stop.set()
        threads[0].join(timeout=10)
        server.stop()
        watcher_cat.close()
        ingest_cat.close()
    history, shown = _label_state(db_url)
    stored = sum(len(v) for v in history.values())
    stale = [s for s in shas if history.get(s) and shown.get(s) != history[s][-1]]
    backend = db_url.split(":", 1)[0]
    figures.add(f"concurrency: ingest + watch + {REVIEWERS} reviewers ({backend})",
                inputs=len(posted) + len(errors) + 30, failures=len(errors) + len(stale) + ingest_result[0].failed,
                lost=len(posted) - min(stored, len(posted)) + (50 - total), duplicated=max(0, stored - len(posted)),
                notes=f"{stored} labels stored for {len(posted)} accepted; {total}/50 images catalogued; "
                      f"{len(stale)} images showing a label that is not the latest")
    assert not errors, errors[:5]
    assert ingest_result and ingest_result[0].failed == 0 and ingest_result[0].new == 20
    assert total == 50, f"not catalogued: {missing}"
    assert stored == len(posted) == REVIEWERS * len(shas)
    assert sorted(posted) == sorted((s, lab) for s, labs in history.items() for lab in labs)
    assert not stale, f"{len(stale)} images show an older label than the latest stored"


async def _load(base: str, shas: list[str], seconds: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    end = time.monotonic() + seconds

    async def client(i: int) -> None:
        rng = random.Random(i)
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            csrf = {"X-CSRF-Token": (await c.get("/api/whoami")).json()["csrf_token"]}
            while time.monotonic() < end:
                sha = rng.choice(shas)
                kind = rng.random()
                t0 = time.perf_counter()
                try:
                    if kind < 0.4:
                        r = await c.get("/api/images", params={"limit": 20, "offset": rng.randrange(0, 40)})
                    elif kind < 0.6:
                        r = await c.get(f"/api/images/{sha}")
                    elif kind < 0.75:
                        r = await c.get("/api/review", params={"limit": 10})
                    elif kind < 0.9:
                        r = await c.get(f"/thumbs/{sha}.png")
                    else:
                        r = await c.post(f"/api/images/{sha}/label", json={"label": rng.choice(CATEGORIES)},
                                         headers=csrf)
                    if r.status_code != 200:
                        errors.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:120]}")
                except httpx.HTTPError as e:
                    errors.append(f"{type(e).__name__}: {e}")
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(client(i) for i in range(LOAD_CLIENTS)))
    return latencies, errors


def test_web_api_under_load(db_url, tmp_path, figures) -> None:
    from semcat.catalog import open_catalog

    images = tmp_path / "images"
    write_dataset(images, per_class=6, size=64, seed=31)
    with open_catalog(db_url) as cat:
        assert cat.ingest([images], progress=False).failed == 0
        shas = [r.sha256 for r in cat.search(limit=1000)]
    server = _server(db_url, tmp_path)
    try:
        latencies, errors = asyncio.run(_load(server.url, shas, LOAD_SECONDS))
    finally:
        server.stop()
    backend = db_url.split(":", 1)[0]
    figures.add(f"load: web API, {LOAD_CLIENTS} clients x {LOAD_SECONDS:.0f} s ({backend})", inputs=len(latencies),
                failures=len(errors), p95_ms=1000 * p95(latencies),
                notes=f"{len(latencies) / LOAD_SECONDS:.0f} req/s; mix 40% list, 20% detail, 15% review, "
                      f"15% thumbnail, 10% label; server and clients share this machine")
    assert latencies, "no request completed"
    assert not errors, errors[:5]
