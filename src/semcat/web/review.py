"""The review queue and every write a reviewer makes: confirm or undo a label, create a
category, add a tag, add a note.

The queue page shows one image at a time (lowest confidence first, or in an active-learning
order with ``?strategy=``, see ``semcat.active``) with choices: the model's candidates first,
then the other classes. Each class keeps its key across images (1..9, 0, then letters), so
hands learn them; after a label the page says what was stored and Backspace / ← undoes it.
Each write is a plain form POST, so a click works without JavaScript too.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from semcat._validation import MAX_OFFSET, check_query_text
from semcat.web.browse import get_record, resolve_hash
from semcat.web.context import FastJSONResponse, check_hash, is_api, payload, render, state
from semcat.web.retraining import after_confirmations, model_info
from semcat.web.security import User, require_reviewer, safe_next

KEYS = "1234567890abcdefghijklmopqrstuvwxyz"
"""Key of the n-th class (``n`` is not one: it focuses the new-category field)."""
MAX_TAG = 64
MAX_NOTE = 5000
Strategy = Literal["uncertainty", "diversity", "hybrid", "random"]


def choices(record: dict, classes: list[str], suggested: Sequence[str] = ()) -> list[dict]:
    """Choices for one image: candidates (and ``suggested`` new categories) first, best first,
    then the other classes. A class's key is its place in ``classes``, the same on every image."""
    scores = {c: s for c, s in record.get("top") or []}
    first = [c for c in record.get("candidates") or [] if c in classes]
    if not first:
        first = [c for c, _ in record.get("top") or [] if c in classes][:1]
    first += [c for c in suggested if c in classes and c not in first]
    ordered = first + sorted((c for c in classes if c not in first), key=lambda c: -scores.get(c, -1.0))
    key = {c: KEYS[i] for i, c in enumerate(classes[:len(KEYS)])}
    return [{"key": key.get(c), "label": c, "candidate": c in first, "suggested": c in suggested,
             "score": scores.get(c)} for c in ordered]


def queue_page(request: Request,
               offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many queued images")] = 0,
               limit: Annotated[int, Query(ge=1, le=500, description="Queued images to list")] = 20,
               strategy: Annotated[Strategy | None, Query(description="Active-learning order (default: lowest top score first)")] = None,
               done: Annotated[str | None, Query(description="Hash of the image just labelled (shown with an undo)")] = None) -> Response:
    """Unconfirmed suggest/manual/unknown images, in ``strategy`` order; the first one is shown."""
    from semcat.active import review_order
    from semcat.prototypes import suggest

    st = state(request)
    cat = st.catalog
    if strategy is None:
        records, remaining = cat.review_page(limit=limit, offset=offset)
    else:
        try:
            records = review_order(cat, strategy, offset + limit)[offset:]
        except ValueError as exc:  # e.g. diversity without stored features: say so on the page
            raise HTTPException(400, f"strategy: {exc}") from None
        remaining = cat.review_count()
    queue = [r.to_dict() for r in records]
    current = queue[0] if queue else None
    classes = st.classes()
    just = cat.get(check_hash(done)) if done else None
    qs = f"&strategy={strategy}" if strategy else ""
    context = {
        "queue": queue, "current": current, "offset": offset, "remaining": remaining,
        "choices": choices(current, classes, suggest(cat, current["sha256"], st.created_categories())) if current else [],
        "prev_offset": offset - 1 if offset else None,
        "next_offset": offset + 1 if len(queue) > 1 else None,
        "strategy": strategy, "qs": qs,
        "labelled": {"sha256": just.sha256, "label": just.label, "name": (just.path or just.sha256).rsplit("/", 1)[-1]}
        if just is not None and just.label else None,
        "model": model_info(st),
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
    from semcat.catalog import CatalogError

    label = _text(data, "label", 200)
    classes = state(request).classes_with(label)
    if label not in classes:
        raise HTTPException(400, f"label: expected one of {', '.join(classes)} (or create a new category "
                                 f"first); got {label[:80]!r}")
    try:  # the write transaction resolves the hash itself: no separate lookup first
        sha = state(request).catalog.confirm(check_hash(sha256, prefix=True), label, who=user.name,
                                             source="human", allowed=classes)
    except CatalogError:
        raise HTTPException(404, f"no catalogued image has the hash {sha256[:80]!r}") from None
    after_confirmations(state(request))
    return _done(request, data, sha)


def _undo(request: Request, data: dict, sha256: str, user: User) -> Response:
    from semcat.catalog import CatalogError

    record = get_record(request, sha256)
    try:
        state(request).catalog.undo_label(record.sha256, who=user.name)
    except CatalogError as exc:
        raise HTTPException(409, str(exc)) from None
    return _done(request, data, record.sha256)


def _new_category(request: Request, data: dict, user: User) -> Response:
    cat = state(request).catalog
    name = cat.add_category(_text(data, "name", 200), who=user.name)
    sha = data.get("sha256")
    if sha:  # create and label the image in one step
        record = get_record(request, str(sha))
        cat.confirm(record.sha256, name, who=user.name, source="human", allowed=state(request).classes(fresh=True))
        after_confirmations(state(request))
    if is_api(request):
        return FastJSONResponse({"category": name, "categories": state(request).classes(fresh=True)})
    return RedirectResponse(safe_next(data.get("next") or "/review"), 303)


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


async def undo_label(request: Request, sha256: str, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Undo your latest label of an image (409 when its latest label is someone else's or none)."""
    return await run_in_threadpool(_undo, request, await payload(request), sha256, user)


async def new_category(request: Request, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Create a category (field ``name``); with ``sha256``, also label that image with it."""
    return await run_in_threadpool(_new_category, request, await payload(request), user)
