"""int8 end to end: where the CPU outside the network goes, and what each change saves (issue 21).

Usage: ``python benchmarks/int8_pipeline.py [--n 384] [--rounds 5] [--layout-rounds 3]
[--baseline c3bc0b1] [--images DIR]`` (writes ``benchmarks/results/int8_pipeline.md``).

On ``--n`` synthetic 1024x768 8-bit TIFFs (``benchmarks/features.py``'s set), efficientnet_lite0:

1. **Before / after**: the code at ``--baseline`` (its ``src``, extracted with ``git archive``) and
   this tree, each in its own process, alternating (the order reversed every round): fp32, int8 and
   decode only (a network that returns zeros, ``benchmarks/int8.py``'s ``ZeroRuntime``) end to end,
   ``extract_features`` without a cache, as ``int8_speed.md`` measures it. CPU ms per image (all
   threads) is the figure to compare on a shared machine; the int8/fp32 ratio is taken per process.
   Both trees' fp32 and int8 features are compared: the changes must leave them unchanged. Where
   ``../shared/real-vendor-files`` exists, each process also times extraction's per-file path on
   those real Zeiss and FEI TIFFs (one thread, best of 7).
2. **Where the CPU goes** (this tree, int8 end to end): per thread (the main thread, OpenVINO's,
   the decode threads: what ``/proc/self/task`` no longer lists after the run) and per decode stage
   (thread CPU time inside each stage function, wrapped for the run).
3. **Network only**, int8 and fp32, on preprocessed views: requests of at most 1/2/4/8/16/32 images
   (``semcat.runtime._MAX_REQUEST``) on 2 streams of 1 thread (the THROUGHPUT hint on 2 cores), and
   of 2/8/32 on 1 stream of 2 threads and on 1 stream of 1 thread.
4. **Thread layouts end to end** (int8, this tree): decode threads 1/2/3, OpenVINO unpinned, one
   1-thread stream, 64-image batches; and what ``semcat features`` adds: the feature cache written,
   the progress bar.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "int8_pipeline.md"
sys.path.insert(0, str(HERE))
from _results import ROOT, header, source_tree, write_results  # benchmarks/_results.py

MODES = ("fp32", "int8", "decode only")
REAL = ROOT.parent / "shared" / "real-vendor-files"  # RosettaSciIO's Zeiss and FEI test files, where present


def _specs():
    from semcat.backbones import get_backbone

    fp32 = get_backbone("efficientnet_lite0")
    return fp32, replace(fp32, precision="int8")


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each live thread of this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _timed(files: list[Path], spec, rt, **kw) -> tuple[float, float, dict[str, float], np.ndarray]:
    """(images/s, CPU ms per image, CPU ms per image by thread kind, features) of one extraction."""
    from semcat.features import extract_features

    before, cpu0, t = _thread_cpu(), time.process_time(), time.perf_counter()
    res = extract_features(files, spec, runtime=rt, **{"store": None, "progress": False, **kw})
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu0
    after, main = _thread_cpu(), threading.main_thread().native_id
    assert len(res.paths) == len(files), res.errors[:3]
    n = len(files)
    # threads that lived before the run are the main one and OpenVINO's (started by the warm-up);
    # the decode pool's are new each run, and may not have left /proc yet when the pool is joined
    old = {tid: after.get(tid, t) - t for tid, t in before.items()}
    split = {"main": old.pop(main, 0.0), "OpenVINO": sum(old.values())}
    split["decode threads"] = cpu - split["main"] - split["OpenVINO"]
    return n / wall, 1e3 * cpu / n, {k: 1e3 * v / n for k, v in split.items()}, res.features


def child(images: Path, n: int, out: Path) -> None:
    """One round of fp32, int8 and decode only with the semcat on PYTHONPATH; JSON to stdout."""
    from int8 import ZeroRuntime  # benchmarks/int8.py

    from semcat.features import extract_features
    from semcat.runtime import OpenVINORuntime

    files = _files(images, n)
    fp32, int8 = _specs()
    runs = {"fp32": (fp32, OpenVINORuntime(fp32)), "int8": (int8, OpenVINORuntime(int8)),
            "decode only": (fp32, ZeroRuntime(fp32))}
    for spec, rt in runs.values():
        extract_features(files[:16], spec, runtime=rt, store=None, progress=False)  # warm: compiled, imported
    got, feats = {}, {}
    for mode, (spec, rt) in runs.items():
        rate, cpu, split, f = _timed(files, spec, rt)
        got[mode] = {"rate": rate, "cpu": cpu, "split": split}
        if mode != "decode only":
            feats[mode.replace(" ", "_")] = f
    got["real"] = _real_files_ms(fp32)
    np.savez(out, **feats)
    print(json.dumps(got))


def _real_files_ms(spec) -> dict[str, float]:
    """Best of 7 ms per real vendor file of extraction's per-file path (SHA-256, decode, preprocessing)."""
    from semcat._io import sha256_bytes
    from semcat.features import _file_views

    out = {}
    for path in sorted(REAL.glob("*.tif")) if REAL.is_dir() else []:
        data = path.read_bytes()
        best = float("inf")
        for _ in range(7):
            t = time.perf_counter()
            sha256_bytes(data)
            _file_views(data, path, spec, crop_databar=True, view="center")
            best = min(best, time.perf_counter() - t)
        out[path.name] = 1e3 * best
    return out


def _files(images: Path, n: int) -> list[Path]:
    return sorted(images.rglob("*.tif"))[:n]


def before_after(images: Path, n: int, rounds: int, baseline: str, tmp: Path) -> dict:
    """Alternating child processes of the baseline tree and this one (see the module docstring)."""
    trees = {f"before ({baseline})": source_tree(baseline, tmp), "after (this tree)": ROOT / "src"}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    feats: dict[str, dict[str, np.ndarray]] = {}
    for r in range(rounds):
        for label in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            out = tmp / f"{len(feats)}-{r}.npz"
            env = {**os.environ, "PYTHONPATH": str(trees[label])}
            proc = subprocess.run([sys.executable, __file__, "--child", str(images), str(n), str(out)], env=env,
                                  capture_output=True, text=True, check=True)
            runs[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            with np.load(out) as z:
                feats.setdefault(label, {k: z[k] for k in z.files})
    fa, fb = feats.values()
    diff = {k: float(np.abs(fa[k] - fb[k]).max()) for k in fa}
    return {"runs": runs, "diff": diff}


def _med(xs) -> float:
    return float(np.median(xs))


def before_after_lines(ba: dict, rounds: int) -> list[str]:
    med = _med
    lines = [f"## Before and after: each tree in its own process, alternating, {rounds} rounds", "",
             "| code | mode | CPU ms per image (median) | rounds (CPU ms) | images/s (median) | main / OpenVINO / decode "
             "threads, CPU ms per image |", "|---|---|---:|---|---:|---|"]
    for label, rs in ba["runs"].items():
        for m in MODES:
            cpu = [r[m]["cpu"] for r in rs]
            split = {k: med([r[m]["split"][k] for r in rs]) for k in rs[0][m]["split"]}
            lines.append(f"| {label} | {m} | {med(cpu):.2f} | {', '.join(f'{c:.2f}' for c in cpu)} | "
                         f"{med([r[m]['rate'] for r in rs]):.0f} | "
                         f"{split['main']:.2f} / {split['OpenVINO']:.2f} / {split['decode threads']:.2f} |")
    lines += ["", "| code | int8 / fp32 images/s (median of per-process ratios) | fp32 / int8 CPU ms per image |",
              "|---|---:|---:|"]
    for label, rs in ba["runs"].items():
        lines.append(f"| {label} | {med([r['int8']['rate'] / r['fp32']['rate'] for r in rs]):.2f}x | "
                     f"{med([r['fp32']['cpu'] / r['int8']['cpu'] for r in rs]):.2f}x |")
    old, new = ba["runs"].values()
    saved = {m: med([r[m]["cpu"] for r in old]) - med([r[m]["cpu"] for r in new]) for m in MODES}
    real = {name: [med([r["real"][name] for r in rs]) for rs in ba["runs"].values()] for name in old[0]["real"]}
    if real:
        lines += ["", "Real vendor files (`../shared/real-vendor-files`), the per-file path of extraction (SHA-256, "
                  "decode, data bar, preprocessing) on one thread, best of 7, median over the processes:", "",
                  "| file | before ms | after ms |", "|---|---:|---:|",
                  *(f"| {name} | {a:.2f} | {b:.2f} |" for name, (a, b) in real.items())]
    lines += ["", "CPU saved per image (before - after, medians): " + ", ".join(f"{m} {v:.2f} ms" for m, v in saved.items())
              + ". Features, before against after: largest difference "
              + ", ".join(f"{k} {v:.1e}" for k, v in ba["diff"].items()) + " (0: unchanged).", ""]
    return lines


_STAGES = [  # (module, function, label): the per-image calls of extraction, outermost last
    ("semcat.images", "read_file_bytes", "read the file's bytes"),
    ("semcat.features", "sha256_bytes", "SHA-256 of the bytes"),
    ("semcat.features", "_store_id", "sidecar check for the cache id"),
    ("semcat.images", "_decode_tiff", "TIFF header, vendor metadata and pixels"),
    ("semcat.images", "parse_tiff_tags", "  of which vendor metadata"),
    ("semcat.images", "_downscale", "downscale to 448 px"),
    ("semcat.images", "detect_databar", "data-bar detection"),
    ("semcat.images", "to_gray_float", "to float32"),
    ("semcat.features", "robust_range", "contrast range (histogram)"),
    ("semcat.features", "_resize", "centre crop resized to 224"),
    ("semcat.features", "_preprocess_gray", "all of preprocessing (range, resize, stretch)"),
    ("semcat.features", "_file_views", "all of decode + preprocessing (read_image + preprocessing)"),
]


def where(files: list[Path], rounds: int) -> tuple[dict[str, float], dict[str, float], float]:
    """Median per-thread split and per-stage thread CPU (ms per image) of int8 end to end, and its CPU ms."""
    import importlib

    from semcat.runtime import OpenVINORuntime

    _, int8 = _specs()
    rt = OpenVINORuntime(int8)
    acc: collections.Counter = collections.Counter()
    lock = threading.Lock()
    saved = []
    for mod_name, fn, label in _STAGES:
        mod = importlib.import_module(mod_name)
        orig = getattr(mod, fn)
        saved.append((mod, fn, orig))

        def wrapped(*a, _f=orig, _label=label, **k):
            t = time.thread_time()
            try:
                return _f(*a, **k)
            finally:
                with lock:
                    acc[_label] += time.thread_time() - t
        setattr(mod, fn, wrapped)
    try:
        _timed(files[:16], int8, rt)
        splits, stages, cpus = [], [], []
        for _ in range(rounds):
            acc.clear()
            _, cpu, split, _ = _timed(files, int8, rt)
            splits.append(split)
            stages.append({k: 1e3 * v / len(files) for k, v in acc.items()})
            cpus.append(cpu)
    finally:
        for mod, fn, orig in saved:
            setattr(mod, fn, orig)
    return ({k: float(np.median([s[k] for s in splits])) for k in splits[0]},
            {label: float(np.median([s.get(label, 0.0) for s in stages])) for _, _, label in _STAGES},
            float(np.median(cpus)))


def where_lines(split: dict[str, float], stages: dict[str, float], cpu: float, rounds: int) -> list[str]:
    return [f"## Where the CPU goes: int8 end to end, this tree (median of {rounds} runs)", "",
            f"All threads: {cpu:.2f} ms per image; " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()) + ".", "",
            "| decode stage (thread CPU inside it, in the run) | ms per image |", "|---|---:|",
            *(f"| {k} | {v:.3f} |" for k, v in stages.items()), ""]


def network(files: list[Path], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """(images/s, CPU ms per image) per round of network-only configurations (module docstring, 3)."""
    import semcat.runtime as R
    from semcat.features import _file_views

    fp32, int8 = _specs()
    x = np.concatenate([_file_views(p.read_bytes(), p, fp32, crop_databar=True, view="center")[0] for p in files[:256]])
    variants = {}
    for spec in (int8, fp32):
        for streams, threads in ((2, 1), (1, 2), (1, 1)):
            rt = R.OpenVINORuntime(spec, threads=streams * threads)
            rt._config.update({"NUM_STREAMS": str(streams), "INFERENCE_NUM_THREADS": str(streams * threads),
                               "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY"})
            rt.compiled, rt._queues = rt._compile(gray=True), {}
            for req in (1, 2, 4, 8, 16, 32) if streams == 2 else (2, 8, 32):
                variants[f"{spec.precision}, {streams} stream(s) x {threads} thread(s), requests <= {req}"] = (rt, req)
    today = R._MAX_REQUEST
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    try:
        for rt, req in variants.values():
            R._MAX_REQUEST = dict.fromkeys(today, req)
            rt.gray(x[:32])
        for r in range(rounds):
            for k in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                rt, req = variants[k]
                R._MAX_REQUEST = dict.fromkeys(today, req)
                t, c = time.perf_counter(), time.process_time()
                for i in range(0, len(x), 32):
                    rt.gray(x[i: i + 32])
                out[k].append((len(x) / (time.perf_counter() - t), 1e3 * (time.process_time() - c) / len(x)))
    finally:
        R._MAX_REQUEST = today
    return out


def layouts(files: list[Path], rounds: int, tmp: Path) -> dict[str, list[tuple[float, float]]]:
    """(images/s, CPU ms per image) per round of int8 end to end thread layouts (module docstring, 4),
    and of the two things `semcat features` adds to the benchmark's extraction: the feature cache
    written (a new one each run: every image computed and stored) and the progress bar."""
    from semcat.features import FeatureStore
    from semcat.runtime import OpenVINORuntime

    _, int8 = _specs()

    def ov(**config) -> OpenVINORuntime:
        rt = OpenVINORuntime(int8)
        if config:
            rt._config.update({k: str(v) for k, v in config.items()})
            rt.compiled, rt._queues = rt._compile(gray=True), {}
        return rt

    today = ov()
    variants = {
        "today: 2 decode threads, 2 pinned 1-thread streams, 32-image batches": (today, {}),
        "1 decode thread": (today, {"workers": 1}),
        "3 decode threads": (today, {"workers": 3}),
        "64-image batches": (today, {"batch_size": 64}),
        "OpenVINO unpinned": (ov(ENABLE_CPU_PINNING=False), {}),
        "one 1-thread OpenVINO stream": (ov(NUM_STREAMS=1, INFERENCE_NUM_THREADS=1, PERFORMANCE_HINT="LATENCY"), {}),
        "today, the feature cache written": (today, {"store": "new"}),
        "today, the progress bar shown": (today, {"progress": True}),
    }
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    runs = 0

    def timed(rt, kw: dict, n: int) -> tuple[float, float]:
        nonlocal runs
        runs += 1
        if kw.get("store") == "new":
            kw = {**kw, "store": FeatureStore(tmp / f"store-{runs}")}
        rate, cpu, _, _ = _timed(files[:n], int8, rt, **kw)
        return rate, cpu

    for rt, kw in variants.values():
        timed(rt, kw, 16)
    for r in range(rounds):
        for k in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            out[k].append(timed(*variants[k], len(files)))
    return out


def table_lines(title: str, res: dict[str, list[tuple[float, float]]]) -> list[str]:
    return [title, "", "| setup | CPU ms per image (median) | rounds (CPU ms) | images/s (median) | rounds (images/s) |",
            "|---|---:|---|---:|---|",
            *(f"| {k} | {np.median([c for _, c in v]):.2f} | {', '.join(f'{c:.2f}' for _, c in v)} | "
              f"{np.median([r for r, _ in v]):.0f} | {', '.join(f'{r:.0f}' for r, _ in v)} |" for k, v in res.items()), ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=384, help="1024x768 TIFFs per run")
    ap.add_argument("--rounds", type=int, default=5, help="before/after rounds (one process per tree each)")
    ap.add_argument("--layout-rounds", type=int, default=3, help="rounds of the network-only and layout tables")
    ap.add_argument("--baseline", default="c3bc0b1", help="git commit (or a folder holding semcat/) before the changes")
    ap.add_argument("--images", type=Path, help="keep the generated images here and reuse them")
    ap.add_argument("--child", nargs=3, metavar=("IMAGES", "N", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), Path(args.child[2]))
        return
    from features import make_images  # benchmarks/features.py

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.images or Path(tmp) / "images"
        files = make_images(root, args.n)
        ba = before_after(root, args.n, args.rounds, args.baseline, Path(tmp))
        split, stages, cpu = where(files, args.layout_rounds)
        net = network(files, args.layout_rounds)
        lay = layouts(files, args.layout_rounds, Path(tmp))
    write_results(OUT, [
        *header("int8 end to end: the CPU outside the network, before and after (issue 21)", started=started),
        f"- images: {args.n} synthetic 1024x768 8-bit TIFFs; efficientnet_lite0 on OpenVINO (int8: the quantised "
        "model `semcat quantize` builds); `extract_features` without a cache, batches of 32, as int8_speed.md",
        "- contention: a shared machine (see the load average); CPU ms per image is the figure to compare, "
        "images/s moves with the other jobs", "",
        *before_after_lines(ba, args.rounds),
        *where_lines(split, stages, cpu, args.layout_rounds),
        *table_lines(f"## Network only: request size and streams ({args.layout_rounds} rounds, alternating)", net),
        *table_lines(f"## Thread layouts end to end, and what `semcat features` adds, int8, this tree "
                    f"({args.layout_rounds} rounds, alternating)", lay),
    ])


if __name__ == "__main__":
    main()
