"""PostgreSQL connections killed by the server do not fail requests (issue 18, item 12).

The pool no longer pings the server on every checkout (``pool_pre_ping``: a round trip per query);
it polls the socket instead (``semcat.catalog.db``). The attack: terminate every pooled connection
server-side with ``pg_terminate_backend``, as a database restart or an administrator does, and ask
the web server for pages and a label write at once.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_web_helpers import client, csrf, fresh_pg_url, make_catalog, write_archive

from semcat.web.app import create_app
from semcat.web.settings import Settings


@pytest.fixture
def pg_site(request: pytest.FixtureRequest, tmp_path: Path):
    gen = fresh_pg_url(request)
    url = next(gen)
    request.addfinalizer(lambda: next(gen, None))
    cat = make_catalog(url, write_archive(tmp_path / "archive"))
    yield create_app(Settings(db_url=url, local_user="tester", storage_dir=tmp_path / "storage"), catalog=cat), cat, url
    cat.close()


def _pooled_pids(cat, n: int) -> set[int]:
    """Fill the pool with ``n`` connections at once; their server process ids."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        conns = [stack.enter_context(cat.db.read()) for _ in range(n)]
        return {conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for conn in conns}


def _terminate(url: str, pids: set[int]) -> None:
    """``pg_terminate_backend`` each pid from another connection, and wait until they are gone."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")  # pg_stat_activity is a snapshot per transaction
    try:
        with engine.connect() as conn:
            assert all(conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": p}).scalar_one() for p in pids)
            deadline = time.monotonic() + 10
            while conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)"),
                               {"p": list(pids)}).scalar_one():
                assert time.monotonic() < deadline, "terminated backends did not exit"
                time.sleep(0.05)
    finally:
        engine.dispose()


def test_requests_succeed_after_the_server_kills_pooled_connections(pg_site, figures) -> None:
    app, cat, url = pg_site
    c = client(app)
    sha = c.get("/api/images", params={"limit": 5}).json()["images"][0]["sha256"]
    killed = _pooled_pids(cat, 4)
    assert len(killed) == 4
    _terminate(url, killed)
    statuses = []
    for _ in range(3):  # every dead connection in the pool is met and replaced, none fails a request
        statuses += [c.get("/api/images", params={"limit": 5}).status_code, c.get(f"/images/{sha}").status_code]
    statuses.append(c.post(f"/api/images/{sha}/label", json={"label": "Particles"}, headers=csrf(c)).status_code)
    failed = sum(s != 200 for s in statuses)
    figures.add("attack: pg_terminate_backend on every pooled connection, then pages and a label write",
                inputs=len(statuses), failures=failed,
                notes="test_requests_succeed_after_the_server_kills_pooled_connections: no pool_pre_ping round "
                      "trip; a socket poll at checkout replaces connections the server closed")
    assert failed == 0, statuses
    assert not _pooled_pids(cat, 4) & killed
