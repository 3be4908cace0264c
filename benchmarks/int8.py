"""int8 vs fp32 features: parity (accuracy, calibration, unknown rates) and speed, in one run.

Usage: ``python benchmarks/int8.py [--per-class 60] [--test-per-class 80] [--unseen-per-style 160]
[--draws 3] [--speed-n 384] [--rounds 3] [--n-baseline 16] [--leave-out Nanowires] [--images DIR]``
(writes ``benchmarks/results/int8.md``).

Quantisation: ``semcat.quantize.quantize_backbone`` with its defaults (the int8 model
``--precision auto`` would use), built or re-used under ``$SEMCAT_HOME``.

Parity: synthetic SEM images (``semcat.synth``) of nine categories (``--leave-out`` is the tenth,
never trained on); train (``--per-class``) and val (60 %) sets are 8-bit TIFFs with instrument
data bars (Zeiss / FEI / white styles, vendor tags); the test set (``--test-per-class`` per
category and style) has three instrument styles: 8-bit TIFF with data bar, 16-bit TIFF without,
and JPEG with data bar; the unseen category has ``--unseen-per-style`` images in each style. For each
precision and each of ``--draws`` draws (its own train/val images and head seed; the test sets are
shared) a head is trained on that precision's training features and calibrated (temperature,
thresholds, unknown detector) on its val features, exactly as ``semcat train`` + ``semcat
calibrate`` do; then test accuracy, ECE, auto-band share and precision and the unknown rates
(known test images, the unseen category) are compared. The int8 − fp32 differences are averaged
over the draws, with a 95 % paired bootstrap interval over the test images (both precisions and
every draw see the same resampled images): parity is resolved only when each interval lies
within ±0.5 points. Also:
feature cosine int8 vs fp32 on every test image, and the fp32-trained model fed int8 features
(the mixed-precision case ``--precision`` warns about): its top-1 agreement with itself on fp32.

Speed: ``--speed-n`` synthetic 1024x768 8-bit TIFFs (``benchmarks/features.py``'s set), ``--rounds`` rounds in which
fp32 and int8 alternate (the machine is shared: ratios within a round are the figure to trust):
network-only (a preprocessed batch through the OpenVINO runtime) and end to end (files →
features, ``extract_features``, no cache). A "decode only" row runs the same pipeline with a
runtime that returns zeros: the most any network can get from decode, crop and resize here.
The paper-style baseline (timm Inception-v3, eager fp32 PyTorch, PIL) runs on a subset in the
same run (``benchmarks/features.py``'s ``baseline_rate``); the Keras baseline needs TensorFlow in
a separate Python and is not run here (see benchmarks/features.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from semcat.runtime import Runtime

from _results import header, write_results

OUT = Path(__file__).resolve().parent / "results" / "int8.md"
POOLED = "all styles"
STYLES = {  # name → write_dataset arguments
    "8-bit TIFF + data bar": dict(fmt="tif", databar=True),
    "16-bit TIFF, no bar": dict(fmt="tif", bit_depth=16),
    "JPEG + data bar": dict(fmt="jpg", databar=True),
}
EVAL = [*STYLES, POOLED]
PARITY_POINTS = 0.5  # percentage points
METRICS = ("accuracy", "ece", "auto_precision", "unknown_known", "unknown_unseen")
BOOTSTRAP = 1000


def write_sets(root: Path, per_class: int, test_per_class: int, unseen_per_style: int, leave_out: str,
               seed: int, draws: int) -> dict[str, Path]:
    """Folders of the train/val sets of each draw (``train0``, ``val0``, ...) and of each test style;
    draw 0 and the test styles keep the folders and seeds of the single-draw version, so its images
    are re-used and larger sets only add files."""
    from semcat.synth import write_dataset

    sets = {}
    for d in range(draws):
        s = seed + 100 * d
        sets[f"train{d}"] = ("set0" if d == 0 else f"train{d}", per_class, s, dict(fmt="tif", databar=True))
        sets[f"val{d}"] = ("set1" if d == 0 else f"val{d}", max(10, per_class * 3 // 5), s + 1,
                           dict(fmt="tif", databar=True))
    for i, (style, kw) in enumerate(STYLES.items()):
        sets[style] = (f"set{2 + i}", test_per_class, seed + 2 + i, kw)
    out = {}
    for name, (folder, n, s, kw) in sets.items():
        out[name] = root / folder
        write_dataset(out[name], per_class=n, seed=s, **kw)
        if name in STYLES:  # more images of the unseen category: its unknown rate is the coarsest figure
            write_dataset(out[name], per_class=max(n, unseen_per_style), seed=s, categories=[leave_out], **kw)
    return out


def labelled(folder: Path) -> tuple[list[str], list[str]]:
    from semcat._io import iter_image_files

    paths = [str(p) for p in iter_image_files([folder])]
    return paths, [Path(p).parent.name for p in paths]


def features(paths: list[str], spec) -> tuple[list[str], np.ndarray]:
    from semcat.featurespec import FeatureSpec

    res = FeatureSpec.resolve(spec).extract(paths)
    ok, X, errors = res.paths, res.features, res.errors
    assert not errors, errors[:3]
    return ok, X


def set_features(data: dict[str, tuple[list[str], list[str]]], spec) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each set's (features, labels) at ``spec``'s precision, plus the test styles pooled."""
    feats = {}
    for name, (paths, labels) in data.items():
        ok, X = features(paths, spec)
        assert ok == paths
        feats[name] = (X, np.array(labels))
    feats[POOLED] = tuple(np.concatenate([feats[s][i] for s in STYLES]) for i in (0, 1))
    return feats


def train_evaluate(f: dict[str, tuple[np.ndarray, np.ndarray]], spec, leave_out: str, draw: int = 0) -> dict:
    """A head trained and calibrated on draw ``draw``'s train/val sets of ``f`` without ``leave_out``
    (head seed ``draw``); its :func:`evaluate` figures on each test style (key: style) and the model (key: "model")."""
    tr, va = (f[f"{s}{draw}"][1] != leave_out for s in ("train", "val"))
    (Xtr, ytr), (Xva, yva) = f[f"train{draw}"], f[f"val{draw}"]
    model = build_model(spec, Xtr[tr], list(ytr[tr]), Xva[va], list(yva[va]), seed=draw)
    res: dict = {"model": model}
    for style in EVAL:
        X, y = f[style]
        res[style] = evaluate(model, X[y != leave_out], list(y[y != leave_out]), X[y == leave_out])
    return res


def parity_checks(res: dict, style: str = POOLED) -> dict[str, float]:
    """|int8 − fp32| in points of the figures the parity goal bounds (``res``: precision → :func:`train_evaluate`)."""
    return {k: abs(res["int8"][style][k] - res["fp32"][style][k]) for k in METRICS}


def paired_intervals(draws: list[dict], style: str = POOLED, n_boot: int = BOOTSTRAP,
                     seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Per parity metric: int8 − fp32 (points) averaged over ``draws`` (each: precision →
    :func:`train_evaluate`) and its 95 % bootstrap interval; each resample draws the known and the
    unseen test images with replacement and scores both precisions of every draw on them (paired)."""
    rng = np.random.default_rng(seed)
    n_known, n_unseen = len(draws[0]["fp32"][style]["idx"]), len(draws[0]["fp32"][style]["unseen"])

    def diff(known: np.ndarray | None, unseen: np.ndarray | None) -> dict[str, float]:
        d = [{k: figures(r["int8"][style], known, unseen)[k] - figures(r["fp32"][style], known, unseen)[k]
              for k in METRICS} for r in draws]
        return {k: float(np.mean([x[k] for x in d])) for k in METRICS}

    point = diff(None, None)
    boot = [diff(rng.integers(0, n_known, n_known), rng.integers(0, n_unseen, n_unseen)) for _ in range(n_boot)]
    return {k: (point[k], *(float(v) for v in np.nanpercentile([b[k] for b in boot], (2.5, 97.5)))) for k in METRICS}


def build_model(spec, Xtr, ytr, Xva, yva, seed: int = 0):
    from semcat.calibration import calibrate_model
    from semcat.head import SoftmaxHead
    from semcat.featurespec import FeatureSpec
    from semcat.model import SemcatModel

    head = SoftmaxHead(seed=seed, classes=sorted(set(ytr))).fit(Xtr, ytr, Xva, yva)
    model = SemcatModel(FeatureSpec.resolve(spec), head)
    calibrate_model(model, Xva, yva, Xtr, y_train=ytr)
    return model


def evaluate(model, X: np.ndarray, y: list[str], X_unseen: np.ndarray) -> dict:
    """Per image: probabilities, true class, decision band, whether each unseen image is unknown;
    plus :func:`figures` of them all."""
    from semcat.calibration import decide

    proba = model.predict_features(X)
    ood = model.ood_scores(X)
    ev = {"proba": proba, "idx": np.array([model.classes.index(c) for c in y]), "pred": proba.argmax(1),
          "dec": np.array([decide(p, model.calibration, o, classes=model.classes)[0] for p, o in zip(proba, ood)]),
          "unseen": model.ood_scores(X_unseen) > model.calibration["ood"]["threshold"]}
    return {**ev, **figures(ev)}


def figures(ev: dict, known: np.ndarray | None = None, unseen: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, ECE, auto-band share and precision, unknown rates (all %) of :func:`evaluate`'s
    per-image arrays, on the known and unseen test images indexed by ``known``/``unseen`` (None: all)."""
    from semcat.calibration import expected_calibration_error

    k = slice(None) if known is None else known
    proba, idx, pred, dec = ev["proba"][k], ev["idx"][k], ev["pred"][k], ev["dec"][k]
    unseen_unknown = ev["unseen"] if unseen is None else ev["unseen"][unseen]
    auto = dec == "auto"
    return {"accuracy": 100 * float((pred == idx).mean()), "ece": 100 * expected_calibration_error(proba, idx),
            "auto_share": 100 * float(auto.mean()),
            "auto_precision": 100 * float((pred[auto] == idx[auto]).mean()) if auto.any() else float("nan"),
            "unknown_known": 100 * float((dec == "unknown").mean()),
            "unknown_unseen": 100 * float(unseen_unknown.mean())}


class ZeroRuntime(Runtime):
    """Stands in for the network: the end-to-end rate with it is the decode/preprocess ceiling."""

    name = "zero"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), self.spec.feature_dim), np.float32)

    def _infer_gray(self, batch: np.ndarray) -> np.ndarray:  # as OpenVINO: no 3-channel input made in numpy
        return self._infer(batch)


def network_rate(rt, x: np.ndarray, reps: int = 1) -> float:
    rt(x[:8])
    t = time.perf_counter()
    for _ in range(reps):
        for i in range(0, len(x), 32):
            rt(x[i: i + 32])
    return reps * len(x) / (time.perf_counter() - t)


def e2e_rate(files: list[Path], spec, rt, cpu: list[float] | None = None) -> float:
    """Images/s of files → features; appends CPU ms per image (this process, all threads) to ``cpu``."""
    from semcat.features import extract_features

    t, c = time.perf_counter(), time.process_time()
    res = extract_features(files, spec, runtime=rt, store=None, progress=False, batch_size=32)
    assert len(res.paths) == len(files), res.errors[:3]
    if cpu is not None:
        cpu.append(1e3 * (time.process_time() - c) / len(files))
    return len(files) / (time.perf_counter() - t)


def speed(files: list[Path], fp32, int8, rounds: int, n_baseline: int) -> dict:
    """Network-only and end-to-end images/s (and end-to-end CPU ms per image) of fp32 and int8,
    alternating within each round, plus the decode-only ceiling and the paper-style baseline."""
    from semcat.features import preprocess
    from semcat.images import read_image
    from semcat.runtime import OpenVINORuntime

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from features import baseline_rate  # noqa: E402  (benchmarks/features.py)

    x = np.concatenate([preprocess(read_image(p)[0], fp32, view="center") for p in files[:256]])
    rts = {"fp32": OpenVINORuntime(fp32), "int8": OpenVINORuntime(int8)}
    zero = ZeroRuntime(fp32)
    net: dict[str, list[float]] = {"fp32": [], "int8": []}
    e2e: dict[str, list[float]] = {"fp32": [], "int8": [], "decode only": []}
    cpu: dict[str, list[float]] = {k: [] for k in e2e}
    for _ in range(rounds):
        for prec in ("fp32", "int8"):
            net[prec].append(network_rate(rts[prec], x))
        for prec in ("fp32", "int8"):
            e2e[prec].append(e2e_rate(files, fp32 if prec == "fp32" else int8, rts[prec], cpu[prec]))
        e2e["decode only"].append(e2e_rate(files, fp32, zero, cpu["decode only"]))
    return {"net": net, "e2e": e2e, "cpu": cpu, "base": baseline_rate(files[:n_baseline])}


def speed_lines(sp: dict, n_files: int, rounds: int, n_baseline: int) -> list[str]:
    """The speed section's table and notes (markdown lines) from :func:`speed`'s result."""
    net, e2e, base = sp["net"], sp["e2e"], sp["base"]
    med_net = {k: float(np.median(v)) for k, v in net.items()}
    med = {k: float(np.median(v)) for k, v in e2e.items()}
    ratio_net = float(np.median(np.array(net["int8"]) / np.array(net["fp32"])))
    ratio_e2e = float(np.median(np.array(e2e["int8"]) / np.array(e2e["fp32"])))
    cpu_ms = {k: float(np.median(v)) for k, v in sp["cpu"].items()}
    cores = os.cpu_count() or 1
    return [
        f"{n_files} synthetic 1024x768 8-bit TIFFs; efficientnet_lite0 on OpenVINO, "
        f"{rounds} rounds alternating fp32 and int8 (the rounds column: images/s of each).", "",
        "| setup | images/s (median) | rounds | int8 / fp32 (median of per-round ratios) |", "|---|---:|---|---:|",
        f"| network only, fp32 | {med_net['fp32']:.0f} | {', '.join(f'{v:.0f}' for v in net['fp32'])} | |",
        f"| network only, int8 | {med_net['int8']:.0f} | {', '.join(f'{v:.0f}' for v in net['int8'])} | {ratio_net:.2f}x |",
        f"| end to end, fp32 | {med['fp32']:.0f} | {', '.join(f'{v:.0f}' for v in e2e['fp32'])} | |",
        f"| end to end, int8 | {med['int8']:.0f} | {', '.join(f'{v:.0f}' for v in e2e['int8'])} | {ratio_e2e:.2f}x |",
        f"| decode + crop + resize only (network returns zeros) | {med['decode only']:.0f} | "
        f"{', '.join(f'{v:.0f}' for v in e2e['decode only'])} | |",
        f"| paper setup: inception_v3 299 px eager fp32 PyTorch, PIL ({n_baseline} images, once) | {base:.1f} | | |",
        "",
        "CPU time per image end to end (this process, all threads, median of the rounds; less sensitive to other "
        f"jobs than wall time): fp32 {cpu_ms['fp32']:.1f} ms, int8 {cpu_ms['int8']:.1f} ms "
        f"({cpu_ms['fp32'] / cpu_ms['int8']:.2f}x less), decode + crop + resize alone {cpu_ms['decode only']:.1f} ms. "
        f"On {cores} otherwise idle cores that work allows at most {1e3 * cores / cpu_ms['int8']:.0f} img/s int8 and "
        f"{1e3 * cores / cpu_ms['fp32']:.0f} img/s fp32 (OpenVINO's waiting threads spin a while, which counts as CPU time).",
        "",
        f"int8 end to end vs the paper setup: {med['int8'] / base:.1f}x; fp32: {med['fp32'] / base:.1f}x. The Keras "
        "Inception-v3 baseline needs TensorFlow in a separate Python and was not run here (benchmarks/features.py "
        "runs it where one is given).",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=60, help="training images per category")
    ap.add_argument("--test-per-class", type=int, default=80, help="test images per category and style")
    ap.add_argument("--unseen-per-style", type=int, default=160, help="test images of the unseen category per style")
    ap.add_argument("--draws", type=int, default=3, help="train/val draws (and head seeds) per precision")
    ap.add_argument("--speed-n", type=int, default=384, help="1024x768 TIFFs for the speed runs")
    ap.add_argument("--rounds", type=int, default=3, help="alternating fp32/int8 speed rounds")
    ap.add_argument("--n-baseline", type=int, default=16, help="images for the Inception-v3 baseline")
    ap.add_argument("--leave-out", default="Nanowires", help="category never trained on (unknown rate)")
    ap.add_argument("--seed", type=int, default=2121)
    ap.add_argument("--images", type=Path, help="keep the generated images here and reuse them")
    args = ap.parse_args()

    from semcat import CATEGORIES
    from semcat.backbones import get_backbone

    if args.leave_out not in CATEGORIES:
        ap.error(f"--leave-out must be one of {', '.join(CATEGORIES)}")
    if args.draws < 1:
        ap.error("--draws must be >= 1")
    from semcat.quantize import MEDIAN_COSINE, MIN_COSINE, quantize_backbone

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from features import make_images  # noqa: E402  (benchmarks/features.py)

    fp32 = get_backbone("efficientnet_lite0")
    int8 = replace(fp32, precision="int8")
    specs = {"fp32": fp32, "int8": int8}
    t = time.perf_counter()
    q = quantize_backbone(fp32)
    q_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        root = args.images or Path(tmp)
        sets = write_sets(root / "parity", args.per_class, args.test_per_class, args.unseen_per_style, args.leave_out,
                          args.seed, args.draws)
        data = {name: labelled(folder) for name, folder in sets.items()}
        feats = {prec: set_features(data, spec) for prec, spec in specs.items()}
        draws = [{prec: train_evaluate(feats[prec], spec, args.leave_out, d) for prec, spec in specs.items()}
                 for d in range(args.draws)]
        # the fp32-trained model fed int8 features: what mixing precisions does
        test = {style: (X[y != args.leave_out], list(y[y != args.leave_out]), X[y == args.leave_out])
                for style, (X, y) in ((s, feats["int8"][s]) for s in EVAL)}
        mixed = [{style: evaluate(r["fp32"]["model"], *test[style]) for style in EVAL} for r in draws]
        a, b = feats["fp32"][POOLED][0], feats["int8"][POOLED][0]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

        sp = speed(make_images(root / "speed", args.speed_n), fp32, int8, args.rounds, args.n_baseline)
        load = os.getloadavg()

    def mean(get) -> float:  # a figure averaged over the draws
        return float(np.mean([get(d) for d in range(args.draws)]))

    def row(name: str, key: str, fmt: str = "{:.1f}") -> str:
        cells = []
        for style in EVAL:
            f32, i8 = (mean(lambda d: draws[d][p][style][key]) for p in ("fp32", "int8"))
            mx = mean(lambda d: mixed[d][style][key])
            cells.append(f"{fmt.format(f32)} / {fmt.format(i8)} ({i8 - f32:+.2f}) / {fmt.format(mx)}")
        return f"| {name} | " + " | ".join(cells) + " |"

    agree_i8 = {s: 100 * mean(lambda d: float((draws[d]["int8"][s]["pred"] == draws[d]["fp32"][s]["pred"]).mean())) for s in EVAL}
    agree_mx = {s: 100 * mean(lambda d: float((mixed[d][s]["pred"] == draws[d]["fp32"][s]["pred"]).mean())) for s in EVAL}
    dec_mx = {s: 100 * mean(lambda d: float((mixed[d][s]["dec"] == draws[d]["fp32"][s]["dec"]).mean())) for s in EVAL}
    ci = paired_intervals(draws)
    worst = {k: max(parity_checks(r, st)[k] for r in draws for st in STYLES) for k in METRICS}
    met = all(abs(v[0]) <= PARITY_POINTS for v in ci.values())
    resolved = all(-PARITY_POINTS <= v[1] and v[2] <= PARITY_POINTS for v in ci.values())
    verdict = (f"met and resolved: every 95 % interval lies within ±{PARITY_POINTS} points" if resolved else
               f"met on the mean differences (all within ±{PARITY_POINTS} points), not resolved: not every 95 % "
               "interval lies within" if met else f"NOT met: a mean difference exceeds ±{PARITY_POINTS} points")
    n_test = {s: int(np.sum(feats["fp32"][s][1] != args.leave_out)) for s in EVAL}
    n_unseen = {s: int(np.sum(feats["fp32"][s][1] == args.leave_out)) for s in EVAL}
    info = q.info
    lines = header("int8 features (NNCF) vs fp32: parity and speed") + [
        f"- contention: shared machine, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end; "
        "absolute rates are low and noisy, the fp32/int8 ratios within a round are the figures to trust",
        f"- int8 model: {info['recipe']}, calibrated on {info['calibration']['synthetic']} synthetic"
        f" + {info['calibration']['user']} user images, NNCF {info['nncf']}, OpenVINO {info['openvino'].split('-')[0]}; "
        f"{'built' if q.built else 're-used'} in {q_s:.0f} s",
        "", "## Parity", "",
        f"Nine categories trained ({args.per_class} images each, val {max(10, args.per_class * 3 // 5)}; {args.draws} draws, "
        f"each with its own train/val images and head seed), `{args.leave_out}` left out as the unseen category; test, "
        f"shared by the draws: {args.test_per_class} images per known category and style, "
        f"{max(args.test_per_class, args.unseen_per_style)} of `{args.leave_out}` per style "
        f"({', '.join(f'{s}: {n_test[s]} known, {n_unseen[s]} unseen' for s in EVAL)}).",
        "",
        f"Feature cosine int8 vs fp32 over all {len(cos)} test images: min {cos.min():.4f}, 1st percentile "
        f"{np.quantile(cos, 0.01):.4f}, median {np.median(cos):.4f} (the int8 model's own held-out check: "
        f"min {info['cosine_min']:.4f}, median {info['cosine_median']:.4f}; `--precision auto` requires "
        f"≥ {MIN_COSINE} / ≥ {MEDIAN_COSINE}).",
        "",
        f"Each cell: fp32 / int8 (difference, points) / fp32-trained model fed int8 features; means over the {args.draws} draws. All in %.",
        "", "| metric | " + " | ".join(EVAL) + " |", "|---|" + "---:|" * len(EVAL),
        row("accuracy", "accuracy"), row("ECE", "ece", "{:.2f}"), row("auto band share", "auto_share"),
        row("auto band precision", "auto_precision"), row("unknown, known test images", "unknown_known"),
        row(f"unknown, unseen `{args.leave_out}`", "unknown_unseen"),
        "| top-1 agreement with the fp32 model: int8 model / fp32 model on int8 features | "
        + " | ".join(f"{agree_i8[s]:.1f} / {agree_mx[s]:.1f}" for s in EVAL) + " |",
        "| same decision band, fp32 model on int8 vs fp32 features | " + " | ".join(f"{dec_mx[s]:.1f}" for s in EVAL) + " |",
        "",
        f"int8 − fp32 on all {n_test[POOLED]} known and {n_unseen[POOLED]} unseen test images (points, mean of the "
        f"{args.draws} draws, [95 % paired bootstrap interval over the test images, {BOOTSTRAP} resamples]; "
        f"parity = within ±{PARITY_POINTS}):", "",
        "| figure | int8 − fp32 | 95 % interval | per draw |", "|---|---:|---|---|",
        *(f"| {k} | {v[0]:+.2f} | [{v[1]:+.2f}, {v[2]:+.2f}] | "
          + ", ".join(f"{r['int8'][POOLED][k] - r['fp32'][POOLED][k]:+.2f}" for r in draws) + " |" for k, v in ci.items()),
        "",
        f"**Parity {verdict}.** Largest |difference| in a single style and draw (fewer images, "
        "so coarser): " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()) + ".",
        "", "## Speed", "", *speed_lines(sp, args.speed_n, args.rounds, args.n_baseline),
        "Goal (issue 21): int8 end to end ≥ 2.5x fp32 on a VNNI/AMX CPU, ≥ 1.3x on AVX2-only, with parity.", "",
    ]
    write_results(OUT, lines)


if __name__ == "__main__":
    main()
