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

On a standalone cluster of one-core workers (``--master spark://HOST:PORT``, or
``--start-cluster`` for one on loopback) Spark runs with ``spark.cores.max`` = c, i.e. on c
workers; the results also give the marginal images/s per core, the fixed cost per job, the
Parquet bytes per image and, with ``--ingest N``, the driver's catalogue write rate: the inputs of
the capacity model in docs/capacity.md. Writes ``benchmarks/results/spark_cluster.md`` and
``docs/img/spark_cluster_scaling.png``.

    python benchmarks/spark_scaling.py --start-cluster --n 500,2000 --ingest 1000
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import header, write_results  # noqa: E402


def make_images(root: Path, n: int, size: int) -> list[str]:
    """``n`` synthetic images over the 10 categories (generated once, reused for smaller N)."""
    from semcat._io import iter_image_files
    from semcat.synth import write_dataset

    write_dataset(root, per_class=math.ceil(n / 10), size=size, seed=1, databar=True)
    return [str(p) for p in iter_image_files([root])]


def train_model(paths: list[str], out: Path) -> Path:
    """A real model (softmax head on efficientnet_lite0 features of a few images per class)."""
    from semcat.head import SoftmaxHead
    from semcat.featurespec import FeatureSpec
    from semcat.model import SemcatModel

    res = FeatureSpec.resolve("efficientnet_lite0").extract(paths)
    ok, X = res.paths, res.features
    head = SoftmaxHead().fit(X, [Path(p).parent.name for p in ok])
    SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), head).save(out)
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


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by the live processes descending from ``roots`` (cluster workers,
    their executors and the executors' Python workers, which pyspark's daemon puts in a process
    group of its own): a per-core rate that does not depend on what else runs."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the name: state, ppid, ...; utime, stime, cutime, cstime at 11-14
        stats[int(stat.parent.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total / tick


def time_spark(model_path: Path, paths: list[str], cores: int, work: Path,
               master: str | None = None, pgids: list[int] | None = None) -> tuple[float, float, int, float, dict]:
    """(job seconds, session start-up seconds, output bytes, executor CPU seconds, later jobs) on
    ``local[cores]``, or on the standalone ``master`` with ``spark.cores.max = cores`` (one-core
    workers: ``cores`` workers); CPU seconds are counted over the process trees of ``pgids`` (NaN
    without them). The first job of a fresh session is the one timed; ``later jobs`` times the
    same images again in that session (executors and Python workers up, model compiled) with the
    automatic tasks per chunk ("warm") and with the former 4 tasks per core ("warm, 4 tasks/core")."""
    from semcat.engines.spark import classify, spark_session

    t0 = time.perf_counter()
    if master:
        spark = spark_session(master, app_name="semcat-bench", conf={"spark.cores.max": str(cores)})
    else:
        spark = spark_session(f"local[{cores}]", app_name="semcat-bench")
    startup = time.perf_counter() - t0
    out = work / f"spark-{cores}-{len(paths)}.parquet"
    shutil.rmtree(out, ignore_errors=True)
    try:
        cpu0 = tree_cpu_seconds(pgids) if pgids else math.nan
        t0 = time.perf_counter()
        summary = classify(model_path, paths, out=out, spark=spark, progress=False, chunk_size=len(paths))
        elapsed = time.perf_counter() - t0
        cpu = tree_cpu_seconds(pgids) - cpu0 if pgids else math.nan
        later = {}
        for name, parts in (("warm", None), ("warm, 4 tasks/core", 4 * spark.sparkContext.defaultParallelism)):
            again = work / f"spark-{cores}-{len(paths)}-{len(later)}.parquet"
            shutil.rmtree(again, ignore_errors=True)
            t0 = time.perf_counter()
            assert classify(model_path, paths, out=again, spark=spark, progress=False, chunk_size=len(paths),
                            partitions=parts).ok == len(paths)
            later[name] = time.perf_counter() - t0
    finally:
        spark.stop()
    assert summary.ok == len(paths), summary
    return elapsed, startup, sum(f.stat().st_size for f in out.glob("*.parquet")), cpu, later


def time_catalogue(model_path: Path, paths: list[str], master: str, work: Path, db_url: str) -> dict:
    """Spark ingest of ``paths``: seconds of the Spark phase, of the driver's catalogue writes, and
    the Parquet bytes of the ingest output (predictions + feature vectors)."""
    from semcat.engines.spark import ingest, spark_session

    spark = spark_session(master, app_name="semcat-bench-ingest")
    out = work / f"ingest-{len(paths)}.parquet"
    shutil.rmtree(out, ignore_errors=True)
    phase: dict = {}
    try:
        t0 = time.perf_counter()
        summary = ingest(paths, db_url, model_path, out=out, spark=spark, progress=False,
                         on_classified=lambda s: phase.update(spark=time.perf_counter() - t0,
                                                              cpu=time.process_time()))
        total = time.perf_counter() - t0
        cpu = time.process_time() - phase["cpu"]
    finally:
        spark.stop()
    assert summary.classified == len(paths), summary
    return {"spark": phase["spark"], "catalogue": total - phase["spark"], "catalogue_cpu": cpu,
            "bytes": sum(f.stat().st_size for f in out.glob("*.parquet"))}


def time_packed_env(model_path: Path, paths: list[str], master: str, work: Path) -> dict:
    """Pack the executor environment (``semcat spark pack-env`` defaults), classify ``paths`` on
    the cluster with it as the executors' Python, and count rows that differ from the local engine."""
    from semcat.engines.local import classify as local_classify
    from semcat.engines.packenv import pack_env
    from semcat.engines.spark import classify, read_results, spark_session

    packed = pack_env(work / "env.tar.gz", overwrite=True)
    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = "./environment/bin/python"  # read when the session starts
    try:
        spark = spark_session(master, app_name="semcat-bench-env", conf={"spark.archives": f"{packed.path}#environment"})
    finally:
        if saved is None:
            os.environ.pop("PYSPARK_PYTHON")
        else:
            os.environ["PYSPARK_PYTHON"] = saved
    out = work / "packed-env.parquet"
    shutil.rmtree(out, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        summary = classify(model_path, paths, out=out, spark=spark, progress=False)
        elapsed = time.perf_counter() - t0
    finally:
        spark.stop()
    rows = read_results(out).set_index("path")
    local = {p.path: p for p in local_classify(str(model_path), paths, store=None)}
    differ = sum(rows.loc[p, "label_1"] != r.label or abs(rows.loc[p, "score_1"] - r.score) > 1e-5
                 for p, r in local.items())
    return {"mb": packed.bytes / 1e6, "pack_s": packed.seconds, "packages": packed.distributions,
            "job_s": elapsed, "ok": summary.ok, "n": len(paths), "differ": int(differ)}


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
    ap.add_argument("--master", help="spark://HOST:PORT of a standalone cluster of one-core workers: "
                                     "Spark runs there with spark.cores.max=c (c workers), not local[c]")
    ap.add_argument("--start-cluster", action="store_true",
                    help="start a loopback standalone cluster of max(--cores) one-core workers for the run")
    ap.add_argument("--ingest", type=int, default=0,
                    help="with a cluster: also time the driver's catalogue writes for this many images "
                         "(SQLite; PostgreSQL too when SEMCAT_TEST_PG_URL is set)")
    ap.add_argument("--pack-env", type=int, default=0,
                    help="with a cluster: pack the executor environment and classify this many images "
                         "with it as the executors' Python")
    ap.add_argument("--workdir", type=Path, default=None, help="keep generated images here (default: temp)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file; a bare name goes to benchmarks/results/ (default spark.md, spark_cluster.md "
                         "with a cluster), so the header's arguments are the same in every checkout")
    ap.add_argument("--plot", type=Path, default=None,
                    help="plot; a bare name goes to docs/img/ (default spark_scaling.png, spark_cluster_scaling.png "
                         "with a cluster)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the cluster
    if args.child:
        child(*args.child)
        return 0
    ns = sorted(int(x) for x in args.n.split(","))
    cores = sorted(int(x) for x in args.cores.split(","))
    if cores[0] != 1:
        ap.error("--cores must include 1 (speedup is relative to one core)")
    on_cluster = bool(args.master or args.start_cluster)
    name = "spark_cluster" if on_cluster else "spark"
    args.out = _under(ROOT / "benchmarks/results", args.out or Path(f"{name}.md"))
    args.plot = _under(ROOT / "docs/img", args.plot or Path(f"{name}_scaling.png"))

    tmp = tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)
    os.environ.setdefault("SEMCAT_HOME", str(work / "home"))
    all_paths = make_images(work / "images", max(ns + [args.ingest]), args.size)
    model_path = train_model(all_paths[:: max(1, len(all_paths) // 100)], work / "model.semcat")
    time_local(model_path, all_paths[:4], 1)  # warm-up: backbone build/conversion is not per-image work

    cluster = None
    master = args.master
    load_before = os.getloadavg()[0]
    if args.start_cluster:
        from semcat.engines.standalone import StandaloneCluster

        cluster = StandaloneCluster(work / "cluster").start()
        cluster.add_workers(max(cores), cores=1, memory="1g")
        master = cluster.url
    try:
        pgids = [w.pid for w in cluster.workers] if cluster else None
        results, startups, out_bytes, cpu = _measure(model_path, all_paths, ns, cores, work, master, pgids)
        ingest_rows = _measure_ingest(model_path, all_paths[:args.ingest], master, work) if master and args.ingest else []
        packed = time_packed_env(model_path, all_paths[:args.pack_env], master, work) if master and args.pack_env else None
    finally:
        if cluster is not None:
            cluster.stop()
    plot(results, cores, args.plot)
    text = _report(args, ns, cores, results, startups, out_bytes, ingest_rows, master, packed, load_before, cpu)
    title = f"Spark engine scaling{' on a standalone cluster' if master else ''}"
    write_results(args.out, header(title) + ["", text.rstrip("\n")])
    tmp.cleanup()
    return 0


def _under(folder: Path, path: Path) -> Path:
    """``path`` as given when it names a folder, else in ``folder`` (as cross_instrument.py's --out)."""
    return path if path.parent != Path() else folder / path


def _measure(model_path: Path, all_paths: list[str], ns: list[int], cores: list[int], work: Path,
             master: str | None, pgids: list[int] | None) -> tuple[dict, list[float], dict, dict]:
    """Local engine, Spark and independent processes for every (N, cores), in turn."""
    spark_name = "spark standalone" if master else "spark"
    results: dict[tuple[str, int], dict[int, float]] = {}
    startups, out_bytes, cpu = [], {}, {}
    for n in ns:
        paths = all_paths[:n]
        for c in cores:
            results.setdefault(("local", n), {})[c] = time_local(model_path, paths, c)
            elapsed, startup, out_bytes[n], cpu[n, c], later = time_spark(model_path, paths, c, work, master, pgids)
            results.setdefault((spark_name, n), {})[c] = elapsed
            for name, seconds in later.items():
                results.setdefault((f"{spark_name}, {name}", n), {})[c] = seconds
            results.setdefault(("independent processes", n), {})[c] = time_independent(model_path, paths, c, work)
            startups.append(startup)
            print(f"N={n} cores={c}: local {results['local', n][c]:.1f} s, {spark_name} {elapsed:.1f} s, "
                  f"independent {results['independent processes', n][c]:.1f} s, executor CPU {cpu[n, c]:.1f} s",
                  file=sys.stderr)
    return results, startups, out_bytes, cpu


def _measure_ingest(model_path: Path, paths: list[str], master: str, work: Path) -> list[tuple[str, dict]]:
    """(database, timings) of a Spark ingest into SQLite and, when configured, PostgreSQL."""
    for f in work.glob("bench-catalog.db*"):  # every run writes into an empty catalogue
        f.unlink()
    urls = [("sqlite", f"sqlite:///{work / 'bench-catalog.db'}")]
    if os.environ.get("SEMCAT_TEST_PG_URL"):
        urls.append(("postgresql", os.environ["SEMCAT_TEST_PG_URL"]))
    rows = []
    for name, url in urls:
        if name == "postgresql":
            _reset_pg(url)
        rows.append((name, time_catalogue(model_path, paths, master, work, url)))
        print(f"ingest {len(paths)} into {name}: {rows[-1][1]}", file=sys.stderr)
    return rows


def _reset_pg(url: str) -> None:
    """Drop the benchmark's catalogue tables so every run writes into an empty database."""
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    with eng.begin() as con:
        con.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()


def _report(args, ns, cores, results, startups, out_bytes, ingest_rows, master, packed, load_before, cpu) -> str:
    spark_name = "spark standalone" if master else "spark"
    lines = ["| engine | images | " + " | ".join(f"{c} core{'s' * (c > 1)}" for c in cores) + " | speedup "
             f"1→{cores[-1]} |", "|---|---|" + "---|" * len(cores) + "---|"]
    for (engine, n), times in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = " | ".join(f"{times[c]:.1f} s ({n / times[c]:.1f} img/s)" for c in cores)
        lines.append(f"| {engine} | {n} | {cells} | {times[1] / times[cores[-1]]:.2f}x |")
    n0, cmax = ns[0], cores[-1]
    overhead = results[spark_name, n0][cmax] / results["local", n0][cmax]
    ceiling = results["independent processes", ns[-1]]
    sp = results[spark_name, ns[-1]]
    spark_vs_ceiling = (sp[1] / sp[cmax]) / (ceiling[1] / ceiling[cmax])
    where = (f"a standalone cluster ({master}) of one-core workers, `spark.cores.max` = cores (so 1 core = "
             "1 worker, 2 cores = 2 workers), against the local engine with that many torch threads"
             if master else "`local[c]` against the local engine with `c` torch threads")
    # fixed cost per job: Spark time minus what the same images cost at Spark's own large-N rate
    big, small = ns[-1], ns[0]
    per_image = {c: (results[spark_name, big][c] - results[spark_name, small][c]) / (big - small) for c in cores}
    fixed = {c: results[spark_name, small][c] - small * per_image[c] for c in cores}
    extra = ""
    if len(ns) > 1:
        cpu_per_image = {c: (cpu[big, c] - cpu[small, c]) / (big - small) for c in cores}
        cpu_fixed = {c: cpu[small, c] - small * cpu_per_image[c] for c in cores}
        extra += ("\n\nMarginal Spark rate (from the difference between the two image counts) and fixed cost "
                  "per job (executor start, Python workers importing semcat and compiling the model), by wall "
                  "time and by the CPU seconds of the workers' processes (executors and Python workers: what "
                  "a dedicated core would take, whatever else shared this machine):\n\n"
                  "| cores | marginal img/s | img/s per core | fixed s per job | executor CPU s per image | "
                  "images per CPU-second | fixed CPU s per job |\n|---|---|---|---|---|---|---|\n"
                  + "\n".join(f"| {c} | {1 / per_image[c]:.1f} | {1 / per_image[c] / c:.1f} | {fixed[c]:.1f} | "
                               f"{cpu_per_image[c]:.4f} | {1 / cpu_per_image[c]:.1f} | {cpu_fixed[c]:.1f} |"
                               for c in cores))
    if len(ns) > 1:
        extra += _warm_fixed(results, spark_name, cores, small, big)
    extra += ("\n\nClassify output (Parquet, predictions without feature vectors): "
              + ", ".join(f"{out_bytes[n] / 1e6:.2f} MB for {n} images" for n in ns)
              + f" = **{out_bytes[big] / big * 1e5 / 1e6:.0f} MB per 100,000 images**.")
    for db, t in ingest_rows:
        n_ing = int(args.ingest)
        extra += (f"\n\nSpark ingest of {n_ing} images into {db}: Spark phase {t['spark']:.1f} s, the driver's "
                  f"catalogue writes (hash, metadata decode, rows, feature vectors) {t['catalogue']:.1f} s = "
                  f"**{n_ing / t['catalogue']:.0f} images/s from the driver** ({t['catalogue_cpu']:.1f} CPU s of "
                  f"the driver process = {n_ing / t['catalogue_cpu']:.0f} images per CPU-second"
                  f"{'; the database server works besides' if db != 'sqlite' else ''}); ingest output with feature "
                  f"vectors {t['bytes'] / 1e6:.1f} MB = **{t['bytes'] / n_ing * 1e5 / 1e9:.2f} GB per 100,000 "
                  "images**.")
    if len(ns) > 1 and master and not math.isnan(cpu[big, 1]):
        # per dedicated core: one worker's CPU seconds per image (with two, the difference drowns in
        # the JIT noise of two executor JVMs starting); fixed: its executor's start-up CPU
        extra += _capacity(cpu_per_image[1], cpu_fixed[1], ingest_rows, int(args.ingest), out_bytes[big] / big)
    if packed:
        extra += (f"\n\nPacked executor environment (`semcat spark pack-env`, venv-pack, gzip level 4): "
                  f"{packed['packages']} packages, **{packed['mb']:.0f} MB**, packed in {packed['pack_s']:.0f} s; "
                  f"a fresh session shipping it (`spark.archives`, `PYSPARK_PYTHON=./environment/bin/python`) "
                  f"classified {packed['ok']}/{packed['n']} images in {packed['job_s']:.1f} s (archive "
                  f"download and unpacking included), {packed['differ']} differing from the local engine.")
    extra += (f"\n\nLoad average (1 min) at the start: {load_before:.1f}, at the end: {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} logical CPUs (this run's own work counts in it: a load well above the CPU "
              "count means other jobs shared the machine and absolute rates are low); ratios come from the same run.")
    return f"""`semcat classify --engine spark` on {where}; synthetic {args.size}-px images, efficientnet_lite0,
feature cache off (every image decoded and run through the CNN). Times exclude Spark session
start-up (mean {sum(startups) / len(startups):.1f} s) but include loading the model in each executor
process (once per process, amortised at large N).

{chr(10).join(lines)}

Spark overhead vs. the local engine on {n0} images, {cmax} core{'s' * (cmax > 1)}: **{overhead:.2f}x**
the local engine's time. "independent processes" is the machine's own ceiling: {cmax} separate
one-thread processes each classifying 1/{cmax} of the images, Spark's speedup at {ns[-1]} images is
{spark_vs_ceiling:.0%} of it.{extra}

![speedup against cores](../../docs/img/{args.plot.name})
"""


def _warm_fixed(results: dict, spark_name: str, cores: list[int], small: int, big: int) -> str:
    """Fixed seconds per job from the two image counts, for a fresh session's first job and for
    later jobs of one session: what a session's start costs and what each further job costs."""
    rows = []
    for label, key in (("first job of a session", spark_name), ("later job, automatic tasks", f"{spark_name}, warm"),
                       ("later job, 4 tasks per core", f"{spark_name}, warm, 4 tasks/core")):
        t = results[key, small], results[key, big]
        cells = []
        for c in cores:
            per = (t[1][c] - t[0][c]) / (big - small)
            cells.append(f"{t[0][c] - small * per:.1f} s ({1 / per:.0f} img/s)")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return ("\n\nFixed cost per job by where the job runs, from the same two image counts (intercept, "
            "and the marginal rate in brackets): a fresh session's first job also starts the executors, "
            "the Python workers (importing semcat) and compiles the model; later jobs of one session "
            "reuse all three (`spark.python.worker.reuse`, the executor's model cache keyed on the model "
            "digest).\n\n| job | " + " | ".join(f"{c} core{'s' * (c > 1)}" for c in cores) + " |\n|---|"
            + "---|" * len(cores) + "\n" + "\n".join(rows))


def _capacity(core_s_per_image: float, fixed_s: float, ingest_rows: list, n_ingest: int,
              out_bytes_per_image: float) -> str:
    """The capacity table of docs/capacity.md: cores for an archive by a deadline, from this run's rates.

    Spark phase on C cores: ``fixed + N * core_s_per_image / C`` (linear in cores: an assumption
    beyond the cores measured here; the paper's Figure 7 and the 2-worker rows above test it). An ingest's catalogue writes follow it in one driver
    process, ``N / rate`` whatever C is, so they shrink the Spark phase's share of the deadline.
    """
    rates = {db: n_ingest / t["catalogue_cpu"] for db, t in ingest_rows}  # per CPU-second of the driver

    def cores(n: int, seconds: float) -> str:
        return str(math.ceil(n * core_s_per_image / seconds)) if seconds > 0 else "impossible"

    head = ["images", "deadline", "classify (Parquet out)", "Parquet",
            *(f"ingest into {db}: driver writes, cores" for db in rates)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in (150_000, 1_000_000):
        for hours in (1, 8, 24):
            budget = hours * 3600 - fixed_s
            cells = [f"{n / r / 3600:.1f} h, {cores(n, budget - n / r)}" for r in rates.values()]
            row = [f"{n:,}", f"{hours} h", f"{cores(n, budget)} cores", f"{n * out_bytes_per_image / 1e6:.0f} MB", *cells]
            lines.append("| " + " | ".join(row) + " |")
    return ("\n\nCapacity (docs/capacity.md): cores needed at one worker's marginal rate per CPU-second, "
            f"{1 / core_s_per_image:.1f} images/s per dedicated core, plus {fixed_s:.0f} s fixed per session; an ingest "
            "adds the driver's catalogue writes after the Spark phase at the driver's images per CPU-second above "
            "(a lower bound: waits for the disk and the PostgreSQL server's own work come on top; "
            "\"impossible\": the driver alone needs longer than the deadline).\n\n" + "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
