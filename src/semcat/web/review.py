"""The review queue and every write a reviewer makes: confirm a label, add a tag, add a note.

The queue page shows one image at a time (lowest confidence first) with numbered choices:
the model's candidates first, then the other classes. Keys 1..9, 0 pick a choice, the arrow keys
skip; each confirmation is a plain form POST, so a click works without JavaScript too.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from semcat._validation import MAX_OFFSET, check_query_text
from semcat.web.browse import resolve_hash
from semcat.web.context import FastJSONResponse, is_api, payload, render, state
from semcat.web.security import User, require_reviewer, safe_next

KEYS = "1234567890"
MAX_TAG = 64
MAX_NOTE = 5000


def choices(record: dict, classes: list[str]) -> list[dict]:
    """Numbered choices for one image: candidates first (best first), then the other classes."""
    scores = {c: s for c, s in record.get("top") or []}
    first = [c for c in record.get("candidates") or [] if c in classes]
    if not first:
        first = [c for c, _ in record.get("top") or [] if c in classes][:1]
    ordered = first + sorted((c for c in classes if c not in first), key=lambda c: -scores.get(c, -1.0))
    return [{"key": KEYS[i] if i < len(KEYS) else None, "label": c, "candidate": c in first,
             "score": scores.get(c)} for i, c in enumerate(ordered)]


def queue_page(request: Request,
               offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many queued images")] = 0,
               limit: Annotated[int, Query(ge=1, le=500, description="Queued images to list")] = 20) -> Response:
    """Unconfirmed suggest/manual/unknown images, lowest top score first; the first one is shown."""
    cat = state(request).catalog
    queue = [r.to_dict() for r in cat.review_queue(limit=limit, offset=offset)]
    remaining = cat.review_count()
    current = queue[0] if queue else None
    context = {
        "queue": queue, "current": current, "offset": offset, "remaining": remaining,
        "choices": choices(current, state(request).classes()) if current else [],
        "prev_offset": offset - 1 if offset else None,
        "next_offset": offset + 1 if len(queue) > 1 else None,
    }
    return render(request, "review.html", context)


def _text(data: dict, name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise HTTPException(400, f"{name}: expected non-empty text; got {str(value)[:40]!r}")
    try:  # line breaks are fine in a note; NUL and other control characters are not
        check_query_text(name, value.replace("\n", " ").replace("\r", " ").replace("\t", " "), most=limit)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return value.strip()


def _done(request: Request, data: dict, sha256: str) -> Response:
    """After a write: JSON with the image's new state for the API, else back to the page."""
    if is_api(request):
        return FastJSONResponse({"image": state(request).catalog.get(sha256).to_dict()})
    return RedirectResponse(safe_next(data.get("next") or f"/images/{sha256}"), 303)


def _confirm(request: Request, data: dict, sha256: str, user: User) -> Response:
    sha = resolve_hash(request, sha256)
    label = _text(data, "label", 200)
    classes = state(request).classes()
    if label not in classes:
        raise HTTPException(400, f"label: expected one of {', '.join(classes)}; got {label[:80]!r}")
    state(request).catalog.confirm(sha, label, who=user.name, source="human")
    return _done(request, data, sha)


def _tag(request: Request, data: dict, sha256: str, user: User) -> Response:
    sha = resolve_hash(request, sha256)
    state(request).catalog.add_tag(sha, _text(data, "tag", MAX_TAG))
    return _done(request, data, sha)


def _note(request: Request, data: dict, sha256: str, user: User) -> Response:
    sha = resolve_hash(request, sha256)
    state(request).catalog.add_note(sha, _text(data, "text", MAX_NOTE), who=user.name)
    return _done(request, data, sha)


async def confirm_label(request: Request, sha256: str, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Confirm the class of an image (JSON or form field ``label``); stored with who and when."""
    return await run_in_threadpool(_confirm, request, await payload(request), sha256, user)


async def add_tag(request: Request, sha256: str, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Attach a free-text tag (field ``tag``) to an image, e.g. a project or sample name."""
    return await run_in_threadpool(_tag, request, await payload(request), sha256, user)


async def add_note(request: Request, sha256: str, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Add a note (field ``text``) to an image; stored with who wrote it and when."""
    return await run_in_threadpool(_note, request, await payload(request), sha256, user)
