"""Cross-instrument generalisation: leave one synthetic instrument out vs within one instrument.

Usage: ``python benchmarks/cross_instrument.py [--instruments 4] [--per-class 15] [--size 160]
[--draws 3] [--seed 0] [--backbone efficientnet_lite0] [--methods a,b] [--jobs 1] [--data DIR] [--out NAME]``.
Each draw writes a new synthetic set (``semcat synth --instruments``, seed SEED + draw: new
instrument styles and new images; the last instrument is the held-out style; under ``--data`` it
is kept and reused), extracts features through the default FeatureStore (each view once per
draw), then runs, for each method of ``semcat.crossval.METHODS`` (all by default) in the same run:

- leave one instrument out: train on the other instruments, test on it, pooled over instruments;
- within instrument: half of each class of each instrument to train, the other half to test.

Methods with test-time adaptation (``Method.adapt``, ``semcat classify --adapt``) also run
leave one instrument out with the held-out instrument classified in batches of 2 classes and of 1
class (an imbalanced folder: the failure mode of batch statistics); other methods' predictions do
not depend on the batch, so those columns say so.

Reports mean ± std over the draws of the pooled accuracy, and the held-out style's accuracy alone.
Issue 20's bar: leave-one-instrument-out pooled ≥ 0.90 with the default, default ≥ plain on both.
Results go to ``benchmarks/results/cross_instrument.md`` (``--out NAME``: another name there) and
its bar chart to ``docs/img/<name>.png``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from semcat.crossval import METHODS, PROTOCOLS, mean_std, run_methods
from semcat.featurespec import FeatureSpec
from semcat.synth.instruments import write_instrument_set

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _clean_candidates  # noqa: E402,F401  (registers the semcat+x-* methods)
from _results import header, write_results  # noqa: E402

FINETUNE_NOTE = (
    "- fine-tuning (`semcat.finetune`): +ft = the backbone's last inverted-residual unit, conv_head and its BN affine "
    "parameters trained (BN statistics and everything before frozen; the activations entering the last 2 units "
    "computed once per image and view through OpenVINO) with a linear head, after a linear probe, Adam (lr 3e-4 tail, "
    "1e-3 head, batch 32), one random view of each training image per epoch out of the clean crop and 3 SEM-augmented "
    "views (random resized crop 35-100% of the area, flips, 90° rotations, contrast inverted with p 0.25, gamma, "
    "brightness/contrast, blur, shot noise, scan-line noise), early stop on 20% of the training images (patience 3), "
    "a budget of 20 CPU seconds of joint training per fit; then the default head fitted on the tuned tail's features "
    "of the clean crops; +ft2 = the last 2 units; +ft-60s / +ft-120s = 1 unit, 60 / 120 CPU seconds; "
    "semcat+scale-mix+aug-fliprot+ft-60s = 1 unit, 60 CPU seconds, the clean view the scaled crop (`--scale auto`) "
    "and 3 more fixed views cached and drawn in training (today's crop, the scaled crop's mirror image and 90° "
    "rotation), whose tuned features are also the default head's extra training rows (the scale-mixed head)")
AUG_NOTE = (
    "- training views on scale-mix+aug-fliprot (1 feature per image at classify): +aug-d4 = the head also trained "
    "on the (scaled) crop's 7 other rotations and mirror images, the whole dihedral group (`--augment "
    "noscale,dihedral`); +gamma = also gamma 1.8 and 0.55 (dark, bright); +invert = also the contrast inverted; "
    "+noise = also Gaussian noise 0.08; +sem = d4 with gamma, invert and noise; +cv = the L2 penalty chosen by 5-fold "
    "CV whose training folds hold their images' augmented copies (not the head on the images alone); -wd0.1 = the "
    "penalty fixed at 0.1 instead of chosen by CV")
CLEAN_NOTE = (
    "- clean-up candidates (`benchmarks/_clean_candidates.py`, each on the contrast-stretched 224 px centre crop): "
    "+x-median3 / +x-median5 = a 3x3 / 5x5 median; +x-destripe = each row's median subtracted; +x-rdestripe = each "
    "row's offset from the running median of 9 row medians; +x-flatten = the background (a Gaussian of 1/8 the side) "
    "subtracted, contrast stretched again; +x-nlm = non-local means at twice the estimated noise; +x-gauss-adapt = a "
    "Gaussian blur growing with the estimated noise; +x-gammanorm = the gamma mapping the median to 0.5; "
    "+x-bilateral = a bilateral filter; a+b = a, then b (+x-flatten+median5 is `clean` as first written: a full-size "
    "blur and an 8-bit median)")
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
    ap.add_argument("--size-spread", type=float, default=1.0,
                    help="each shot's structures scaled by a factor over this range (4: 1/2-2x): categories spanning scales")
    ap.add_argument("--out", type=Path, default=Path("cross_instrument.md"),
                    help="results file: a bare name is written under benchmarks/results/")
    ap.add_argument("--plot", type=Path, default=None, help="bar chart (default: docs/img/<out name>.png)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated names of semcat.crossval.METHODS")
    ap.add_argument("--jobs", type=int, default=1, help="(draw, protocol) pairs run in parallel processes")
    ap.add_argument("--data", type=Path, default=None, help="keep each draw's images in DATA/d<draw> (default: a temp folder)")
    ap.add_argument("--only", action="append", default=[], metavar="DRAW:PROTOCOL",
                    help="run only these (draw, protocol) pairs, e.g. 1:groups (to fill a gap in a stopped run's log)")
    ap.add_argument("--note", action="append", default=[], help="a line for the results file's notes (repeatable)")
    ap.add_argument("--from-log", type=Path, nargs="+", default=None,
                    help="build the tables from the RESULT lines of a run's log (e.g. a run stopped by a deadline)")
    a = ap.parse_args()
    requested = [m.strip() for m in a.methods.split(",") if m.strip()]
    garbled = 0
    if a.from_log:
        records = []
        for line in (x for log in a.from_log for x in log.read_text().splitlines()):
            if line.startswith("RESULT "):
                try:
                    records.append(json.loads(line.split(" ", 1)[1]))
                except ValueError:  # a line cut by another process writing to the same log
                    garbled += 1
    else:
        with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            jobs = [(a, requested, d, p) for d in range(a.draws) for p in PROTOCOLS
                    if not a.only or f"{d}:{p}" in a.only]
            records = [r for part in pool.map(_draw, jobs) for r in part]
    records = list({(r["draw"], r["protocol"], r["method"]): r for r in reversed(records)}.values())  # first of repeats
    acc = _accuracies(records, a.instruments)
    methods = [m for m in requested if (m, "groups") in acc or (m, "within") in acc]

    def cell(name: str, what: str) -> str:
        v = acc.get((name, what), [])
        return "–" if not v else mean_std(v) + ("" if len(v) >= a.draws else f" ({len(v)})")
    lines = header("Cross-instrument generalisation (synthetic instruments)", argv=_run_args(sys.argv[1:])) + [
        *([f"- tables: built with `--from-log` from the RESULT lines of {len(a.from_log)} run log(s): "
           f"{len(records)} of {2 * a.draws * len(requested)} (draw, protocol, method) results, {garbled} garbled "
           "line(s) skipped"] if a.from_log else []),
        *(f"- note: {n}" for n in a.note),
        f"- data: {a.instruments} instruments (the last a held-out style: BSE, dark gamma, low dose, "
        f"charging streaks, higher magnification) x 10 categories x {a.per_class} images, {a.size} px TIFF with the pixel "
        "size in the vendor tag (each category's structures one physical size: pixel size = its reference field / "
        "(pixels x zoom)"
        + (f"; then every shot's structures scaled by a factor drawn log-uniformly over a {a.size_spread:g}x range "
           "around 1, the pixel size unchanged: categories spanning scales" if a.size_spread > 1 else "")
        + "); a new set per draw",
        "- methods (`semcat.crossval.METHODS`): semcat = the default (softmax head on the `clean` view: the centre "
        "crop, data bar cropped, its background flattened and a 5x5 median; L2 penalty chosen by 5-fold CV as `semcat "
        "train` does, each feature's variance shrunk halfway to the median variance); semcat@center = the same head on "
        "the plain centre crop (the default before the `clean` view; every other method reads that crop unless "
        "named); -fullstd = the same head with every feature standardised to unit variance (the default before "
        "issue 20's shrinkage); plain = scikit-learn LogisticRegression (C=1) "
        "on the centre crop with the bar kept and no contrast stretch; +groupstd = features standardised per "
        "instrument (the test instrument by its own batch); -wd1e-3 = the fixed penalty 1e-3; logreg@center = "
        "LogisticRegression on the default features; -nostd = the head on unstandardised features; +clahe / +histeq "
        "= the centre crop equalised (CLAHE 8x8 clip 2 / global) before the CNN; +aug-all = the head also trained on "
        "features of 6 augmented views of each training image (flip, rot90, gamma 1.8 and 0.55, noise 0.08, blur 1.5 px); "
        "+tta4 = features of the 4 rotations averaged, in training and test; +adapt-* = the default head, and "
        "the classified batch mapped onto the training statistics (`semcat classify --adapt`): group = its mean and "
        "std, balanced = the mean of its predicted classes' means (2 iterations), scale = its spread around the "
        "training mean only, classwise = a shift, each predicted class's mean against that class's training mean; "
        "+scale = scale normalisation with the pixel size (`--scale auto`: the centre crop over a fixed physical "
        "width, input pixel size = the median of the draw's images, crop side clamped to 1/3-1.5x the image); "
        "+scale/test-nopx = trained as +scale, the classified images without a pixel size (today's crop); "
        "+ms3 = multi-scale crops (the crop, its central 71% and 50%, features averaged): what images without a "
        "pixel size could use; +tta2 = features of the crop and its mirror image averaged (2 features per image); "
        "+aug-flip = the head also trained on the mirrored crop's features (1 per image at classify); "
        "+scale-mix = scale-mixed training: the head trained on the scaled crops and today's crops of the same "
        "images, each file classified scaled when it has a pixel size (`--scale auto --augment noscale`); "
        "+scale-jitter = the head also trained on crops at 1/√2 and √2 times the physical target "
        "(`--augment scalejitter`); +aug-fliprot = the head also trained on the (scaled) crop's mirror image and "
        "90° rotation (`--augment flip,rot90`)",
        *([FINETUNE_NOTE] if any(METHODS[m].finetune for m in requested) else []),
        *([AUG_NOTE] if any("+aug-d4" in m or "fliprot+" in m for m in requested) else []),
        *([CLEAN_NOTE] if any("+x-" in m for m in requested) else []),
        "",
        ("| method | leave one instrument out, pooled (%) | held-out style alone (%) | within instrument (%) "
         "| left out, batches of 2 classes (%) | left out, batches of 1 class (%) |"),
        "|---|---|---|---|---|---|",
    ]
    for name in methods:
        same = "not measured" if METHODS[name].group_standardize else "as pooled"
        imbalanced = [cell(name, p) if METHODS[name].adapt else same for p in ("groups-2cls", "groups-1cls")]
        lines.append(f"| {name} | {cell(name, 'groups')} | {cell(name, 'held')} | {cell(name, 'within')} | "
                     + " | ".join(imbalanced) + " |")
    groups = [f"inst{i}" for i in range(a.instruments)]
    lines += ["", f"Mean ± std over {a.draws} draws (a cell over fewer says how many in brackets; – none). "
              "Accuracy is pooled over every test image of the protocol.",
              "", "Per held-out instrument (leave one instrument out, %; the last is the held-out style):", "",
              "| method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    lines += [f"| {name} | " + " | ".join(cell(name, g) for g in groups) + " |" for name in methods]
    lines += _finetune_cost(records, methods)
    lines.append("")
    out = a.out if a.out.parent != Path() else RESULTS / a.out
    _plot(acc, [m for m in methods if (m, "groups") in acc], groups, a.plot or ROOT / "docs" / "img" / f"{out.stem}.png")
    write_results(out, lines)
    return 0 if np.isfinite([v for vs in acc.values() for v in vs]).all() else 1


def _run_args(argv: list[str]) -> list[str]:
    """The run's arguments for the header, without the ones that only say where files go."""
    out, skip = [], False
    for arg in argv:
        if arg in ("--from-log", "--plot", "--data", "--note"):
            skip = True
            continue
        if skip and not arg.startswith("--"):
            continue
        skip = False
        out.append(arg)
    return out


def _draw(job: tuple[argparse.Namespace, list[str], int, str]) -> list[dict]:
    """One draw and protocol: its synthetic set, then every method; one record (also logged) per method."""
    a, methods, d, protocol = job
    spec = FeatureSpec.resolve(a.backbone)
    out = []
    with tempfile.TemporaryDirectory(prefix="semcat-xinst-") as tmp:
        root = a.data / f"d{d}" if a.data else Path(tmp)
        write_instrument_set(root, instruments=a.instruments, per_class=a.per_class, size=a.size, seed=a.seed + d,
                             size_spread=a.size_spread)
        for name in methods:  # one at a time, so the log holds each result as it comes
            if protocol.startswith("groups-") and not METHODS[name].adapt:
                continue  # predictions that do not depend on the batch: the same as "groups"
            with _finetune_log() as fits:
                r = run_methods(root, "folder", [name], spec=spec, protocol=protocol, seed=d)[name]
            out.append({"draw": d, "protocol": protocol, "method": name, "pooled": r["pooled"]["accuracy"],
                        "per_group": {g: m["accuracy"] for g, m in r["per_group"].items()},
                        **({"finetune": fits} if fits else {})})
            print("RESULT " + json.dumps(out[-1]), flush=True)
    return out


@contextmanager
def _finetune_log() -> Iterator[list[dict]]:
    """Each fine-tuning's record (:mod:`semcat.finetune` logs one per fit: epochs, CPU seconds, stop)."""
    fits: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, "finetune"):
                fits.append(record.finetune)

    logger, handler = logging.getLogger("semcat.finetune"), Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield fits
    finally:
        logger.removeHandler(handler)


def _finetune_cost(records: list[dict], methods: list[str]) -> list[str]:
    """A table of what each fine-tuning method's fits cost, per protocol (one fit per held-out group or per group)."""
    rows = []
    for m in methods:
        for protocol in ("groups", "within"):
            fs = [f for r in records if r["method"] == m and r["protocol"] == protocol for f in r.get("finetune", [])]
            if not fs:
                continue
            cpu, epochs = [f["cpu_seconds"] for f in fs], [f["epochs"] for f in fs]
            stops = "/".join(str(sum(f["stopped"] == s for f in fs)) for s in ("budget", "early stop", "max epochs"))
            rows.append(f"| {m} | {'leave one out' if protocol == 'groups' else 'within'} | {len(fs)} "
                        f"| {np.mean([f['train_images'] for f in fs]):.0f} | {fs[0]['blocks']} | {fs[0]['seconds']:g} "
                        f"| {np.mean(cpu):.1f} / {max(cpu):.1f} | {np.mean([f['total_cpu_seconds'] for f in fs]):.1f} "
                        f"| {np.mean([f['wall_seconds'] for f in fs]):.0f} | {np.mean(epochs):.1f} ({min(epochs)}-{max(epochs)}) "
                        f"| {stops} |")
    if not rows:
        return []
    return ["", "Fine-tuning per fit (CPU seconds of the process, all threads: the budget counts them, so other jobs "
            "on a shared machine do not change what a fit trains; wall seconds do depend on them):", "",
            "| method | protocol | fits | labelled images per fit (a fifth held out for early stopping) | blocks | budget (CPU s) | joint training (CPU s, mean / max) "
            "| whole fit (CPU s, mean) | whole fit (wall s, mean) | epochs (mean, min-max) "
            "| stopped by budget / early stop / max epochs |",
            "|---|---|---|---|---|---|---|---|---|---|---|", *rows]


def _accuracies(records: list[dict], instruments: int) -> dict[tuple[str, str], list[float]]:
    """(method, protocol | "held" | group) -> accuracies over draws, in draw order."""
    acc: dict[tuple[str, str], list[float]] = {}
    for r in sorted(records, key=lambda r: r["draw"]):
        acc.setdefault((r["method"], r["protocol"]), []).append(r["pooled"])
        if r["protocol"] == "groups":  # the per-group columns are of balanced batches
            acc.setdefault((r["method"], "held"), []).append(r["per_group"][f"inst{instruments - 1}"])
            for g, v in r["per_group"].items():
                acc.setdefault((r["method"], g), []).append(v)
    return acc


def _plot(acc: dict[tuple[str, str], list[float]], methods: list[str], groups: list[str], path: Path) -> None:
    """Bar chart of each method's accuracy on each held-out instrument (mean ± std over draws)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    w = 0.8 / len(methods)
    for k, name in enumerate(methods):
        vals = [acc[(name, g)] for g in groups]
        ax.bar(np.arange(len(groups)) + k * w, [100 * np.mean(v) for v in vals], w,
               yerr=[100 * np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals], label=name, capsize=2,
               color=plt.get_cmap("tab20")(k % 20))
    ax.set_xticks(np.arange(len(groups)) + w * (len(methods) - 1) / 2,
                  [g + (" (held-out style)" if i == len(groups) - 1 else "") for i, g in enumerate(groups)])
    ax.set_ylabel("accuracy on the held-out instrument (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
