"""Calibration figures (the paper's Figs. 4-6, reliability, confusion) and the offline HTML report.

Every plot function takes arrays and returns a matplotlib ``Figure``; ``save_figures`` writes PNGs
atomically; ``render_report`` builds one self-contained HTML page (PNGs embedded as base64) from
what ``semcat calibrate`` stored in a model, so it opens without network or the original images.
"""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.isotonic import IsotonicRegression  # noqa: E402

from semcat import __version__  # noqa: E402
from semcat._io import atomic_write_bytes, atomic_write_text  # noqa: E402
from semcat.calibration import STATS_TENSOR  # noqa: E402
from semcat.metrics import confusion_figure  # noqa: E402

__all__ = [
    "calibration_figures",
    "figure_png",
    "plot_p_correct",
    "plot_reliability",
    "plot_score_distributions",
    "plot_score_histograms",
    "render_report",
    "save_figures",
    "threshold_summary",
    "write_report",
]

CASES = ("top-1 correct", "second correct", "neither")
CASE_COLOURS = ("#1fa7b8", "#f28e2b", "#d62728")  # the paper's cyan / orange / red
_BINS = np.linspace(0.0, 1.0, 21)


def _thresholds(ax: plt.Axes, calibration: Mapping[str, Any] | None) -> None:
    if not calibration:
        return
    for key, style in (("t_auto", "-"), ("t_suggest", "--")):
        t = calibration.get(key)
        if t is not None and t <= 1.0:
            ax.axvline(t, color="k", ls=style, lw=1, label=f"{key} = {t:.2f}")


def plot_score_histograms(top: np.ndarray, case: np.ndarray, calibration: Mapping[str, Any] | None = None) -> Figure:
    """Stacked histogram of the top-1 score for the three cases (the paper's Fig. 4)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist([top[case == i] for i in range(3)], bins=_BINS, stacked=True, color=CASE_COLOURS, label=list(CASES))
    _thresholds(ax, calibration)
    ax.set(xlabel="top-1 score", ylabel="images", title="Top-1 score by outcome", xlim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_score_distributions(top: np.ndarray, case: np.ndarray) -> Figure:
    """Normalised top-1 score distribution of each case, one panel each (the paper's Fig. 5)."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3), sharey=True)
    for i, ax in enumerate(axes):
        sel = top[case == i]
        weights = np.full(len(sel), 1.0 / max(len(sel), 1))
        ax.hist(sel, bins=_BINS, weights=weights, color=CASE_COLOURS[i])
        ax.set(title=f"{CASES[i]} (n={len(sel)})", xlabel="top-1 score", xlim=(0, 1))
    axes[0].set_ylabel("fraction of the case")
    fig.tight_layout()
    return fig


def _binned(top: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.clip(np.digitize(top, _BINS) - 1, 0, len(_BINS) - 2)
    centres, rates = [], []
    for b in range(len(_BINS) - 1):
        m = idx == b
        if m.any():
            centres.append((_BINS[b] + _BINS[b + 1]) / 2)
            rates.append(hit[m].mean())
    return np.array(centres), np.array(rates)


def plot_p_correct(top: np.ndarray, case: np.ndarray) -> Figure:
    """P(correct | top score) for the top-1 and the top-2 with their 0.5 crossovers (the paper's Fig. 6).

    Dots: binned frequencies; lines: isotonic (monotone) fits whose 0.5 crossing is marked.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    order = np.argsort(top)
    for ax, hit, what in ((axes[0], case == 0, "top-1"), (axes[1], case <= 1, "top-2")):
        x, p = _binned(top, hit.astype(float))
        ax.plot(x, p, "o", color="tab:green", ms=4)
        ax.plot(x, 1 - p, "o", color="tab:red", ms=4)
        fit = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(top, hit.astype(float))
        xs = top[order]
        ys = fit.predict(xs)
        ax.plot(xs, ys, color="tab:green", label=f"P({what} correct)")
        ax.plot(xs, 1 - ys, color="tab:red", label=f"P({what} wrong)")
        above = ys >= 0.5
        if above.any():
            cross = float(xs[above].min())
            ax.axvline(cross, color="k", ls=":", lw=1)
            ax.annotate(f"crossover {cross:.2f}", (cross, 0.5), xytext=(5, 5), textcoords="offset points", fontsize=8)
        ax.set(xlabel="top-1 score", title=f"{what} contains the truth", xlim=(0, 1), ylim=(-0.02, 1.02))
        ax.legend(fontsize=8, loc="center right")
    axes[0].set_ylabel("probability")
    fig.tight_layout()
    return fig


def plot_reliability(raw_top: np.ndarray, top: np.ndarray, correct: np.ndarray, *, n_bins: int = 15,
                     ece_before: float | None = None, ece_after: float | None = None) -> Figure:
    """Reliability diagram: accuracy per confidence bin before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(5, 5))
    edges = np.linspace(0, 1, n_bins + 1)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for conf, colour, name, ece in ((raw_top, "tab:gray", "before", ece_before), (top, "tab:blue", "after", ece_after)):
        idx = np.clip(np.digitize(conf, edges) - 1, 0, n_bins - 1)
        xs, ys = [], []
        for b in range(n_bins):
            m = idx == b
            if m.any():
                xs.append(conf[m].mean())
                ys.append(correct[m].mean())
        label = name if ece is None or math.isnan(ece) else f"{name} (ECE {ece:.3f})"
        ax.plot(xs, ys, "o-", color=colour, label=label, ms=4)
    ax.set(xlabel="confidence (top-1 score)", ylabel="accuracy", title="Reliability", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figures(stats: np.ndarray, calibration: Mapping[str, Any] | None = None) -> dict[str, Figure]:
    """All calibration figures from the held-out score table (columns raw top, calibrated top, case)."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[1] != 3 or len(stats) == 0:
        raise ValueError(f"score table must have shape (N>0, 3) [raw top, top, case]; got {stats.shape}.")
    raw, top, case = stats[:, 0], stats[:, 1], stats[:, 2].astype(int)
    cal = calibration or {}
    return {
        "score_histogram": plot_score_histograms(top, case, cal),
        "score_distributions": plot_score_distributions(top, case),
        "p_correct": plot_p_correct(top, case),
        "reliability": plot_reliability(raw, top, case == 0, n_bins=int((cal.get("params") or {}).get("n_bins", 15)),
                                        ece_before=cal.get("ece_before"), ece_after=cal.get("ece_after")),
    }


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def save_figures(figs: Mapping[str, Figure], out_dir: str | Path) -> list[Path]:
    """Write ``<name>.png`` per figure atomically; returns the paths."""
    out = Path(out_dir)
    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
        atomic_write_bytes(path, figure_png(fig))
        paths.append(path)
    return paths


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) <= 1.0 else f"{v:.3g}"
    return html.escape(str(v))


def _bands_table(bands: Mapping[str, Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{b.get('count', 0)}</td><td>{100 * b.get('share', 0):.1f}%</td>"
        f"<td>{_fmt(b.get('precision'))}{html.escape(_ci(b.get('precision_interval')))}</td>"
        f"<td>{_fmt(b.get('top2_accuracy'))}{html.escape(_ci(b.get('top2_interval')))}</td></tr>"
        for name, b in bands.items()
    )
    return ("<table><tr><th>band</th><th>images</th><th>share</th><th>top-1 precision [95% interval, %]</th>"
            f"<th>top-2 accuracy [95% interval, %]</th></tr>{rows}</table>")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _ci(interval: Sequence[float] | None) -> str:
    return "" if not interval else f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def threshold_summary(calibration: Mapping[str, Any]) -> list[str]:
    """Each threshold with the measured rate behind it, its 95% Clopper-Pearson interval and the
    number of images, plus one line when the data cannot support the target (and roughly how many
    labels would). Plain text: ``semcat calibrate`` prints it, the HTML report escapes it."""
    cal = calibration
    bands = cal.get("bands") or {}
    held = cal.get("heldout") or {}
    n = int(held.get("n") or cal.get("n_samples") or 0)
    target = float(cal.get("target_precision", 0.95))
    how = "lower end of its 95% interval" if cal.get("guarantee") else "observed precision"
    auto = bands.get("auto") or {}
    lines = []
    if cal["t_auto"] > 1.0:
        lines.append(f"t_auto never: no band of top scores reaches {_pct(target)} precision ({how}) "
                     f"on these {n} held-out images")
        needed = cal.get("labels_needed")
        kind = "labelled" if held.get("folds") else "held-out"
        if needed is not None:
            classes = max(len(cal.get("classes") or []), 1)
            more = max(1, -(-(needed - n) // classes))  # a band meeting the target but too small needs a few
            lines.append(f"the data cannot support the target: roughly {max(needed, n + more * classes)} {kind} "
                         f"images in all (~{more} more per class, at this model's accuracy) would")
        else:
            lines.append("the data cannot support the target: no band of 5+ images reaches it, so more labels "
                         "alone will not help; try another --view or backbone, or a lower --target-precision")
    else:
        lines.append(f"t_auto {cal['t_auto']:.3f}: auto-band precision {_pct(auto.get('precision'))}"
                     f"{_ci(auto.get('precision_interval'))} on {auto.get('count', 0)} images "
                     f"(target {_pct(target)}, {how})")
        lo = (auto.get("precision_interval") or [1.0])[0]
        if not cal.get("guarantee") and lo < target:
            lines.append(f"the interval's lower end {_pct(lo)} is below the target: too few images to be sure; "
                         "--guarantee chooses t_auto by it")
    sug = bands.get("suggest") or {}
    lines.append(f"t_suggest {cal['t_suggest']:.3f}: top-2 accuracy of the suggest band "
                 f"{_pct(sug.get('top2_accuracy'))}{_ci(sug.get('top2_interval'))} on {sug.get('count', 0)} images")
    ood = cal.get("ood") or {}
    if "threshold" in ood:
        flagged = ood.get("heldout_flagged")
        rate = "" if flagged is None else (f": flags {flagged} of {n} known held-out images, "
                                           f"{_pct(flagged / max(n, 1))}{_ci(ood.get('flagged_interval'))}")
        ref = (f" (reference: the largest fold's {ood['n_reference']} images)"
               if held.get("folds") and "n_reference" in ood and ood.get("method") != "knn_cosine" else "")
        lines.append(f"unknown threshold {ood['threshold']:.4f}{rate}{ref}")
    return lines


def _scalars(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten the numeric/text leaves of a metrics dict (lists and matrices are left out)."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            out += _scalars(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)) and not isinstance(v, bool):
            out.append((f"{prefix}{k}", v))
    return out


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}
.note{color:#666;font-size:90%}"""


def render_report(model: Any) -> str:
    """One self-contained HTML page about a model: metrics, confusion, calibration plots, bands.

    ``model`` is a ``SemcatModel`` (uses ``classes``, ``meta``, ``calibration``, ``extra_tensors``).
    An uncalibrated model gets a page saying to run ``semcat calibrate`` instead of the plots.
    """
    cal = dict(model.calibration or {})
    meta = dict(getattr(model, "meta", {}) or {})
    name = html.escape(str(meta.get("name") or getattr(model, "model_id", "model")))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>semcat report: {name}</title>"
             f"<style>{_CSS}</style></head><body><h1>semcat model report</h1>"]
    backbone = getattr(getattr(model, "backbone", None), "name", None)
    parts.append(f"<p>model <code>{name}</code>, backbone <code>{html.escape(str(backbone))}</code>, "
                 f"{len(model.classes)} classes: {html.escape(', '.join(model.classes))}</p>")
    metrics = meta.get("metrics")
    if isinstance(metrics, Mapping):
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in _scalars(metrics)[:40])
        parts.append(f"<h2>Training metrics</h2><table>{rows}</table>")
    if not cal or "t_auto" not in cal:
        parts.append("<h2>Calibration</h2><p>This model is not calibrated: decisions use the paper's thresholds "
                     "(auto ≥ 0.8, suggest ≥ 0.35) and there is no unknown test. Run "
                     "<code>semcat calibrate MODEL DATA_DIR</code>.</p>")
    else:
        held = cal.get("heldout") or {}
        parts.append("<h2>Held-out evaluation</h2><table>"
                     + "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(held.get(k))}</td></tr>"
                               for k in ("source", "n", "accuracy", "top2_accuracy"))
                     + "</table>")
        if held.get("confusion"):
            parts.append(_img(figure_png(confusion_figure(held["confusion"], model.classes)), "confusion matrix"))
        ood = cal.get("ood") or {}
        parts.append("<h2>Decision bands</h2>"
                     f"<p>temperature {_fmt(cal.get('temperature'))}; automatic label when top score ≥ "
                     f"<b>{'never' if cal['t_auto'] > 1 else _fmt(cal['t_auto'])}</b> (target precision {_fmt(cal.get('target_precision'))}); "
                     f"suggest the top two when ≥ <b>{_fmt(cal.get('t_suggest'))}</b>; manual below; "
                     f"unknown when the unknown score exceeds {_fmt(ood.get('threshold'))}. "
                     f"ECE {_fmt(cal.get('ece_before'))} → {_fmt(cal.get('ece_after'))} after temperature scaling.</p>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in threshold_summary(cal)) + "</ul>")
        parts.append(_bands_table(cal.get("bands") or {}))
        parts.append("<p class='note'>Shares and precision measured on the held-out images used for calibration.</p>")
        stats = (getattr(model, "extra_tensors", None) or {}).get(STATS_TENSOR)
        if stats is not None and len(stats):
            parts.append("<h2>Calibration plots</h2>")
            for key, fig in calibration_figures(np.asarray(stats), cal).items():
                parts.append(_img(figure_png(fig), key.replace("_", " ")))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='note'>generated by semcat {__version__} on {stamp}</p></body></html>")
    return "\n".join(parts)


def write_report(model: Any, out: str | Path) -> Path:
    """Write ``render_report(model)`` atomically to ``out``."""
    path = Path(out)
    atomic_write_text(path, render_report(model))
    return path
