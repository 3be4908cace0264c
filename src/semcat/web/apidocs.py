"""The API docs pages (/docs, /redoc) with their scripts served from the installed package, not a CDN.

FastAPI's default pages load Swagger UI and ReDoc from jsDelivr, so they are blank offline or behind
a firewall. The ``fastapi-offline`` package ships the same assets (Swagger UI 5, which renders the
OpenAPI 3.1 that FastAPI writes); semcat serves them under ``/docs/assets/`` with FastAPI's own page
builders. The pages keep their inline start-up script, so ``security`` exempts /docs and /redoc from
the site's CSP, as before.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"


def assets_dir() -> Path:
    """Folder holding swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png."""
    return Path(str(files("fastapi_offline") / "static"))


def add_api_docs(app: FastAPI) -> None:
    """Serve /docs (Swagger UI) and /redoc (ReDoc) from local assets; build ``app`` with docs_url=None."""
    title, openapi_url = app.title, app.openapi_url or "/openapi.json"

    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} API",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon.png")

    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} API",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)

    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="api-docs-assets")
    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
