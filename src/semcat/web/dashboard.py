"""Dashboard: counts per category and decision, the model's calibration plots, and the same plots
redrawn from the labels reviewers confirmed (how well calibrated the model is on *this* archive)."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
from fastapi import HTTPException, Request
from fastapi.responses import Response

from semcat.web.context import render, state

PLOTS = ("score_histogram", "score_distributions", "p_correct", "reliability")
SOURCES = ("model", "reviewed")
_REVIEWED_MAX = 20_000
_plot_lock = threading.Lock()  # pyplot keeps global state: one figure at a time


def reviewed_stats(catalog: Any) -> np.ndarray:
    """Score table (N, 3) [raw top, top, case] of predicted images a person has confirmed.

    case 0: the confirmed label is the top-1 class, 1: it is the second, 2: neither.
    """
    rows = []
    for rec in catalog.iter_records(confirmed=True):
        if not rec.top or rec.label_source != "human":
            continue
        ranked = [c for c, _ in rec.top]
        case = 0 if ranked[0] == rec.label else 1 if ranked[1:2] == [rec.label] else 2
        rows.append((rec.top[0][1], rec.top[0][1], case))
        if len(rows) >= _REVIEWED_MAX:
            break
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _model_stats(request: Request) -> tuple[np.ndarray | None, dict | None]:
    model = state(request).model()
    if model is None:
        return None, None
    from semcat.calibration import STATS_TENSOR

    stats = (model.extra_tensors or {}).get(STATS_TENSOR)
    return (np.asarray(stats) if stats is not None and len(stats) else None), dict(model.calibration or {}) or None


def dashboard_page(request: Request) -> Response:
    """Counts per category and decision, confirmed vs not, and which calibration plots exist."""
    cat = state(request).catalog
    stats = cat.stats()
    model_stats, calibration = _model_stats(request)
    reviewed = reviewed_stats(cat)
    context = {
        "stats": stats,
        "calibration": calibration,
        "plots": {
            "model": [f"/dashboard/plots/model/{p}.png" for p in PLOTS] if model_stats is not None else [],
            "reviewed": [f"/dashboard/plots/reviewed/{p}.png" for p in PLOTS] if len(reviewed) else [],
        },
        "reviewed_n": len(reviewed),
        "max_count": max([*stats.get("categories", {}).values(), *stats.get("decisions", {}).values(), 1]),
    }
    return render(request, "dashboard.html", context)


def plot(request: Request, source: str, name: str) -> Response:
    """One calibration plot as PNG: from the model's held-out data or from confirmed catalog labels."""
    if source not in SOURCES or name not in PLOTS:
        raise HTTPException(404, f"no such plot: expected /dashboard/plots/{{{'|'.join(SOURCES)}}}/"
                                 f"{{{'|'.join(PLOTS)}}}.png")
    if source == "model":
        stats, calibration = _model_stats(request)
    else:
        stats, calibration = reviewed_stats(state(request).catalog), _model_stats(request)[1]
    if stats is None or not len(stats):
        raise HTTPException(404, "no data for this plot yet: calibrate the model (semcat calibrate) "
                                 "or confirm some labels in the review queue")
    with _plot_lock:
        png = _figure_png(name, stats, calibration or {})
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})


def _figure_png(name: str, stats: np.ndarray, cal: dict) -> bytes:
    from semcat import reports

    raw, top, case = stats[:, 0], stats[:, 1], stats[:, 2].astype(int)
    fig = {
        "score_histogram": lambda: reports.plot_score_histograms(top, case, cal),
        "score_distributions": lambda: reports.plot_score_distributions(top, case),
        "p_correct": lambda: reports.plot_p_correct(top, case),
        "reliability": lambda: reports.plot_reliability(raw, top, case == 0, ece_before=cal.get("ece_before"),
                                                        ece_after=cal.get("ece_after")),
    }[name]()
    return reports.figure_png(fig)
