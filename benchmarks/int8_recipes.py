"""int8 recipes side by side: network speed and parity of each NNCF preset, in one run.

Usage: ``python benchmarks/int8_recipes.py [--per-class 60] [--test-per-class 40] [--n-net 256]
[--rounds 3] [--leave-out Nanowires] [--images DIR]`` (writes ``benchmarks/results/int8_recipes.md``).

Candidates: every preset of ``semcat.quantize.RECIPES``, each built by ``quantize_backbone`` with
its other defaults (300 synthetic calibration images, full bias correction) in a home folder of
its own (the fp32 IR linked in), so the int8 model ``--precision auto`` uses is not touched.

Speed: network only (``--n-net`` preprocessed 1024x768 TIFFs through ``OpenVINORuntime`` in
batches of 32, its default THROUGHPUT hint), ``--rounds`` rounds in which fp32 and every
candidate alternate; images/s and CPU time per image (all threads of this process: on a shared
machine the steadier figure). The same for OpenVINO's LATENCY hint, fp32 and the default recipe.

Parity: ``benchmarks/int8.py``'s sets, heads and figures (accuracy, ECE, auto-band precision,
unknown rates of fp32- and int8-trained heads, all ≤ 0.5 points apart on the pooled test styles),
and the feature cosine to fp32 on every test image.
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

from _results import header, write_results
from int8 import PARITY_POINTS, POOLED, labelled, network_rate, parity_checks, set_features, train_evaluate, write_sets

OUT = Path(__file__).resolve().parent / "results" / "int8_recipes.md"


def candidate_home(root: Path, fp32_xml: Path) -> Path:
    """A SEMCAT_HOME holding only links to the fp32 IR: its int8 model is built there."""
    (root / "openvino").mkdir(parents=True, exist_ok=True)
    for suffix in (".xml", ".bin", ".json"):
        link = root / "openvino" / fp32_xml.with_suffix(suffix).name
        if not link.exists():
            link.symlink_to(fp32_xml.with_suffix(suffix))
    return root


def use_home(home: Path) -> None:
    """Point semcat at ``home``; drop runtimes cached for the previous one."""
    from semcat.runtime import _cached_runtime

    os.environ["SEMCAT_HOME"] = str(home)
    _cached_runtime.cache_clear()


def net_cpu(rt, x: np.ndarray) -> tuple[float, float]:
    """(images/s, CPU ms per image) of ``x`` through ``rt``."""
    c = time.process_time()
    rate = network_rate(rt, x)
    return rate, 1e3 * (time.process_time() - c) / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=60, help="training images per category")
    ap.add_argument("--test-per-class", type=int, default=40, help="test images per category and style")
    ap.add_argument("--n-net", type=int, default=256, help="1024x768 TIFFs for the network-only runs")
    ap.add_argument("--rounds", type=int, default=3, help="alternating speed rounds")
    ap.add_argument("--leave-out", default="Nanowires", help="category never trained on (unknown rate)")
    ap.add_argument("--seed", type=int, default=2121)
    ap.add_argument("--images", type=Path, help="keep the generated images here and reuse them")
    args = ap.parse_args()

    from semcat.backbones import get_backbone
    from semcat.features import preprocess
    from semcat.images import read_image
    from semcat.quantize import PRESET, RECIPES, quantize_backbone
    from semcat.runtime import OpenVINORuntime, ensure_ir

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from features import make_images  # noqa: E402  (benchmarks/features.py)

    fp32 = get_backbone("efficientnet_lite0")
    int8 = replace(fp32, precision="int8")
    fp32_xml = ensure_ir(fp32)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.images or Path(tmp)
        homes = {p: candidate_home(Path(tmp) / f"home-{p}", fp32_xml) for p in RECIPES}
        built, rts, feats, res = {}, {}, {}, {}
        for p, home in homes.items():
            use_home(home)
            t = time.perf_counter()
            built[p] = (quantize_backbone(fp32, preset=p).info, time.perf_counter() - t)
            rts[p] = OpenVINORuntime(int8)
            rts[f"{p}, LATENCY"] = OpenVINORuntime(int8, hint="LATENCY") if p == PRESET else None
        rts = {"fp32": OpenVINORuntime(fp32), "fp32, LATENCY": OpenVINORuntime(fp32, hint="LATENCY"),
               **{k: v for k, v in rts.items() if v is not None}}
        files = make_images(root / "speed", args.n_net)
        x = np.concatenate([preprocess(read_image(f)[0], fp32, view="center") for f in files])
        speed: dict[str, list[tuple[float, float]]] = {k: [] for k in rts}
        for _ in range(args.rounds):
            for k, rt in rts.items():
                speed[k].append(net_cpu(rt, x))

        data = {name: labelled(folder) for name, folder in
                write_sets(root / "parity", args.per_class, args.test_per_class, args.test_per_class,
                           args.leave_out, args.seed, draws=1).items()}
        feats["fp32"] = set_features(data, fp32)
        res["fp32"] = train_evaluate(feats["fp32"], fp32, args.leave_out)
        for p, home in homes.items():
            use_home(home)
            feats[p] = set_features(data, int8)
            res[p] = train_evaluate(feats[p], int8, args.leave_out)
        load = os.getloadavg()

    def ratio(k: str, i: int) -> float:  # median over rounds of fp32 / k (i=0: rate, inverted; i=1: CPU ms)
        base = "fp32, LATENCY" if k.endswith("LATENCY") else "fp32"
        a, b = np.array(speed[k])[:, i], np.array(speed[base])[:, i]
        return float(np.median(a / b if i == 0 else b / a))

    lines = header("int8 recipes side by side: NNCF presets, network speed and parity") + [
        f"- contention: shared machine, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at "
        "the end; compare within a round (ratios), and CPU time per image over images/s",
        f"- candidates: `semcat.quantize.RECIPES`, each calibrated on {built[PRESET][0]['calibration']['synthetic']} "
        f"synthetic images, NNCF {built[PRESET][0]['nncf']}, OpenVINO {built[PRESET][0]['openvino'].split('-')[0]}; "
        f"default: `{PRESET}`",
        "", "## Network only", "",
        f"{len(x)} preprocessed 1024x768 TIFFs, batches of 32, {args.rounds} rounds alternating every row; "
        "the ratio columns: fp32 at the same hint / the row, median of per-round ratios.", "",
        "| network | images/s (rounds) | CPU ms per image (rounds) | speed-up, images/s | speed-up, CPU time |",
        "|---|---|---|---:|---:|",
    ]
    for k, v in speed.items():
        name = k if k.startswith("fp32") else f"int8 `{k.split(',')[0]}` ({RECIPES[k.split(',')[0]]})" + (
            ", LATENCY" if k.endswith("LATENCY") else "")
        lines.append(f"| {name} | {', '.join(f'{r:.0f}' for r, _ in v)} | {', '.join(f'{c:.2f}' for _, c in v)} | "
                     + ("| |" if k.startswith("fp32") else f"{ratio(k, 0):.2f}x | {ratio(k, 1):.2f}x |"))
    n_known = int(np.sum(feats["fp32"][POOLED][1] != args.leave_out))
    lines += ["", "## Parity", "",
              f"{args.per_class} training images per category, `{args.leave_out}` left out as the unseen category, "
              f"{args.test_per_class} test images per category and style (benchmarks/int8.py's three instrument "
              f"styles, pooled: {n_known} known). Differences int8 − fp32 heads, points; parity = all ≤ {PARITY_POINTS}.",
              "", "| recipe | held-out cosine min / median (at build) | test cosine min / median | accuracy | ECE | "
              "auto-band precision | unknown, known | unknown, unseen | top-1 agreement with fp32 | parity | built in |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for p in RECIPES:
        a, b = feats["fp32"][POOLED][0], feats[p][POOLED][0]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        checks = parity_checks({"fp32": res["fp32"], "int8": res[p]})
        agree = 100 * float((res[p][POOLED]["pred"] == res["fp32"][POOLED]["pred"]).mean())
        info, secs = built[p]
        lines.append(f"| `{p}` ({RECIPES[p]}) | {info['cosine_min']:.4f} / {info['cosine_median']:.4f} | "
                     f"{cos.min():.4f} / {np.median(cos):.4f} | " + " | ".join(f"{v:.2f}" for v in checks.values())
                     + f" | {agree:.1f} % | {'met' if all(v <= PARITY_POINTS for v in checks.values()) else 'NOT met'} "
                     f"| {secs:.0f} s |")
    lines += ["", f"fp32 heads on the pooled test styles: accuracy {res['fp32'][POOLED]['accuracy']:.1f} %, "
              f"ECE {res['fp32'][POOLED]['ece']:.2f} %, auto-band precision {res['fp32'][POOLED]['auto_precision']:.1f} %, "
              f"unknown {res['fp32'][POOLED]['unknown_known']:.1f} % (known) / {res['fp32'][POOLED]['unknown_unseen']:.1f} % "
              "(unseen).", ""]
    write_results(OUT, lines)


if __name__ == "__main__":
    main()
