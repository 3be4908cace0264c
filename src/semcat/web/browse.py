"""Catalog pages: the searchable thumbnail grid, one image's detail page, and image bytes by hash."""
from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import quote

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from semcat import DECISIONS
from semcat._io import atomic_write_bytes
from semcat._storage import storage_problem
from semcat._validation import MAX_OFFSET, check_number, check_query_text
from semcat.catalog.db import CatalogError
from semcat.catalog.search import COUNT_CAP
from semcat.errors import ImageReadError, SemcatError
from semcat.web.context import check_hash, render, state
from semcat.web.files import CHUNK, open_verified
from semcat.web.thumbs import cache_path, render_png, rendering_key

ORDERS = ("recent", "score", "score_desc", "path")
PAGE_SIZE = 60
MAX_PAGE = 500
DECODE_WAIT_S = 30.0


def _num(name: str, value: str | None, *, low: float | None = None, high: float | None = None) -> float | None:
    try:
        return check_number(name, value, low=low, high=high)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _date(name: str, value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: expected a date like 2024-05-31; got {value!r}") from None


def _measurement(value: str | None) -> tuple[str, float | None, float | None] | None:
    if not value:
        return None
    parts = value.split(":")
    if len(parts) != 3 or not parts[0]:
        raise HTTPException(400, f"measurement: expected NAME:MIN:MAX (MIN or MAX may be empty); got {value!r}")
    return _text("measurement", parts[0]), _num("measurement min", parts[1]), _num("measurement max", parts[2])


def _text(name: str, value: str | None) -> str | None:
    try:
        return check_query_text(name, value)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


class SearchFilters:
    """The filters of ``semcat search`` as query parameters; empty form fields mean "any"."""

    def __init__(
        self,
        category: Annotated[str | None, Query(description="Predicted or confirmed class")] = None,
        decision: Annotated[str | None, Query(description="auto, suggest, manual or unknown")] = None,
        min_score: Annotated[str | None, Query(description="Lowest top-1 score (0..1)")] = None,
        max_score: Annotated[str | None, Query(description="Highest top-1 score (0..1)")] = None,
        confirmed: Annotated[str | None, Query(description="yes: only confirmed; no: only unconfirmed")] = None,
        mag_min: Annotated[str | None, Query(description="Lowest magnification")] = None,
        mag_max: Annotated[str | None, Query(description="Highest magnification")] = None,
        pixel_size_min: Annotated[str | None, Query(description="Smallest pixel size in metres")] = None,
        pixel_size_max: Annotated[str | None, Query(description="Largest pixel size in metres")] = None,
        date_from: Annotated[str | None, Query(description="Acquired on or after (YYYY-MM-DD)")] = None,
        date_to: Annotated[str | None, Query(description="Acquired on or before (YYYY-MM-DD)")] = None,
        text: Annotated[str | None, Query(description="Substring of the file path")] = None,
        tag: Annotated[str | None, Query(description="Images with this tag")] = None,
        measurement: Annotated[str | None, Query(description="NAME:MIN:MAX, e.g. coherency:0.8:")] = None,
        order: Annotated[str, Query(description=f"One of {', '.join(ORDERS)}")] = "recent",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Images per page")] = PAGE_SIZE,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Images to skip")] = 0,
    ) -> None:
        if decision and decision not in DECISIONS:
            raise HTTPException(400, f"decision: expected one of {', '.join(DECISIONS)}; got {decision!r}")
        if order not in ORDERS:
            raise HTTPException(400, f"order: expected one of {', '.join(ORDERS)}; got {order!r}")
        if confirmed not in (None, "", "yes", "no", "true", "false"):
            raise HTTPException(400, f"confirmed: expected yes or no; got {confirmed!r}")
        self.form = {k: v for k, v in locals().items() if k not in ("self",) and v not in (None, "")}
        self.filters: dict[str, Any] = {
            "category": _text("category", category),
            "decision": decision or None,
            "min_score": _num("min_score", min_score, low=0.0, high=1.0),
            "max_score": _num("max_score", max_score, low=0.0, high=1.0),
            "confirmed": None if not confirmed else confirmed in ("yes", "true"),
            "mag_min": _num("mag_min", mag_min),
            "mag_max": _num("mag_max", mag_max),
            "pixel_size_min": _num("pixel_size_min", pixel_size_min),
            "pixel_size_max": _num("pixel_size_max", pixel_size_max),
            "date_from": _date("date_from", date_from),
            "date_to": _date("date_to", date_to),
            "text": _text("text", text),
            "tag": _text("tag", tag),
            "measurement": _measurement(measurement),
        }
        self.order, self.limit, self.offset = order, limit, offset


async def search_filters(**params: Any) -> SearchFilters:
    """``SearchFilters`` as an async dependency: FastAPI runs a class dependency in a worker thread,
    so a catalog page queued twice for one (40% of the requests under load); checking query
    parameters needs none."""
    return SearchFilters(**params)


search_filters.__signature__ = inspect.signature(SearchFilters).replace(  # type: ignore[attr-defined]
    return_annotation=SearchFilters)


def catalog_page(request: Request, f: Annotated[SearchFilters, Depends(search_filters)]) -> Response:
    """Search the catalog: matching images (newest first by default), with paging."""
    cap = max(COUNT_CAP, f.offset + f.limit + 1)  # enough to know whether a next page exists
    images, total = state(request).catalog.search_page(**f.filters, limit=f.limit, offset=f.offset, order=f.order,
                                                       count_at_most=cap)
    paging = {k: v for k, v in f.form.items() if k not in ("offset",)}
    context = {
        "total": total, "total_is_lower_bound": total >= cap, "offset": f.offset, "limit": f.limit, "filters": f.form,
        "images": [r.to_dict() for r in images],
        "prev_offset": max(0, f.offset - f.limit) if f.offset else None,
        "next_offset": f.offset + f.limit if f.offset + f.limit < total else None,
        "paging": paging, "decisions": DECISIONS, "orders": ORDERS, "classes": state(request).classes(),
    }
    return render(request, "catalog.html", context)


def resolve_hash(request: Request, sha256: str) -> str:
    """The full hash of a catalogued image (one indexed query), else 404; for writes that need no record."""
    try:
        return state(request).catalog.resolve(check_hash(sha256, prefix=True))
    except CatalogError:
        raise HTTPException(404, f"no catalogued image has the hash {sha256[:80]!r}") from None


def get_record(request: Request, sha256: str) -> Any:
    record = state(request).catalog.get(check_hash(sha256, prefix=True))
    if record is None:
        raise HTTPException(404, f"no catalogued image has the hash {sha256!r}")
    return record


def image_page(request: Request, sha256: str) -> Response:
    """One image: full view, metadata, top-k scores, decision, history, similar images, tags, notes."""
    record = get_record(request, sha256)
    if record.sha256 != sha256.lower() and not request.url.path.startswith("/api/"):
        return RedirectResponse(f"/images/{record.sha256}", 307)
    cat = state(request).catalog
    try:
        similar = [{"sha256": h, "score": float(s)} for h, s in cat.similar(record.sha256, k=8)]
    except SemcatError as exc:  # e.g. no features stored for this image yet
        similar, similar_error = [], str(exc)
    else:
        similar_error = None
    context = {
        "image": record.to_dict(), "history": cat.history(record.sha256), "similar": similar,
        "similar_error": similar_error, "classes": state(request).classes(),
        "duplicates": cat.duplicates_of(record.sha256),
    }
    return render(request, "image.html", context)


def verified_source(request: Request, sha256: str) -> tuple[Path, BinaryIO]:
    """A catalogued file of the image, open and verified to hold the catalogued bytes.

    Paths that are gone, replaced, or lead out of their folder are flagged missing in the catalog
    (best effort: a read-only catalog just serves nothing for them) and never read for a client.
    """
    sha = check_hash(sha256)
    cat = state(request).catalog
    size, paths = cat.file_candidates(sha)
    if size is None:
        raise HTTPException(404, f"no catalogued image has the hash {sha}")
    for path in paths:
        f = open_verified(path, sha, size)
        if f is not None:
            return path, f
    if not cat.db.read_only:
        try:
            cat.mark_missing(paths)
        except Exception as exc:  # noqa: BLE001 - flagging is a courtesy; refusing to serve is the point
            if storage_problem(exc) is None:
                raise
    raise HTTPException(404, f"image {sha[:12]}… is catalogued but none of its files holds that content any "
                             "more (moved, deleted or replaced): run `semcat ingest` on its folder again")


def _png(request: Request, sha256: str, size: int | None) -> Response:
    """The cached PNG, rendered once from verified bytes (one decode at a time per slot).

    Renderings are small and keyed by content hash; the ETag is that key: a rendering never changes.
    """
    sha = check_hash(sha256)
    st = state(request)
    kind, _, _ = rendering_key(size)
    cached = cache_path(sha, kind)
    resolve_hash(request, sha)  # catalogued? (one indexed query; the files are checked only to render)
    try:
        png = cached.read_bytes()
    except FileNotFoundError:
        png = _render(request, sha, size)
        try:
            atomic_write_bytes(cached, png)
        except OSError as exc:  # a full or read-only cache folder still shows the image
            if storage_problem(exc) is None:
                raise
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=86400", "ETag": f'"{cached.stem}"'})


def _render(request: Request, sha: str, size: int | None) -> bytes:
    st = state(request)
    path, f = verified_source(request, sha)
    with f:
        data = f.read()
    if not st.decodes.acquire(timeout=DECODE_WAIT_S):
        raise HTTPException(503, "busy decoding other images: try again in a moment")
    try:
        return render_png(data, path.name, size, max_decode_bytes=st.settings.max_decode_bytes)
    except ImageReadError as exc:
        raise HTTPException(422, f"cannot render the image: {exc.problem}") from None
    finally:
        st.decodes.release()


def thumbnail(request: Request, sha256: str,
              size: Annotated[int, Query(ge=16, le=1024, description="Longer side in pixels")] = 256) -> Response:
    """PNG thumbnail of a catalogued image (data bar cropped), generated once and cached."""
    return _png(request, sha256, size)


def full_view(request: Request, sha256: str) -> Response:
    """Large PNG rendering of a catalogued image (data bar kept: it carries the scale)."""
    return _png(request, sha256, None)


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK):
            yield chunk


def original(request: Request, sha256: str) -> Response:
    """The catalogued file itself, as a download (streamed from the very file that was verified)."""
    path, f = verified_source(request, sha256)
    size = os.fstat(f.fileno()).st_size
    return StreamingResponse(_chunks(f), media_type="application/octet-stream", headers={
        "Content-Length": str(size), "Content-Disposition": f"attachment; filename*=utf-8''{quote(path.name)}"})
