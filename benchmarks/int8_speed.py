"""int8 vs fp32 speed only: network and end to end from 1024x768 TIFFs, in one run.

Usage: ``python benchmarks/int8_speed.py [--speed-n 384] [--rounds 3] [--n-baseline 16] [--images DIR]
[--isa-cap AVX2]`` (writes ``benchmarks/results/int8_speed.md``, with ``--isa-cap`` ``int8_speed-avx2.md``).

The speed half of ``benchmarks/int8.py`` (same functions, same images), for re-measuring after a
change to decoding or preprocessing that leaves the features bit-identical, so the parity half of
``int8.md`` still holds: on a loaded shared machine the parity half alone takes most of an hour.

``--isa-cap AVX2`` measures what an AVX2-only CPU (no AVX-512, no VNNI) would get, on this CPU:
``ONEDNN_MAX_CPU_ISA`` caps the instruction set of oneDNN, whose kernels OpenVINO's CPU plugin
uses for convolutions and element-wise ops (``ATEN_CPU_CAPABILITY`` does the same for the PyTorch
baseline). The run checks in OpenVINO's runtime model that the cap took: every convolution's
kernel (``primitiveType``) names avx2 and none avx512; the kernel counts go into the results file.
OpenVINO's own JIT kernels are not capped (the final global pooling still names avx512; one
small op). Memory, caches and clock stay this machine's: it is an emulation, labelled as such.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path


OUT = Path(__file__).resolve().parent / "results" / "int8_speed.md"
ISA_CAPS = {"AVX2": "avx2"}  # ONEDNN_MAX_CPU_ISA value → ATEN_CPU_CAPABILITY value


def kernels(spec) -> Counter:
    """(op type, oneDNN/OpenVINO kernel, precision) → count in the compiled runtime model of ``spec``."""
    from semcat.runtime import OpenVINORuntime

    out: Counter = Counter()
    for op in OpenVINORuntime(spec).compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind not in ("Input", "Const", "Output", "Reorder", "Reshape"):
            out[(kind, info["primitiveType"].astype(str), info["runtimePrecision"].astype(str))] += 1
    return out


def kernel_line(prec: str, k: Counter) -> str:
    return f"{prec}: " + ", ".join(f"{n} {kind} {prim}" for (kind, prim, _), n in sorted(k.items()))


def percentile_check(files: list[Path], spec) -> tuple[int, float, float]:
    """(images, min cosine, max |difference|) of fp32 features with the contrast range from
    np.percentile, the rule before the histogram shortcut, against today's pipeline."""
    import numpy as np

    import semcat.features as sf
    from semcat.contrast import HIGH_PCT, LOW_PCT, PCT_SAMPLES

    def percentile_range(img: np.ndarray) -> tuple[float, float]:
        step = max(1, int(np.sqrt(img.size / PCT_SAMPLES)))
        sample = img[::step, ::step]
        lo, hi = np.percentile(sample[np.isfinite(sample)], (LOW_PCT, HIGH_PCT))
        return float(lo), float(hi)

    now = sf.extract_features(files, spec, runtime="openvino", store=None, progress=False).features
    today = sf.robust_range
    sf.robust_range = percentile_range
    try:
        before = sf.extract_features(files, spec, runtime="openvino", store=None, progress=False).features
    finally:
        sf.robust_range = today
    cos = (now * before).sum(1) / (np.linalg.norm(now, axis=1) * np.linalg.norm(before, axis=1))
    return len(files), float(cos.min()), float(np.abs(now - before).max())


def input_ab(files: list[Path], specs: dict, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(images/s, CPU ms per image) end to end per round, each precision with the gray views
    normalised inside OpenVINO's graph (today) and in numpy before a graph that takes the normalised
    batch (the path before), alternating within each round."""
    import numpy as np
    from int8 import e2e_rate  # benchmarks/int8.py

    from semcat.runtime import OpenVINORuntime, model_input

    class NumpyInput(OpenVINORuntime):
        def _infer_gray(self, batch):
            return self._infer(model_input(batch, self.spec))

    rts = {f"{p}, {how}": (spec, cls(spec)) for p, spec in specs.items()
           for how, cls in (("in the graph", OpenVINORuntime), ("numpy", NumpyInput))}
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in rts}
    for spec, rt in rts.values():  # compiled before the clock starts
        rt.gray(np.zeros((1, spec.input_size, spec.input_size), np.float32))
    for _ in range(rounds):
        for k, (spec, rt) in rts.items():
            cpu: list[float] = []
            out[k].append((e2e_rate(files, spec, rt, cpu), cpu[0]))
    return out


def input_ab_lines(ab: dict[str, list[tuple[float, float]]]) -> list[str]:
    import numpy as np

    med = {k: (float(np.median([r for r, _ in v])), float(np.median([c for _, c in v]))) for k, v in ab.items()}
    return [
        "Where the network input is made (same run, same images, alternating within each round): the gray views' "
        "3 channels and mean/std inside OpenVINO's graph (today: `Runtime.gray`) or in numpy before it (before).", "",
        "| end to end | images/s (median) | CPU ms per image (median) | rounds (images/s) |", "|---|---:|---:|---|",
        *(f"| {k} | {r:.0f} | {c:.2f} | {', '.join(f'{x:.0f}' for x, _ in ab[k])} |" for k, (r, c) in med.items()),
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed-n", type=int, default=384, help="1024x768 TIFFs for the speed runs")
    ap.add_argument("--rounds", type=int, default=3, help="alternating fp32/int8 speed rounds")
    ap.add_argument("--n-baseline", type=int, default=16, help="images for the Inception-v3 baseline")
    ap.add_argument("--images", type=Path, help="keep the generated images here and reuse them")
    ap.add_argument("--isa-cap", choices=list(ISA_CAPS),
                    help="emulate a CPU with only this instruction set by capping oneDNN's (see the docstring)")
    args = ap.parse_args()
    if args.isa_cap:  # before OpenVINO or torch create their first oneDNN kernel
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa_cap
        os.environ["ATEN_CPU_CAPABILITY"] = ISA_CAPS[args.isa_cap]

    from semcat.backbones import get_backbone
    from semcat.quantize import quantize_backbone

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _results import header, write_results  # benchmarks/_results.py
    from features import make_images  # benchmarks/features.py
    from int8 import speed, speed_lines  # benchmarks/int8.py

    fp32 = get_backbone("efficientnet_lite0")
    t = time.perf_counter()
    q = quantize_backbone(fp32)
    q_s = time.perf_counter() - t
    used = {prec: kernels(replace(fp32, precision=prec)) for prec in ("fp32", "int8")}
    if args.isa_cap:
        convs = {prim for k in used.values() for (kind, prim, _) in k if kind == "Convolution"}
        if any("avx512" in c or "avx2" not in c for c in convs):
            sys.exit(f"ONEDNN_MAX_CPU_ISA={args.isa_cap} did not take: convolution kernels {sorted(convs)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.images or Path(tmp)
        files = make_images(root / "speed", args.speed_n)
        check = percentile_check(files[:64], fp32)
        sp = speed(files, fp32, replace(fp32, precision="int8"), args.rounds, args.n_baseline)
        ab = input_ab(files, {"fp32": fp32, "int8": replace(fp32, precision="int8")}, args.rounds)
    load = os.getloadavg()
    info = q.info
    cap = args.isa_cap
    text = "\n".join([
        *header("int8 features vs fp32: speed after the decode-path changes"
                + (f", {cap} emulated on an AVX-512 CPU by capping oneDNN's ISA" if cap else "")),
        *([f"- instruction set: **{cap} emulated on an AVX-512 CPU by capping oneDNN's ISA** "
           f"(ONEDNN_MAX_CPU_ISA={cap}, ATEN_CPU_CAPABILITY={ISA_CAPS[cap]}); memory, caches and clock are this "
           "machine's, and OpenVINO's own JIT kernels are not capped"] if cap else []),
        "- kernels in OpenVINO's runtime model (op, primitiveType): " + "; ".join(kernel_line(p, k) for p, k in used.items()),
        f"- contention: shared machine, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at "
        "the end; absolute rates are low and noisy, the fp32/int8 ratios within a round are the figures to trust",
        f"- int8 model: {info['recipe']}, calibrated on {info['calibration']['synthetic']} synthetic + "
        f"{info['calibration']['user']} user images, NNCF {info['nncf']}, OpenVINO {info['openvino'].split('-')[0]}; "
        f"{'built' if q.built else 're-used'} in {q_s:.0f} s",
        "- parity: int8.md and int8_recipes.md measure the int8 recipe named above; the decode-path changes "
        "leave fp32 features unchanged: the contrast range from a histogram against np.percentile on "
        f"{check[0]} of these images: fp32 feature cosine min {check[1]:.7f}, "
        f"largest difference {check[2]:.1e}; libdeflate/zstd strips give the pixels libtiff gives "
        "(tests/test_tiff_codecs.py)",
        "", *speed_lines(sp, args.speed_n, args.rounds, args.n_baseline), *input_ab_lines(ab),
        "Goal (issue 21): int8 end to end ≥ 2.5x fp32 on a VNNI/AMX CPU (≥ 200 img/s on 2 cores), ≥ 1.3x on AVX2-only.",
        "",
    ])
    write_results(OUT.with_name(f"int8_speed-{cap.lower()}.md") if cap else OUT, text.splitlines())


if __name__ == "__main__":
    main()
