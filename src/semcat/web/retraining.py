"""Which model is live, and background retraining after every N confirmations (``--retrain-every``).

After each confirmation the server counts the catalogue's confirmations; when N have come since
the latest retrain it starts ``semcat retrain`` in a process of its own (``semcat.retrain``) and
goes on serving. The retrained model is picked up by ``WebState.model`` for the next request.
The review page and ``/api/model`` show the live model and when the next retrain is due.
"""
from __future__ import annotations

import subprocess
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from semcat.web.context import FastJSONResponse, WebState, state

_children: list[subprocess.Popen] = []
"""Retrain processes this server process started (polled so that none stays a zombie)."""


def after_confirmations(st: WebState) -> None:
    """Start a background retrain when ``--retrain-every`` confirmations have come since the last one."""
    from semcat import retrain

    _children[:] = [p for p in _children if p.poll() is None]
    every = st.settings.retrain_every
    if every <= 0 or st.settings.read_only:
        return
    folder = st.retrain_dir
    if retrain.next_due(st.catalog.confirmation_count(), folder, every) == 0:
        child = retrain.start_background(st.settings.db_url, folder, base=st.settings.model_path)
        if child is not None:
            _children.append(child)


def model_info(st: WebState) -> dict[str, Any]:
    """The live model (version, file, trained when, on how many labels, calibration) and the retrain state."""
    from semcat import retrain

    folder = st.retrain_dir
    entry = retrain.live(folder) if retrain.live_model_file(folder) else None
    model = st.model()
    if entry is None and model is not None:  # the --model the server was started with
        training = model.meta.get("training") or {}
        entry = {"version": None, "file": st.settings.model_path.name if st.settings.model_path else None,
                 "model_id": model.model_id, "trained": training.get("trained"),
                 "labels": sum(sum(c.values()) for c in (training.get("counts") or {}).values()) or None,
                 "classes": list(model.classes),
                 "calibration": retrain.calibration_summary(model.calibration or {}) if model.calibration else None}
    every = st.settings.retrain_every
    count = st.catalog.confirmation_count()
    return {"live": entry, "retrain": {"every": every, "confirmations": count,
                                       "next_due_in": retrain.next_due(count, folder, every),
                                       "last": retrain.status(folder)}}


async def model_page(request: Request) -> Response:
    """The live model and the background retrain's state (JSON)."""
    return FastJSONResponse(await run_in_threadpool(model_info, state(request)))
