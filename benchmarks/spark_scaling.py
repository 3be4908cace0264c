"""Spark scaling benchmark: speedup of `classify` against cores, with the local engine alongside.

Like the paper's Figure 7: for each image count N and each core count c, the Spark engine
classifies N synthetic images on ``local[c]`` (a fresh session per c; session start-up is
reported separately, not timed), and the local engine does the same with ``c`` torch threads.
Speedup = time on 1 core / time on c cores. The feature cache is off in every run, so each
image is decoded and run through the CNN. The Spark overhead is the Spark time over the local
engine time at the same N and core count.

The hardware's own ceiling is measured too: ``c`` independent one-thread processes each classify
1/c of the images (no Spark, nothing shared but the machine). Cores that share memory bandwidth,
caches and a turbo budget rarely give c times the work; no engine can beat this ceiling.

    python benchmarks/spark_scaling.py --n 1000,5000 --cores 1,2

Writes ``benchmarks/results/spark.md`` and ``docs/img/spark_scaling.png``.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from semcat._sysinfo import machine_description as machine  # noqa: E402


def make_images(root: Path, n: int, size: int) -> list[str]:
    """``n`` synthetic images over the 10 categories (generated once, reused for smaller N)."""
    from semcat._io import iter_image_files
    from semcat.synth import write_dataset

    write_dataset(root, per_class=math.ceil(n / 10), size=size, seed=1, databar=True)
    return [str(p) for p in iter_image_files([root])]


def train_model(paths: list[str], out: Path) -> Path:
    """A real model (softmax head on efficientnet_lite0 features of a few images per class)."""
    from semcat.head import SoftmaxHead
    from semcat.model import SemcatModel, extract_backbone_features

    ok, _, X, _, _ = extract_backbone_features(paths, "efficientnet_lite0", view="center", crop_databar=True)
    head = SoftmaxHead().fit(X, [Path(p).parent.name for p in ok])
    SemcatModel("efficientnet_lite0", head, view="center", crop_databar=True).save(out)
    return out


def time_local(model_path: Path, paths: list[str], cores: int) -> float:
    from semcat.engines.local import classify

    os.environ["SEMCAT_THREADS"] = str(cores)  # inference threads of the local engine's runtime
    t0 = time.perf_counter()
    preds = list(classify(str(model_path), paths, store=None))
    elapsed = time.perf_counter() - t0
    assert len(preds) == len(paths)
    return elapsed


def time_independent(model_path: Path, paths: list[str], cores: int, work: Path) -> float:
    """Wall time of ``cores`` separate one-thread processes, each classifying 1/cores of ``paths``."""
    procs = []
    t0 = time.perf_counter()
    for i in range(cores):
        part = work / f"part-{cores}-{i}.txt"
        part.write_text("\n".join(paths[i::cores]), encoding="utf-8")
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", str(model_path), str(part)],
                                      env={**os.environ, "SEMCAT_THREADS": "1"}))
    if any(p.wait() for p in procs):
        raise RuntimeError("an independent classify process failed")
    return time.perf_counter() - t0


def child(model_path: str, list_file: str) -> None:
    """One independent process of :func:`time_independent`: classify the listed images."""
    from semcat.engines.local import classify

    paths = Path(list_file).read_text(encoding="utf-8").split("\n")
    assert sum(p.error is None for p in classify(model_path, paths, store=None)) == len(paths)


def time_spark(model_path: Path, paths: list[str], cores: int, work: Path) -> tuple[float, float]:
    """(job seconds, session start-up seconds) on ``local[cores]``."""
    from semcat.engines.spark import classify, spark_session

    t0 = time.perf_counter()
    spark = spark_session(f"local[{cores}]", app_name="semcat-bench")
    startup = time.perf_counter() - t0
    out = work / f"spark-{cores}-{len(paths)}.parquet"
    shutil.rmtree(out, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        summary = classify(model_path, paths, out, spark=spark, progress=False, chunk_size=len(paths))
        elapsed = time.perf_counter() - t0
    finally:
        spark.stop()
    assert summary.ok == len(paths), summary
    return elapsed, startup


def plot(results: dict, cores: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(cores, cores, color="#bbbbbb", ls="--", label="linear")
    for (engine, n), times in sorted(results.items()):
        speedup = [times[1] / times[c] for c in cores]
        style = {"spark": "-o", "local": ":s"}.get(engine, "--^")
        ax.plot(cores, speedup, style, label=f"{engine}, {n} images")
    ax.set_xlabel("cores")
    ax.set_ylabel("speedup (time on 1 core / time on N cores)")
    ax.set_xticks(cores)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="1000,5000", help="comma-separated image counts")
    ap.add_argument("--cores", default="1,2", help="comma-separated core counts (1 must be included)")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--workdir", type=Path, default=None, help="keep generated images here (default: temp)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/spark.md")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/img/spark_scaling.png")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    ns = sorted(int(x) for x in args.n.split(","))
    cores = sorted(int(x) for x in args.cores.split(","))
    if cores[0] != 1:
        ap.error("--cores must include 1 (speedup is relative to one core)")

    tmp = tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)
    os.environ.setdefault("SEMCAT_HOME", str(work / "home"))
    all_paths = make_images(work / "images", max(ns), args.size)
    model_path = train_model(all_paths[:: max(1, len(all_paths) // 100)], work / "model.semcat")

    time_local(model_path, all_paths[:4], 1)  # warm-up: backbone build/conversion is not per-image work
    results: dict[tuple[str, int], dict[int, float]] = {}
    startups = []
    for n in ns:
        paths = all_paths[:n]
        for c in cores:
            results.setdefault(("local", n), {})[c] = time_local(model_path, paths, c)
            elapsed, startup = time_spark(model_path, paths, c, work)
            results.setdefault(("spark", n), {})[c] = elapsed
            results.setdefault(("independent processes", n), {})[c] = time_independent(model_path, paths, c, work)
            startups.append(startup)
            print(f"N={n} cores={c}: local {results['local', n][c]:.1f} s, spark {elapsed:.1f} s, "
                  f"independent {results['independent processes', n][c]:.1f} s", file=sys.stderr)
    plot(results, cores, args.plot)

    lines = ["| engine | images | " + " | ".join(f"{c} core{'s' * (c > 1)}" for c in cores) + " | speedup "
             f"1→{cores[-1]} |", "|---|---|" + "---|" * len(cores) + "---|"]
    for (engine, n), times in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = " | ".join(f"{times[c]:.1f} s ({n / times[c]:.1f} img/s)" for c in cores)
        lines.append(f"| {engine} | {n} | {cells} | {times[1] / times[cores[-1]]:.2f}x |")
    n0, cmax = ns[0], cores[-1]
    overhead = results["spark", n0][cmax] / results["local", n0][cmax]
    ceiling = results["independent processes", ns[-1]]
    spark_vs_ceiling = (results["spark", ns[-1]][1] / results["spark", ns[-1]][cmax]) / (ceiling[1] / ceiling[cmax])
    text = f"""# Spark engine scaling

{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · {machine()}

`semcat classify --engine spark` on `local[c]` against the local engine with `c` torch threads,
synthetic {args.size}-px images, efficientnet_lite0, feature cache off (every image decoded and
run through the CNN). Times exclude Spark session start-up (mean {sum(startups) / len(startups):.1f} s)
but include loading the model in each executor process (once per process, amortised at large N).

{chr(10).join(lines)}

Spark overhead vs. the local engine on {n0} images, {cmax} core{'s' * (cmax > 1)}: **{overhead:.2f}x**
the local engine's time. "independent processes" is the machine's own ceiling: {cmax} separate
one-thread processes each classifying 1/{cmax} of the images, Spark's speedup at {ns[-1]} images is
{spark_vs_ceiling:.0%} of it.

![speedup against cores](../../docs/img/{args.plot.name})
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
