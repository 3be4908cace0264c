"""int8 vs fp32 features: parity (accuracy, calibration, unknown rates) and speed, in one run.

Usage: ``python benchmarks/int8.py [--per-class 60] [--test-per-class 40] [--speed-n 384]
[--rounds 3] [--n-baseline 16] [--leave-out Nanowires] [--images DIR]`` (writes ``benchmarks/results/int8.md``).

Quantisation: ``semcat.quantize.quantize_backbone`` with its defaults (the int8 model
``--precision auto`` would use), built or re-used under ``$SEMCAT_HOME``.

Parity: synthetic SEM images (``semcat.synth``) of nine categories (``--leave-out`` is the tenth,
never trained on); train (``--per-class``) and val (60 %) sets are 8-bit TIFFs with instrument
data bars (Zeiss / FEI / white styles, vendor tags); the test set (``--test-per-class`` per
category and style) has three instrument styles: 8-bit TIFF with data bar, 16-bit TIFF without,
and JPEG with data bar. For each precision a head is trained on that precision's training
features and calibrated (temperature, thresholds, unknown detector) on its val features, exactly
as ``semcat train`` + ``semcat calibrate`` do; then test accuracy, ECE, auto-band share and
precision and the unknown rates (known test images, the unseen category) are compared. Also:
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


def write_sets(root: Path, per_class: int, test_per_class: int, seed: int) -> dict[str, Path]:
    from semcat.synth import write_dataset

    sets = {"train": (per_class, seed, dict(fmt="tif", databar=True)),
            "val": (max(10, per_class * 3 // 5), seed + 1, dict(fmt="tif", databar=True))}
    for i, (style, kw) in enumerate(STYLES.items()):
        sets[style] = (test_per_class, seed + 2 + i, kw)
    out = {}
    for i, (name, (n, s, kw)) in enumerate(sets.items()):
        out[name] = root / f"set{i}"
        write_dataset(out[name], per_class=n, seed=s, **kw)
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


def train_evaluate(f: dict[str, tuple[np.ndarray, np.ndarray]], spec, leave_out: str) -> dict:
    """A head trained and calibrated on ``f``'s train/val sets without ``leave_out``; its
    :func:`evaluate` figures on each test style (key: style) and the model (key: "model")."""
    tr, va = (f[s][1] != leave_out for s in ("train", "val"))
    model = build_model(spec, f["train"][0][tr], list(f["train"][1][tr]), f["val"][0][va], list(f["val"][1][va]))
    res: dict = {"model": model}
    for style in EVAL:
        X, y = f[style]
        res[style] = evaluate(model, X[y != leave_out], list(y[y != leave_out]), X[y == leave_out])
    return res


def parity_checks(res: dict, style: str = POOLED) -> dict[str, float]:
    """|int8 − fp32| in points of the figures the parity goal bounds (``res``: precision → :func:`train_evaluate`)."""
    return {k: abs(res["int8"][style][k] - res["fp32"][style][k])
            for k in ("accuracy", "ece", "auto_precision", "unknown_known", "unknown_unseen")}


def build_model(spec, Xtr, ytr, Xva, yva):
    from semcat.calibration import calibrate_model
    from semcat.head import SoftmaxHead
    from semcat.featurespec import FeatureSpec
    from semcat.model import SemcatModel

    head = SoftmaxHead(seed=0, classes=sorted(set(ytr))).fit(Xtr, ytr, Xva, yva)
    model = SemcatModel(FeatureSpec.resolve(spec), head)
    calibrate_model(model, Xva, yva, Xtr, y_train=ytr)
    return model


def evaluate(model, X: np.ndarray, y: list[str], X_unseen: np.ndarray) -> dict[str, float]:
    from semcat.calibration import decide, expected_calibration_error

    proba = model.predict_features(X)
    idx = np.array([model.classes.index(c) for c in y])
    ood = model.ood_scores(X)
    dec = np.array([decide(p, model.calibration, o, classes=model.classes)[0] for p, o in zip(proba, ood)])
    pred = proba.argmax(1)
    auto = dec == "auto"
    unseen = model.ood_scores(X_unseen) > model.calibration["ood"]["threshold"]
    return {"accuracy": 100 * float((pred == idx).mean()), "ece": 100 * expected_calibration_error(proba, idx),
            "auto_share": 100 * float(auto.mean()),
            "auto_precision": 100 * float((pred[auto] == idx[auto]).mean()) if auto.any() else float("nan"),
            "unknown_known": 100 * float((dec == "unknown").mean()), "unknown_unseen": 100 * float(unseen.mean()),
            "pred": pred, "dec": dec}


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
    ap.add_argument("--test-per-class", type=int, default=40, help="test images per category and style")
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
    from semcat.quantize import MEDIAN_COSINE, MIN_COSINE, quantize_backbone

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from features import make_images  # noqa: E402  (benchmarks/features.py)

    fp32 = get_backbone("efficientnet_lite0")
    int8 = replace(fp32, precision="int8")
    t = time.perf_counter()
    q = quantize_backbone(fp32)
    q_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        root = args.images or Path(tmp)
        sets = write_sets(root / "parity", args.per_class, args.test_per_class, args.seed)
        data = {name: labelled(folder) for name, folder in sets.items()}
        feats = {prec: set_features(data, spec) for prec, spec in (("fp32", fp32), ("int8", int8))}
        res = {prec: train_evaluate(feats[prec], spec, args.leave_out) for prec, spec in (("fp32", fp32), ("int8", int8))}
        # the fp32-trained model fed int8 features: what mixing precisions does
        mixed = {style: evaluate(res["fp32"]["model"], feats["int8"][style][0][feats["int8"][style][1] != args.leave_out],
                                 list(feats["int8"][style][1][feats["int8"][style][1] != args.leave_out]),
                                 feats["int8"][style][0][feats["int8"][style][1] == args.leave_out]) for style in EVAL}
        a, b = feats["fp32"][POOLED][0], feats["int8"][POOLED][0]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

        sp = speed(make_images(root / "speed", args.speed_n), fp32, int8, args.rounds, args.n_baseline)
        load = os.getloadavg()

    def row(name: str, key: str, fmt: str = "{:.1f}") -> str:
        cells = []
        for style in EVAL:
            f32, i8, mx = res["fp32"][style][key], res["int8"][style][key], mixed[style][key]
            cells.append(f"{fmt.format(f32)} / {fmt.format(i8)} ({i8 - f32:+.1f}) / {fmt.format(mx)}")
        return f"| {name} | " + " | ".join(cells) + " |"

    agree_i8 = {s: 100 * float((res["int8"][s]["pred"] == res["fp32"][s]["pred"]).mean()) for s in EVAL}
    agree_mx = {s: 100 * float((mixed[s]["pred"] == res["fp32"][s]["pred"]).mean()) for s in EVAL}
    dec_mx = {s: 100 * float((mixed[s]["dec"] == res["fp32"][s]["dec"]).mean()) for s in EVAL}
    checks = parity_checks(res)
    worst = {k: max(parity_checks(res, st)[k] for st in STYLES) for k in checks}
    parity = all(v <= PARITY_POINTS for v in checks.values())
    n_test = {s: int(np.sum(feats["fp32"][s][1] != args.leave_out)) for s in EVAL}
    info = q.info
    lines = header("int8 features (NNCF) vs fp32: parity and speed") + [
        f"- contention: shared machine, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end; "
        "absolute rates are low and noisy, the fp32/int8 ratios within a round are the figures to trust",
        f"- int8 model: {info['recipe']}, calibrated on {info['calibration']['synthetic']} synthetic"
        f" + {info['calibration']['user']} user images, NNCF {info['nncf']}, OpenVINO {info['openvino'].split('-')[0]}; "
        f"{'built' if q.built else 're-used'} in {q_s:.0f} s",
        "", "## Parity", "",
        f"Nine categories trained ({args.per_class} images each, val {max(10, args.per_class * 3 // 5)}), "
        f"`{args.leave_out}` left out as the unseen category; test: {args.test_per_class} images per category "
        f"and style ({', '.join(f'{s}: {n} known' for s, n in n_test.items())}).",
        "",
        f"Feature cosine int8 vs fp32 over all {len(cos)} test images: min {cos.min():.4f}, 1st percentile "
        f"{np.quantile(cos, 0.01):.4f}, median {np.median(cos):.4f} (the int8 model's own held-out check: "
        f"min {info['cosine_min']:.4f}, median {info['cosine_median']:.4f}; `--precision auto` requires "
        f"≥ {MIN_COSINE} / ≥ {MEDIAN_COSINE}).",
        "",
        "Each cell: fp32 / int8 (difference, points) / fp32-trained model fed int8 features. All in %.",
        "", "| metric | " + " | ".join(EVAL) + " |", "|---|" + "---:|" * len(EVAL),
        row("accuracy", "accuracy"), row("ECE", "ece", "{:.2f}"), row("auto band share", "auto_share"),
        row("auto band precision", "auto_precision"), row("unknown, known test images", "unknown_known"),
        row(f"unknown, unseen `{args.leave_out}`", "unknown_unseen"),
        "| top-1 agreement with the fp32 model: int8 model / fp32 model on int8 features | "
        + " | ".join(f"{agree_i8[s]:.1f} / {agree_mx[s]:.1f}" for s in EVAL) + " |",
        "| same decision band, fp32 model on int8 vs fp32 features | " + " | ".join(f"{dec_mx[s]:.1f}" for s in EVAL) + " |",
        "",
        f"int8 − fp32 difference on all {n_test[POOLED]} known test images (points; parity = all ≤ {PARITY_POINTS}): "
        + ", ".join(f"{k} {v:.2f}" for k, v in checks.items()) + f". **Parity {'met' if parity else 'NOT met'}.** "
        "Largest difference in a single style (fewer images, so coarser): "
        + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()) + ".",
        "", "## Speed", "", *speed_lines(sp, args.speed_n, args.rounds, args.n_baseline),
        "Goal (issue 21): int8 end to end ≥ 2.5x fp32 on a VNNI/AMX CPU, ≥ 1.3x on AVX2-only, with parity.", "",
    ]
    write_results(OUT, lines)


if __name__ == "__main__":
    main()
