"""Catalog pages: the searchable thumbnail grid, one image's detail page, and image bytes by hash."""
from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from semcat.catalog.search import COUNT_CAP
from semcat.errors import ImageReadError, SemcatError
from semcat.web.context import check_hash, render, state
from semcat.web.thumbs import rendering

DECISIONS = ("auto", "suggest", "manual", "unknown")
ORDERS = ("recent", "score", "score_desc", "path")
PAGE_SIZE = 60
MAX_PAGE = 500


def _num(name: str, value: str | None, kind: type = float) -> Any:
    if value is None or value.strip() == "":
        return None
    try:
        return kind(value)
    except ValueError:
        raise HTTPException(400, f"{name}: expected a number; got {value!r}") from None


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
    return parts[0], _num("measurement min", parts[1]), _num("measurement max", parts[2])


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
        offset: Annotated[int, Query(ge=0, description="Images to skip")] = 0,
    ) -> None:
        if decision and decision not in DECISIONS:
            raise HTTPException(400, f"decision: expected one of {', '.join(DECISIONS)}; got {decision!r}")
        if order not in ORDERS:
            raise HTTPException(400, f"order: expected one of {', '.join(ORDERS)}; got {order!r}")
        if confirmed not in (None, "", "yes", "no", "true", "false"):
            raise HTTPException(400, f"confirmed: expected yes or no; got {confirmed!r}")
        self.form = {k: v for k, v in locals().items() if k not in ("self",) and v not in (None, "")}
        self.filters: dict[str, Any] = {
            "category": category or None,
            "decision": decision or None,
            "min_score": _num("min_score", min_score),
            "max_score": _num("max_score", max_score),
            "confirmed": None if not confirmed else confirmed in ("yes", "true"),
            "mag_min": _num("mag_min", mag_min),
            "mag_max": _num("mag_max", mag_max),
            "pixel_size_min": _num("pixel_size_min", pixel_size_min),
            "pixel_size_max": _num("pixel_size_max", pixel_size_max),
            "date_from": _date("date_from", date_from),
            "date_to": _date("date_to", date_to),
            "text": text or None,
            "tag": tag or None,
            "measurement": _measurement(measurement),
        }
        self.order, self.limit, self.offset = order, limit, offset


def catalog_page(request: Request, f: Annotated[SearchFilters, Depends()]) -> Response:
    """Search the catalog: matching images (newest first by default), with paging."""
    cat = state(request).catalog
    images = cat.search(**f.filters, limit=f.limit, offset=f.offset, order=f.order)
    cap = max(COUNT_CAP, f.offset + f.limit + 1)  # enough to know whether a next page exists
    total = cat.count(**f.filters, at_most=cap)
    paging = {k: v for k, v in f.form.items() if k not in ("offset",)}
    context = {
        "total": total, "total_is_lower_bound": total >= cap, "offset": f.offset, "limit": f.limit, "filters": f.form,
        "images": [r.to_dict() for r in images],
        "prev_offset": max(0, f.offset - f.limit) if f.offset else None,
        "next_offset": f.offset + f.limit if f.offset + f.limit < total else None,
        "paging": paging, "decisions": DECISIONS, "orders": ORDERS, "classes": state(request).classes(),
    }
    return render(request, "catalog.html", context)


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


def _source(request: Request, sha256: str) -> Any:
    """A file of a catalogued image that still exists (one indexed query when all is well)."""
    sha = check_hash(sha256)
    path = state(request).catalog.existing_path(sha)
    if path is not None:
        return path
    if state(request).catalog.get(sha) is None:
        raise HTTPException(404, f"no catalogued image has the hash {sha}")
    raise HTTPException(404, f"image {sha[:12]}… is catalogued but none of its files exists any more")


def _png(request: Request, sha256: str, size: int | None) -> Response:
    """The cached PNG as bytes, read in this worker thread.

    Renderings are small; ``FileResponse`` would hop to the thread pool three more times
    (stat, open, read) per thumbnail. The ETag is the cache key: a rendering never changes.
    """
    source = _source(request, sha256)
    try:
        png = rendering(source, sha256.lower(), size=size)
    except ImageReadError as exc:
        raise HTTPException(422, f"cannot render the image: {exc.problem}") from None
    return Response(png.read_bytes(), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=86400", "ETag": f'"{png.stem}"'})


def thumbnail(request: Request, sha256: str,
              size: Annotated[int, Query(ge=16, le=1024, description="Longer side in pixels")] = 256) -> Response:
    """PNG thumbnail of a catalogued image (data bar cropped), generated once and cached."""
    return _png(request, sha256, size)


def full_view(request: Request, sha256: str) -> Response:
    """Large PNG rendering of a catalogued image (data bar kept: it carries the scale)."""
    return _png(request, sha256, None)


def original(request: Request, sha256: str) -> Response:
    """The catalogued file itself, as a download."""
    path = _source(request, sha256)
    return FileResponse(path, filename=path.name, content_disposition_type="attachment",
                        media_type="application/octet-stream")
