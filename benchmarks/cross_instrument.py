"""Cross-instrument generalisation: leave one synthetic instrument out vs within one instrument.

Usage: ``python benchmarks/cross_instrument.py [--instruments 4] [--per-class 15] [--size 160]
[--draws 3] [--seed 0] [--backbone efficientnet_lite0]``. Each draw writes a new synthetic set
(``semcat synth --instruments``, seed SEED + draw: new instrument styles and new images; the last
instrument is the held-out style), extracts features through the default FeatureStore, then runs,
for each method of ``semcat.crossval.METHODS`` in the same run:

- leave one instrument out: train on the other instruments, test on it, pooled over instruments;
- within instrument: half of each class of each instrument to train, the other half to test.

Reports mean ± std over the draws of the pooled accuracy, and the held-out style's accuracy alone.
Issue 20's bar: leave-one-instrument-out pooled ≥ 0.90 with the default, default ≥ plain on both.
Results go to ``benchmarks/results/cross_instrument.md``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from semcat.crossval import METHODS, mean_std, run_methods
from semcat.synth.instruments import write_instrument_set

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import header, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instruments", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=15)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--out", type=Path, default=RESULTS / "cross_instrument.md")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "cross_instrument.png")
    a = ap.parse_args()
    methods = list(METHODS)
    acc: dict[tuple[str, str], list[float]] = {}
    for d in range(a.draws):
        with tempfile.TemporaryDirectory(prefix="semcat-xinst-") as tmp:
            write_instrument_set(tmp, instruments=a.instruments, per_class=a.per_class, size=a.size, seed=a.seed + d)
            held = f"inst{a.instruments - 1}"
            for protocol in ("groups", "within"):
                res = run_methods(tmp, "folder", methods, backbone=a.backbone, protocol=protocol, seed=d, progress=True)
                for name, r in res.items():
                    acc.setdefault((name, protocol), []).append(r["pooled"]["accuracy"])
                    if protocol == "groups":
                        acc.setdefault((name, "held"), []).append(r["per_group"][held]["accuracy"])
                        for g, m in r["per_group"].items():
                            acc.setdefault((name, g), []).append(m["accuracy"])
                    print(f"draw {d} {protocol:6s} {name:16s} {r['pooled']['accuracy']:.3f}", flush=True)
    lines = header("Cross-instrument generalisation (synthetic instruments)") + [
        f"- data: {a.instruments} instruments (the last a held-out style: BSE, dark gamma, low dose, "
        f"charging streaks) x 10 categories x {a.per_class} images, {a.size} px PNG; a new set per draw",
        "- semcat: the default head on the default features (centre crop, data bar cropped); plain: "
        "scikit-learn LogisticRegression (C=1) on features of the centre crop with the bar kept and no contrast stretch (view plain); "
        "semcat+groupstd: the default with features standardised per instrument (test instrument: its own batch)",
        "",
        "| method | leave one instrument out, pooled (%) | held-out style alone (%) | within instrument (%) |",
        "|---|---|---|---|",
    ]
    for name in methods:
        lines.append(f"| {name} | {mean_std(acc[(name, 'groups')])} | {mean_std(acc[(name, 'held')])} | "
                     f"{mean_std(acc[(name, 'within')])} |")
    groups = [f"inst{i}" for i in range(a.instruments)]
    lines += ["", f"Mean ± std over {a.draws} draws. Accuracy is pooled over every test image of the protocol.",
              "", "Per held-out instrument (leave one instrument out, %; the last is the held-out style):", "",
              "| method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    lines += [f"| {name} | " + " | ".join(mean_std(acc[(name, g)]) for g in groups) + " |" for name in methods]
    lines.append("")
    _plot(acc, methods, groups, a.plot)
    write_results(a.out, lines)
    return 0 if np.isfinite([v for vs in acc.values() for v in vs]).all() else 1


def _plot(acc: dict[tuple[str, str], list[float]], methods: list[str], groups: list[str], path: Path) -> None:
    """Bar chart of each method's accuracy on each held-out instrument (mean ± std over draws)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    w = 0.8 / len(methods)
    for k, name in enumerate(methods):
        vals = [acc[(name, g)] for g in groups]
        ax.bar(np.arange(len(groups)) + k * w, [100 * np.mean(v) for v in vals], w,
               yerr=[100 * np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals], label=name, capsize=2)
    ax.set_xticks(np.arange(len(groups)) + w * (len(methods) - 1) / 2,
                  [g + (" (held-out style)" if i == len(groups) - 1 else "") for i, g in enumerate(groups)])
    ax.set_ylabel("accuracy on the held-out instrument (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
