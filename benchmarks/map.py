"""The map page at scale, measured in headless Chromium: layout, data, hover and lasso times.

A SQLite catalog gets ``--points`` image rows with clustered 64-d feature vectors (no files:
hover thumbnails are not fetched in time, only the handler runs). Times: computing the layout
(PCA above 5,000 images), ``GET /api/map`` (cold: layout computed; warm: cached), page ready
(fetch + parse + first draw), and in the page, per event: the hover handler (nearest point on a
grid) over ``--hovers`` mouse moves and the lasso selection (point in polygon + redraw of every
point) over ``--lassos`` lassos. Baseline in the same run: one plain ``fillRect`` redraw of all
points, the least a canvas can do per selection.

    python benchmarks/map.py --points 100000 --hovers 300 --lassos 20

Writes ``benchmarks/results/map.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _results import header, write_results  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


def fill(cat, n: int, seed: int) -> None:
    """``n`` image rows and feature vectors in 12 clusters, written in one transaction."""
    from semcat.catalog.schema import Feature, Image, utcnow
    from semcat.catalog.similar import vector_to_bytes

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 64))
    now = utcnow()
    with cat.db.write() as conn:
        for start in range(0, n, 10_000):
            idx = range(start, min(n, start + 10_000))
            shas = [f"{i:064x}" for i in idx]
            conn.execute(Image.__table__.insert(), [{"sha256": s, "file_size": 1, "ingested": now,
                                                     "decision": ("auto", "suggest", "manual", "unknown")[i % 4]}
                                                    for i, s in zip(idx, shas)])
            vecs = centres[rng.integers(0, 12, len(shas))] + 0.4 * rng.normal(size=(len(shas), 64))
            conn.execute(Feature.__table__.insert(), [{"key": "bench", "sha256": s, "vector": vector_to_bytes(v)}
                                                      for s, v in zip(shas, vecs)])


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--hovers", type=int, default=300)
    ap.add_argument("--lassos", type=int, default=20)
    ap.add_argument("--tsne-points", type=int, default=1000, help="also time the t-SNE layout at this size")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/map.md")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright
    from test_web_helpers import LiveServer, client

    from semcat.catalog import open_catalog
    from semcat.layout import TSNE_MAX, catalog_layout, layout
    from semcat.web.app import create_app
    from semcat.web.settings import Settings

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEMCAT_HOME"] = str(Path(tmp) / "home")
        cat = open_catalog(f"sqlite:///{Path(tmp) / 'c.db'}")
        fill(cat, args.points, 0)
        t0 = time.perf_counter()
        catalog_layout(cat, cache_dir=Path(tmp) / "scratch")
        t_layout = time.perf_counter() - t0
        t0 = time.perf_counter()
        layout(np.random.default_rng(2).normal(size=(args.tsne_points, 64)))
        t_tsne = time.perf_counter() - t0
        app = create_app(Settings(db_url=cat.url, local_user="bench"), catalog=cat)
        api = client(app)
        t0 = time.perf_counter()
        size = len(api.get("/api/map").content)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        api.get("/api/map")
        t_warm = time.perf_counter() - t0
        server = LiveServer(app)
        rng = np.random.default_rng(1)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.route("**/thumbs/**", lambda route: route.fulfill(status=204, body=b""))
                t0 = time.perf_counter()
                page.goto(f"{server.url}/map")
                page.wait_for_selector("#map[data-ready='1']", timeout=300_000)
                t_ready = time.perf_counter() - t0
                box = page.query_selector("#map").bounding_box()
                for x, y in rng.uniform(0.05, 0.95, (args.hovers, 2)):
                    page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
                for _ in range(args.lassos):
                    cx, cy = rng.uniform(0.2, 0.8, 2)
                    r = rng.uniform(0.05, 0.3)
                    angles = np.linspace(0, 2 * np.pi, 24)
                    pts = [(box["x"] + (cx + r * np.cos(a)) * box["width"], box["y"] + (cy + r * np.sin(a)) * box["height"])
                           for a in angles]
                    page.mouse.move(*pts[0])
                    page.mouse.down()
                    for pt in pts[1:]:
                        page.mouse.move(*pt)
                    page.mouse.up()
                timings = page.evaluate("() => window.semcatMapTimings")
                selected = page.inner_text("#map-status")
                baseline = page.evaluate("""() => {
                    const c = document.createElement('canvas'); c.width = 960; c.height = 640;
                    const g = c.getContext('2d'), m = window.semcatMap, out = [];
                    for (let k = 0; k < 10; k++) { const t0 = performance.now(); g.clearRect(0, 0, 960, 640);
                      g.fillStyle = '#1f77b4'; for (let i = 0; i < m.n; i++) g.fillRect(m.px[i] - 1.5, m.py[i] - 1.5, 3, 3);
                      out.push(performance.now() - t0); }
                    return out; }""")
                browser.close()
        finally:
            server.stop()
            cat.close()
    hover, select = timings["hover"], timings["select"]
    lines = header(f"Map page: {args.points:,} points in headless Chromium", started=started, argv=argv) + [
        "- browser: Debian Chromium, headless, software rendering (`--disable-gpu`); times are the page's own "
        "`performance.now()` around each handler (paint after it is not included)",
        "",
        "| step | time |",
        "|---|---:|",
        f"| layout ({'t-SNE' if args.points <= TSNE_MAX else 'PCA'}, {args.points:,} x 64 features) | {t_layout:.2f} s |",
        f"| layout ({'t-SNE' if args.tsne_points <= TSNE_MAX else 'PCA'}, {args.tsne_points:,} x 64 features) | {t_tsne:.2f} s |",
        f"| `GET /api/map`, cold (layout computed) | {t_cold:.2f} s ({size / 1e6:.1f} MB JSON) |",
        f"| `GET /api/map`, warm (layout cached) | {t_warm:.2f} s |",
        f"| page ready (fetch, parse, first draw) | {t_ready:.2f} s |",
        f"| hover handler, p50 / p95 / max over {len(hover)} moves | {np.median(hover):.2f} / {p95(hover):.2f} / "
        f"{max(hover):.2f} ms |",
        f"| lasso selection + redraw, p50 / p95 / max over {len(select)} lassos | {np.median(select):.1f} / "
        f"{p95(select):.1f} / {max(select):.1f} ms |",
        f"| baseline: one plain redraw of every point, p50 of 10 | {np.median(baseline):.1f} ms |",
        "",
        f"Issue 22's target: p95 under 200 ms for hover and selection. Last status line: \"{selected}\".",
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
