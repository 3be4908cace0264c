"""Web latency under load: 50 concurrent clients against `semcat serve`, SQLite and PostgreSQL.

Usage: ``python benchmarks/web_load.py [--clients 50] [--seconds 10] [--backends sqlite,postgresql]
[--baseline SRC_DIR|COMMIT] [--rounds 1] [--out web_load.md]``. Writes ``benchmarks/results/web_load.md``.

The load is the reliability suite's generator (``tests/reliability/test_rel_web.py::load``): 40%
catalog pages, 20% image pages, 15% review queue, 15% thumbnails, 10% label writes, on 60 catalogued
images. The server runs as its own process (``semcat serve``), as in production;
clients run in this process, on the same machine. ``--baseline SRC_DIR`` serves the same images
with another source tree (a folder, or a commit whose ``src`` is extracted; ``--workers`` as the first configuration) in the same run, alternating rounds, so the
comparison shares the machine's noise; each tree catalogues them itself (an older tree cannot open
a newer schema). PostgreSQL needs ``SEMCAT_TEST_PG_URL``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tests")]

from reliability.conftest import Served, p95  # noqa: E402
from reliability.test_rel_web import PAGE_KINDS, load  # noqa: E402
from semcat.catalog.querycount import ENV as COUNT_ENV  # noqa: E402
from semcat.catalog.querycount import PERIOD_S, read_total  # noqa: E402
from semcat.synth import write_dataset  # noqa: E402

from _results import header, source_tree, write_results  # noqa: E402

OUT = HERE / "results" / "web_load.md"


def _pg_url(base: str) -> tuple[str, str]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with sa.create_engine(base).begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    # the application name marks the server's connections, whose backends' CPU is counted (_pg_cpu_s)
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}&application_name={schema}", schema


def _drop_pg(base: str, schema: str) -> None:
    import sqlalchemy as sa

    with sa.create_engine(base).begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


_INGEST = ("import sys; from semcat.catalog import open_catalog\n"
           "with open_catalog(sys.argv[1]) as cat:\n"
           "    cat.ingest([sys.argv[2]], progress=False)\n"
           "    print(' '.join(r.sha256 for r in cat.search(limit=1000)))")


def _ingest(src: Path, url: str, images: Path) -> list[str]:
    """Catalogue ``images`` at ``url`` with the code in ``src`` (a baseline tree writes its own
    schema version, which it can serve); the catalogued hashes."""
    out = subprocess.run([sys.executable, "-c", _INGEST, url, str(images)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(src)})
    return out.stdout.split()


def run_once(src: Path, serve_args: list[str], url: str, shas: list[str], tmp: Path, clients: int,
             seconds: float, pg: tuple[str, str] | None = None) -> dict:
    """Serve ``url`` with the code in ``src`` and load it; latencies per kind, errors, server CPU
    (and, with ``pg`` = (base URL, application name), its PostgreSQL backends' CPU)."""
    counts = tmp / "query-counts"
    counts.mkdir()
    server = Served("--db", url, "--storage", tmp / "storage", *serve_args, log=tmp / "serve.log",
                    env={"PYTHONPATH": str(src), "SEMCAT_HOME": str(tmp / "home"), COUNT_ENV: str(counts)})
    try:
        for sha in shas:  # warm the thumbnail cache, as a running server has it
            httpx.get(f"{server.url}/thumbs/{sha}.png", timeout=30)
        queries0 = _queries(counts)
        db0 = _pg_cpu_s(*pg) if pg else {}
        cpu0, client0 = _cpu_s(server.proc.pid), time.process_time()
        by_kind, errors = asyncio.run(load(server.url, shas, seconds, clients))
        cpu, client = _cpu_s(server.proc.pid) - cpu0, time.process_time() - client0
        db1 = _pg_cpu_s(*pg) if pg else {}
        queries = None if queries0 is None else _queries(counts) - queries0
    finally:
        server.stop()
    db = sum(t - db0.get(pid, 0.0) for pid, t in db1.items()) if db1 else None
    return {"by_kind": by_kind, "errors": errors, "server_cpu_s": cpu, "client_cpu_s": client, "queries": queries,
            "db_cpu_s": db}


def _pg_cpu_s(base: str, application: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend of the server's connections (found by
    their application name); empty when the database server is not on this machine."""
    import sqlalchemy as sa

    engine = sa.create_engine(base)
    try:
        with engine.connect() as conn:
            pids = conn.exec_driver_sql("SELECT pid FROM pg_stat_activity WHERE application_name = %(a)s",
                                        {"a": application}).scalars().all()
    finally:
        engine.dispose()
    return {pid: t for pid in pids if (t := _proc_cpu_s(pid)) is not None}


def _queries(folder: Path) -> int | None:
    """SQL statements the server has sent so far (``semcat.catalog.querycount``); None for a tree
    that does not count them."""
    time.sleep(3 * PERIOD_S)  # the server writes its count every PERIOD_S
    return read_total(folder) if any(folder.iterdir()) else None


def _uvicorn_impl() -> str:
    from importlib.util import find_spec

    return " + ".join(("httptools" if find_spec("httptools") else "h11", "uvloop" if find_spec("uvloop") else "asyncio"))


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the server process and its workers have used so far."""
    return sum(_proc_cpu_s(p) or 0.0 for p in [pid, *_children(pid)])


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of one process, None when it is gone or not on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    except OSError:
        return []


def summary(r: dict, seconds: float) -> dict:
    k = r["by_kind"]
    pages = [t for name in PAGE_KINDS for t in k[name]]
    n = sum(len(v) for v in k.values())
    return {"req_s": n / seconds, "pages_p95": 1000 * p95(pages), "labels_p95": 1000 * p95(k["label"]),
            "list_p95": 1000 * p95(k["list"]), "thumb_p95": 1000 * p95(k["thumbnail"]),
            "n": n, "errors": len(r["errors"]), "cpu_ms": 1000 * r["server_cpu_s"] / max(n, 1),
            "queries": None if r["queries"] is None else r["queries"] / max(n, 1),
            "db_cpu_ms": None if r["db_cpu_s"] is None else 1000 * r["db_cpu_s"] / max(n, 1),
            "client_cpu_ms": 1000 * r["client_cpu_s"] / max(n, 1)}


def _or_dash(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--baseline", help="source tree (a folder holding semcat/) or git commit to compare against")
    ap.add_argument("--baseline-label", default="baseline", help="how the results name the baseline tree")
    ap.add_argument("--workers", default="1", help="comma-separated `serve --workers` values to compare")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds per configuration")
    ap.add_argument("--out", default=OUT.name, help="results file name in benchmarks/results")
    a = ap.parse_args()
    # Background retraining off: the labels the clients post would start retrains (semcat retrain) that
    # compete for the same two cores; this measures serving. A baseline tree needs the option (e166605 has it).
    trees = [(f"this commit, --workers {w}", ROOT / "src", ["--workers", w, "--retrain-every", "0"])
             for w in a.workers.split(",")]
    first = a.workers.split(",")[0]  # the baseline tree is served as the first configuration is
    tmp = Path(tempfile.mkdtemp(prefix="semcat-webload-"))
    if a.baseline:
        trees.append((f"{a.baseline_label}, --workers {first}", source_tree(a.baseline, tmp),
                      ["--workers", first, "--retrain-every", "0"]))
    rows = []
    try:
        images = tmp / "images"
        write_dataset(images, per_class=6, size=64, seed=31)
        for backend in a.backends.split(","):
            for round_ in range(a.rounds):
                for name, src, serve_args in (trees if round_ % 2 == 0 else trees[::-1]):
                    work = tmp / f"{backend}-{len(rows)}"
                    work.mkdir()
                    schema = None
                    if backend == "sqlite":
                        url = f"sqlite:///{work / 'catalog.db'}"
                    else:
                        pg = os.environ.get("SEMCAT_TEST_PG_URL")
                        if not pg:
                            print("skipping postgresql: SEMCAT_TEST_PG_URL is not set", file=sys.stderr)
                            break
                        url, schema = _pg_url(pg)
                    shas = _ingest(src, url, images)
                    try:
                        s = summary(run_once(src, serve_args, url, shas, work, a.clients, a.seconds,
                                             (pg, schema) if schema else None), a.seconds)
                    finally:
                        if schema:
                            _drop_pg(pg, schema)
                    print(f"{backend} {name} round {round_}: {s}", flush=True)
                    rows.append((backend, name, round_, s))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = header(f"Web: latency under load ({a.clients} clients, SQLite and PostgreSQL)") + [
        f"- load average at the end {os.getloadavg()[0]:.1f} "
        "(shared with other work: compare rows of the same run, not across runs)",
        f"- load: {a.clients} concurrent clients x {a.seconds:.0f} s per row, the reliability suite's mix "
        "(40% catalog page, 20% image page, 15% review queue, 15% thumbnail, 10% label write) on 60 images; "
        "server = `semcat serve --retrain-every 0` (this commit) in its own process, clients in the benchmark "
        "process on the same machine; "
        "configurations alternate order per round. Goal (issue 18): p95 < 300 ms pages, < 500 ms label writes.",
        f"- uvicorn's HTTP parser and event loop: {_uvicorn_impl()} (installed packages: the same for every tree)",
        "- per request, during the load: server CPU = the `semcat serve` process; PostgreSQL CPU = the database "
        "backends of the server's connections (same machine); SQL statements = counted in the server "
        "(`semcat.catalog.querycount`), each a network round trip on PostgreSQL (a write transaction adds its "
        "BEGIN and COMMIT); – where a tree does not count them", "",
        "| backend | code | round | req/s | p95 pages ms | p95 catalog page ms | p95 thumbnail ms | "
        "p95 label write ms | server CPU ms/request | PostgreSQL CPU ms/request | SQL statements/request | "
        "client CPU ms/request | requests | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, name, round_, s in rows:
        lines.append(f"| {backend} | {name} | {round_} | {s['req_s']:.0f} | {s['pages_p95']:.0f} | {s['list_p95']:.0f} | "
                     f"{s['thumb_p95']:.0f} | {s['labels_p95']:.0f} | {s['cpu_ms']:.1f} | {_or_dash(s['db_cpu_ms'])} | "
                     f"{_or_dash(s['queries'])} | "
                     f"{s['client_cpu_ms']:.1f} | {s['n']} | {s['errors']} |")
    write_results(HERE / "results" / a.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
