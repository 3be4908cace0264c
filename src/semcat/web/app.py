"""The semcat web app: one FastAPI object, one route table, one module per page group.

Every HTML page has a JSON twin under ``/api/`` served by the same view (``context.render``);
OpenAPI docs of the JSON routes are at ``/docs``. Images are only ever addressed by content hash.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio.to_thread
import jinja2
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from semcat import __version__, units
from semcat._storage import storage_problem
from semcat.web import browse, catalog_map, dashboard, login, retraining, review, tiles, upload
from semcat.web.apidocs import add_api_docs
from semcat.web.context import WebState, is_api, template_dir
from semcat.web.security import AuthMiddleware, BodyLimitMiddleware, Revoked, SessionSigner, load_secret
from semcat.web.settings import Settings

HTML, API = "html", "api"
REQUEST_THREADS = 8
"""Threads a server process runs blocking request work in (catalog queries, file reads, decodes).

Python runs one thread at a time: 40 threads (anyio's default) sharing one core made every request
wait through the others' switches (a label write held the SQLite write lock meanwhile), and outgrew
the connection pool, so connections were opened and closed per request. A few threads still overlap
waits on PostgreSQL and the disk; requests beyond them queue, in order. At most the catalog's
``semcat.catalog.db.POOL_SIZE``.
"""

# (methods, path, view, kind) — kind "html" routes are left out of the OpenAPI schema.
ROUTES: list[tuple[list[str], str, Callable[..., Any], str]] = [
    (["GET"], "/", browse.catalog_page, HTML),
    (["GET"], "/api/images", browse.catalog_page, API),
    (["GET"], "/images/{sha256}", browse.image_page, HTML),
    (["GET"], "/api/images/{sha256}", browse.image_page, API),
    (["GET"], "/thumbs/{sha256}.png", browse.thumbnail, API),
    (["GET"], "/images/{sha256}/view.png", browse.full_view, API),
    (["GET"], "/images/{sha256}/file", browse.original, API),
    (["GET"], "/tiles/{sha256}/info.json", tiles.tile_info, API),
    (["GET"], "/tiles/{sha256}/{level:int}/{x:int}_{y:int}.png", tiles.tile, API),
    (["POST"], "/images/{sha256}/label", review.confirm_label, HTML),
    (["POST"], "/api/images/{sha256}/label", review.confirm_label, API),
    (["POST"], "/images/{sha256}/label/undo", review.undo_label, HTML),
    (["POST"], "/api/images/{sha256}/label/undo", review.undo_label, API),
    (["POST"], "/categories", review.new_category, HTML),
    (["POST"], "/api/categories", review.new_category, API),
    (["POST"], "/images/{sha256}/tags", review.add_tag, HTML),
    (["POST"], "/api/images/{sha256}/tags", review.add_tag, API),
    (["POST"], "/images/{sha256}/notes", review.add_note, HTML),
    (["POST"], "/api/images/{sha256}/notes", review.add_note, API),
    (["GET"], "/review", review.queue_page, HTML),
    (["GET"], "/api/review", review.queue_page, API),
    (["GET"], "/api/model", retraining.model_page, API),
    (["GET"], "/map", catalog_map.map_page, HTML),
    (["GET"], "/api/map", catalog_map.map_page, API),
    (["POST"], "/api/labels", catalog_map.label_many, API),
    (["GET"], "/dashboard", dashboard.dashboard_page, HTML),
    (["GET"], "/api/stats", dashboard.dashboard_page, API),
    (["GET"], "/dashboard/plots/{source}/{name}.png", dashboard.plot, API),
    (["GET"], "/upload", upload.upload_page, HTML),
    (["POST"], "/upload", upload.upload, HTML),
    (["POST"], "/api/upload", upload.upload, API),
    (["POST"], "/upload/{sha256}/add", upload.add_to_catalog, HTML),
    (["POST"], "/api/upload/{sha256}/add", upload.add_to_catalog, API),
    (["GET"], "/login", login.login_page, HTML),
    (["POST"], "/login", login.login, HTML),
    (["POST"], "/logout", login.logout, HTML),
    (["GET"], "/api/whoami", login.whoami, API),
    (["GET"], "/healthz", lambda: {"status": "ok", "version": __version__}, API),
]


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir()), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters.update(units=lambda value, key: units.display_value(key, value), unit_label=units.display_label,
                       when=units.timestamp, short_id=units.short_id)
    return Jinja2Templates(env=env)


async def _error(request: Request, exc: Exception) -> Response:
    """Errors as JSON for the API, as a page for browsers; the message always says what to do."""
    assert isinstance(exc, StarletteHTTPException)
    if is_api(request) or "text/html" not in request.headers.get("accept", ""):
        return await http_exception_handler(request, exc)
    st: WebState = request.app.state.semcat
    return st.templates.TemplateResponse(
        request, "error.html", {"status": exc.status_code, "detail": exc.detail,
                                "user": getattr(request.state, "user", None)},
        status_code=exc.status_code, headers=getattr(exc, "headers", None))


def create_app(settings: Settings | None = None, *, catalog: Any = None) -> FastAPI:
    """Build the ASGI app for ``settings``; ``catalog`` overrides opening ``settings.db_url``.

    A SQLite catalogue this process cannot write is opened read-only and served read-only.

    Raises ``InsecureBindError`` for a public host without a token.
    """
    settings = settings or Settings()
    settings.check()
    if catalog is None:
        from semcat.catalog import open_catalog
        from semcat.catalog.db import sqlite_read_only

        store_read_only = sqlite_read_only(settings.db_url)  # e.g. a SQLite file on a read-only share
        settings = replace(settings, read_only=settings.read_only or store_read_only)
        catalog = open_catalog(settings.db_url, read_only=store_read_only)
    app = FastAPI(title="semcat", version=__version__, docs_url=None, redoc_url=None, lifespan=_lifespan,
                  description="Browse, search and review a catalogue of SEM images. "
                              "Every HTML page has a JSON twin under /api/.")
    add_api_docs(app)  # Swagger UI / ReDoc from the package, not a CDN
    app.state.semcat = WebState(settings=settings, catalog=catalog, templates=_templates())
    app.state.signer = SessionSigner(load_secret(settings.secret_path))
    app.state.revoked = Revoked(settings.secret_path.with_name(settings.secret_path.name + ".revoked"))
    for methods, path, view, kind in ROUTES:
        app.add_api_route(path, view, methods=methods, include_in_schema=kind == API,
                          response_model=None, name=f"{view.__module__.rsplit('.', 1)[-1]}.{view.__name__}:{kind}")
    app.mount("/static", StaticFiles(directory=template_dir().with_name("static")), name="static")
    app.add_exception_handler(StarletteHTTPException, _error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ValueError, _value_error)
    app.add_exception_handler(Exception, _server_error)
    app.add_middleware(AuthMiddleware, settings=settings, signer=app.state.signer, revoked=app.state.revoked)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run blocking request work in ``REQUEST_THREADS`` threads (anyio's default is 40)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
    yield


def app_from_env() -> FastAPI:
    """The app of one ``semcat serve --workers N`` process (uvicorn imports this factory by name)."""
    from semcat.web.settings import settings_from_env

    return create_app(settings_from_env())


async def _value_error(request: Request, exc: Exception) -> Response:
    """Bad values the catalog refuses (e.g. an unknown order) are the client's mistake: 400."""
    return await _error(request, StarletteHTTPException(400, str(exc)))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's parameter checks (a limit past its bound ...) as one line: ``400 offset: ...``."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
        got = str(err.get("input", ""))
        parts.append(f"{where}: {err.get('msg', 'invalid')}; got {got[:40] + '…' if len(got) > 40 else got!r}")
    return await _error(request, StarletteHTTPException(400, "; ".join(parts)))


async def _server_error(request: Request, exc: Exception) -> Response:
    """Any other failure as one line: a full disk (507) and a read-only store (503) say so.

    Called by Starlette's outermost error middleware, which still logs the traceback server-side.
    """
    problem = storage_problem(exc)
    if problem is None:
        status, detail = 500, f"internal error ({type(exc).__name__}): the server log has the details"
    else:
        status, detail = (507 if problem[0] == "full" else 503), problem[1]
    return await _error(request, StarletteHTTPException(status, detail))
