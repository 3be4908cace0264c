"""The map: every catalogued image with features laid out in 2-D (``semcat.layout``), coloured by
category, decision or confirmation; hover shows a thumbnail, a lasso selects, one action labels
the selection. The page draws on a canvas from ``/api/map`` (compact parallel arrays)."""
from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from semcat.web.context import FastJSONResponse, check_hash, payload, render, state
from semcat.web.retraining import after_confirmations
from semcat.web.security import User, require_reviewer

MAX_SELECTION = 100_000


def _codes(values: list, names: list) -> list[int]:
    index = {v: i for i, v in enumerate(names)}
    return [index[v] for v in values]


def map_data(request: Request) -> dict:
    """Parallel arrays: hashes, x, y in [0, 1] and codes into the name lists of each colouring."""
    from semcat.layout import catalog_layout

    cat = state(request).catalog
    shas, xy = catalog_layout(cat)
    states = cat.image_states()
    none = (None, None, False)
    category = [states.get(s, none)[0] for s in shas]
    decision = [states.get(s, none)[1] for s in shas]
    confirmed = ["confirmed" if states.get(s, none)[2] else "unconfirmed" for s in shas]
    names = {"category": sorted({c for c in category if c}, key=str) + [None],
             "decision": ["auto", "suggest", "manual", "unknown", None], "confirmed": ["confirmed", "unconfirmed"]}
    return {
        "n": len(shas), "sha256": shas, "x": np.round(xy[:, 0].astype(float), 4).tolist(),
        "y": np.round(xy[:, 1].astype(float), 4).tolist(), "names": names,
        "category": _codes(category, names["category"]), "decision": _codes(decision, names["decision"]),
        "confirmed": _codes(confirmed, names["confirmed"]),
    }


async def map_page(request: Request) -> Response:
    """The map page (HTML) or its data (``/api/map``)."""
    if request.url.path.startswith("/api/"):
        return FastJSONResponse(await run_in_threadpool(map_data, request))
    return render(request, "map.html", {"classes": state(request).classes()})


def _label_many(request: Request, data: dict, user: User) -> Response:
    shas = data.get("sha256")
    if not isinstance(shas, list) or not shas or len(shas) > MAX_SELECTION:
        raise HTTPException(400, f"sha256: expected a list of 1 to {MAX_SELECTION} image hashes")
    shas = [check_hash(str(s)) for s in shas]
    label = data.get("label")
    classes = state(request).classes_with(label)
    if not isinstance(label, str) or label not in classes:
        raise HTTPException(400, f"label: expected one of {', '.join(classes)}; got {label!r}")
    from semcat.catalog import CatalogError

    try:
        n = state(request).catalog.confirm_many(shas, label, who=user.name, source="human", allowed=classes)
    except CatalogError as exc:
        raise HTTPException(404, str(exc)) from None
    after_confirmations(state(request))
    return FastJSONResponse({"labelled": n, "label": label})


async def label_many(request: Request, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Label many images at once: JSON ``{"sha256": [...], "label": "Fibres"}`` (all or none)."""
    return await run_in_threadpool(_label_many, request, await payload(request), user)
