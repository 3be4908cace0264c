"""Concurrency and load on the real web app (uvicorn on loopback), SQLite and PostgreSQL.

Concurrency: an ingest, a folder watcher fed by a writer, and several reviewers confirming labels
through HTTP, all at once. No label may be lost or stored twice, the label shown must be the latest
one stored, every new file must be catalogued, and no request may fail ("database is locked" ...).
Load: 50 concurrent clients for ``SEMCAT_LOAD_SECONDS`` (default 10) s of mixed reads and label
writes against ``semcat serve --workers 2`` in its own process; p95 latency and errors are
reported, and errors must be zero.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from test_web_helpers import LiveServer

from reliability.conftest import Served, p95
from semcat import CATEGORIES
from semcat.synth import write_dataset

REVIEWERS = 4
LOAD_CLIENTS = 50
LOAD_SECONDS = float(os.environ.get("SEMCAT_LOAD_SECONDS", "10"))
LOAD_WORKERS = 2


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


PAGE_KINDS = ("list", "detail", "review", "thumbnail")


class Conn:
    """One keep-alive HTTP/1.1 connection with the session cookie: a client cheap enough (~0.3 ms
    of CPU per request, httpx takes ~10) that 50 of them on the server's machine measure the server."""

    def __init__(self, base: str) -> None:
        self.host, port = base.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.cookie = ""
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, target: str, body: dict | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        data = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: application/json",
                *(f"{k}: {v}" for k, v in (headers or {}).items())]
        head += [f"Cookie: {self.cookie}"] if self.cookie else []
        head += ["Content-Type: application/json", f"Content-Length: {len(data)}"] if body is not None else []
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = [line.split(":", 1) for line in lines[1:] if ":" in line]
        got = {k.strip().lower(): v.strip() for k, v in fields}
        content = await reader.readexactly(int(got["content-length"]))
        cookie = next((v for k, v in fields if k.strip().lower() == "set-cookie"), None)
        if cookie:
            self.cookie = cookie.split(";", 1)[0].strip()
        if got.get("connection", "").lower() == "close":
            writer.close()
            self.streams = None
        return int(lines[0].split()[1]), content

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def load(base: str, shas: list[str], seconds: float,
               clients: int = LOAD_CLIENTS) -> tuple[dict[str, list[float]], list[str]]:
    """``clients`` concurrent clients for ``seconds``: 40% list, 20% detail, 15% review, 15% thumbnail,
    10% label writes. Returns latencies (s) per kind and the errors (non-200 answers, broken requests).
    Also used by ``benchmarks/web_load.py``."""
    latencies: dict[str, list[float]] = {k: [] for k in (*PAGE_KINDS, "label")}
    errors: list[str] = []
    end = time.monotonic() + seconds

    async def client(i: int) -> None:
        rng = random.Random(i)
        c = Conn(base)
        csrf = {"X-CSRF-Token": json.loads((await c.request("GET", "/api/whoami"))[1])["csrf_token"]}
        while time.monotonic() < end:
            sha = rng.choice(shas)
            kind = rng.random()
            if kind < 0.4:
                name, method, target = "list", "GET", f"/api/images?limit=20&offset={rng.randrange(0, 40)}"
            elif kind < 0.6:
                name, method, target = "detail", "GET", f"/api/images/{sha}"
            elif kind < 0.75:
                name, method, target = "review", "GET", "/api/review?limit=10"
            elif kind < 0.9:
                name, method, target = "thumbnail", "GET", f"/thumbs/{sha}.png"
            else:
                name, method, target = "label", "POST", f"/api/images/{sha}/label"
            t0 = time.perf_counter()
            try:
                body = {"label": rng.choice(CATEGORIES)} if method == "POST" else None
                status, content = await c.request(method, target, body, csrf if method == "POST" else None)
                if status != 200:
                    errors.append(f"{method} {target}: {status} {content[:120]!r}")
            except (OSError, asyncio.IncompleteReadError, KeyError, ValueError) as e:
                errors.append(f"{method} {target}: {type(e).__name__}: {e}")
                c.close()
                c = Conn(base)
            latencies[name].append(time.perf_counter() - t0)
        c.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors


def test_web_api_under_load(db_url, tmp_path, figures) -> None:
    from semcat.catalog import open_catalog

    images = tmp_path / "images"
    write_dataset(images, per_class=6, size=64, seed=31)
    with open_catalog(db_url) as cat:
        assert cat.ingest([images], progress=False).failed == 0
        shas = [r.sha256 for r in cat.search(limit=1000)]
    server = Served("--db", db_url, "--storage", tmp_path / "storage", "--workers", LOAD_WORKERS, "--retrain-every", 0,
                    log=tmp_path / "serve.log", env={"SEMCAT_HOME": str(tmp_path / "home")})
    try:
        by_kind, errors = asyncio.run(load(server.url, shas, LOAD_SECONDS))
    finally:
        server.stop()
    latencies = [t for v in by_kind.values() for t in v]
    pages = [t for k in PAGE_KINDS for t in by_kind[k]]
    backend = db_url.split(":", 1)[0]
    figures.add(f"load: web API, {LOAD_CLIENTS} clients x {LOAD_SECONDS:.0f} s ({backend})", inputs=len(latencies),
                failures=len(errors), p95_ms=1000 * p95(latencies),
                notes=f"{len(latencies) / LOAD_SECONDS:.0f} req/s; p95 pages {1000 * p95(pages):.0f} ms, "
                      f"label writes {1000 * p95(by_kind['label']):.0f} ms; mix 40% list, 20% detail, 15% review, "
                      f"15% thumbnail, 10% label; `semcat serve --workers {LOAD_WORKERS}` and the clients share "
                      "this machine")
    assert "Traceback" not in server.output(), server.output()[-3000:]
    assert latencies, "no request completed"
    assert not errors, errors[:5]
