"""What keeps the web server's CPU per request low under many clients (issue 18, item 12), on a real
catalog of each backend: a bounded set of request threads sharing pooled connections (none opened
per request), and record queries whose SQL does not change with the number of images asked for.
The latency itself is measured by ``benchmarks/web_load.py`` and the reliability suite's load test."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
from sqlalchemy import event
from test_web_api import archive, site  # noqa: F401 - fixtures: (app, catalog) of each backend
from test_web_helpers import BASE_URL

from semcat.catalog.db import POOL_SIZE
from semcat.web.app import REQUEST_THREADS


def _statements(cat) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    event.listen(cat.db.engine, "before_cursor_execute",
                 lambda conn, cursor, sql, params, context, many: seen.append((sql, params)))
    return seen


def test_record_queries_bind_the_hash_list_as_one_value(site) -> None:
    _, catalog = site
    shas = [r.sha256 for r in catalog.search(limit=50)]
    seen = _statements(catalog)
    few = catalog.records(shas[:2])
    sql_few = [sql for sql, _ in seen]
    seen.clear()
    many = catalog.records(shas[:20])
    sql_many = [sql for sql, _ in seen]
    assert [r.sha256 for r in few] == shas[:2] and [r.sha256 for r in many] == shas[:20]
    # the same SQL text for 2 and 20 hashes: nothing is rendered per hash, one value carries the list
    assert sql_few == sql_many, (sql_few, sql_many)
    assert all(shas[19] not in sql for sql in sql_many)
    assert all(len(params) == 1 for _, params in seen if params), seen


def test_fifty_concurrent_requests_share_the_pool_and_the_request_threads(site) -> None:
    app, catalog = site
    opened: list[object] = []
    event.listen(catalog.db.engine, "connect", lambda conn, record: opened.append(record))
    busy: set[int] = set()
    most = 0
    lock = threading.Lock()

    @event.listens_for(catalog.db.engine, "checkout")
    def _checkout(*_args: object) -> None:  # each request holds its connection a while (a slow disk)
        nonlocal most
        with lock:
            busy.add(threading.get_ident())
            most = max(most, len(busy))
        time.sleep(0.02)

    @event.listens_for(catalog.db.engine, "checkin")
    def _checkin(*_args: object) -> None:
        with lock:
            busy.discard(threading.get_ident())

    async def burst() -> list[int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
                answers = await asyncio.gather(*(c.get("/api/images", params={"limit": 5, "offset": i % 15})
                                                 for i in range(50)))
                return [a.status_code for a in answers]

    statuses = asyncio.run(burst())
    assert statuses == [200] * 50
    # connections: at most one per request thread, opened once (40 threads on a pool of 5 opened and
    # closed one per request); threads holding one at once: at most REQUEST_THREADS
    assert len(opened) <= REQUEST_THREADS <= POOL_SIZE, (len(opened), REQUEST_THREADS, POOL_SIZE)
    assert most <= REQUEST_THREADS, most
