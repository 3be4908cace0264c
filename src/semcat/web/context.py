"""Shared per-app state and the one rendering rule: the same context as HTML or as JSON.

Every page is one view function registered twice (``/x`` and ``/api/x``); ``render`` answers
with the Jinja2 template for the HTML route and with the same context as JSON for the API route.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

from semcat import CATEGORIES
from semcat.web.security import CSRF_FIELD, User
from semcat.web.settings import Settings

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
HASH_PREFIX_RE = re.compile(r"^[0-9a-f]{6,64}$")
CATEGORIES_TTL_S = 2.0
"""Longest a server process shows a category list older than the catalog's (another process added one)."""


@dataclass
class WebState:
    """What every view needs: settings, the open catalog, templates and the (lazily loaded) model."""

    settings: Settings
    catalog: Any
    templates: Jinja2Templates
    _model: Any = None
    _model_lock: threading.Lock = field(default_factory=threading.Lock)
    _created: tuple[float, list[str]] | None = None
    decodes: threading.BoundedSemaphore = field(init=False)
    """Slots images are decoded in: ``settings.max_decodes`` at once, across all requests."""
    retrain_dir: Path = field(init=False)
    """``settings.retrain_dir``, worked out once (it hashes the URL and creates the semcat home)."""
    _live: tuple[tuple[int, int, int] | None, Path | None] | None = None

    def __post_init__(self) -> None:
        self.decodes = threading.BoundedSemaphore(self.settings.max_decodes)
        self.retrain_dir = self.settings.retrain_dir

    _model_file: Path | None = None

    def model_file(self) -> Path | None:
        """The live retrained model's file (``semcat.retrain``), else ``--model``, else None.

        Every page asks, so ``live.json`` is read again only when its inode, time or size changed
        (a retrain replaces it atomically): one ``stat`` per request instead of a read and a parse.
        """
        from semcat.retrain import LIVE, live_model_file

        try:
            st = (self.retrain_dir / LIVE).stat()
            key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        cached = self._live
        if cached is None or cached[0] != key:
            cached = self._live = (key, live_model_file(self.retrain_dir) if key else None)
        live = cached[1]
        return live if live is not None and live.is_file() else self.settings.model_path

    def model(self) -> Any:
        """The live ``SemcatModel`` (loaded on first use, reloaded when a retrain replaces it), or None."""
        path = self.model_file()
        if path is None:
            return None
        with self._model_lock:
            if self._model is None or path != self._model_file:
                from semcat.model import load_model

                self._model, self._model_file = load_model(path), path
            return self._model

    def created_categories(self, *, fresh: bool = False) -> list[str]:
        """The catalog's created categories, read at most every ``CATEGORIES_TTL_S`` (or now, ``fresh``):
        every page and label write needs them, and the read was a transaction of its own."""
        now = time.monotonic()
        cached = self._created
        if fresh or cached is None or now - cached[0] > CATEGORIES_TTL_S:
            cached = self._created = (now, self.catalog.categories())
        return cached[1]

    def classes(self, *, fresh: bool = False) -> list[str]:
        """Classes a reviewer can choose: the model's, else the 10 NFFA categories, then the
        categories created in the catalog (in creation order, so keys stay put)."""
        from semcat.retrain import choices

        model = self.model()
        base = choices(model) if model is not None else list(CATEGORIES)
        return base + [c for c in self.created_categories(fresh=fresh) if c not in base]

    def classes_with(self, label: object) -> list[str]:
        """``classes()``, read again from the catalog when ``label`` is not among them: a category
        created a moment ago, maybe by another ``--workers`` process, is accepted at once."""
        classes = self.classes()
        return classes if label in classes else self.classes(fresh=True)


def state(request: Request) -> WebState:
    return request.app.state.semcat


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` of ``jsonable_encoder(content)``, encoded by orjson, the encoder called only
    where needed.

    ``jsonable_encoder`` walks and rebuilds every value; contexts here are almost all plain JSON
    types already, so orjson does the walk (in C: the images' nested vendor metadata made encoding
    a large part of a catalog page) and asks the encoder only about the rest (paths, dataclasses
    ...). Non-finite floats become ``null``; what orjson cannot encode (integers past 64 bits) goes
    through ``json.dumps``.
    """

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, default=jsonable_encoder, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                              default=jsonable_encoder).encode("utf-8")


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    """HTML from ``template`` or, on ``/api/`` routes, the same ``context`` as JSON."""
    if is_api(request):
        return FastJSONResponse(context, status)
    user: User | None = getattr(request.state, "user", None)
    page = {**context, "user": user, "csrf_field": CSRF_FIELD, "read_only": not (user and user.can_review)}
    return state(request).templates.TemplateResponse(request, template, page, status_code=status)


def check_hash(sha256: str, *, prefix: bool = False) -> str:
    """Refuse anything that is not a (lowercase hex) content hash: 400, before any lookup.

    Files are only ever served by hash, so ``..``, slashes or encoded tricks never reach disk.
    """
    value = sha256.lower()
    if not (HASH_PREFIX_RE if prefix else SHA256_RE).match(value):
        need = "at least 6 hex digits of" if prefix else "the 64 hex digits of"
        raise HTTPException(400, f"expected {need} an image's SHA-256; got {sha256[:80]!r}")
    return value


async def payload(request: Request) -> dict[str, Any]:
    """The body of a write: a JSON object for API clients, form fields for browsers."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            raise HTTPException(400, "body: expected a JSON object; got invalid JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(400, f"body: expected a JSON object; got {type(data).__name__}")
        return data
    return dict(await request.form())


def template_dir() -> Path:
    return Path(__file__).with_name("templates")
