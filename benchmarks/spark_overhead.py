"""Where a Spark job's fixed time goes: timestamps from the driver and from inside the Python workers.

A standalone cluster of one-core workers on loopback (the README's commands); one session runs
three `classify` jobs on the same images: the session's first job, then two more with executors,
Python workers and the compiled model already up (automatic tasks per chunk, then the former
4 tasks per core). A traced copy of the engine's executor function logs, per task, when its Python
worker process started, when the task reached it, how long loading and compiling the model took
(the first task of a process only) and when its rows were done. Writes
``benchmarks/results/spark_overhead.md``.

    python benchmarks/spark_overhead.py --n 200 --workers 1
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import header, write_results
from spark_scaling import make_images, train_model


def traced(log: Path):
    """Wrap ``semcat.engines.spark._classify_batches`` so each task appends its timestamps to ``log``."""
    from semcat.engines import spark as engine

    original = engine._classify_batches

    def wrapper(model_path, model_id, *args, **kwargs):
        inner = original(model_path, model_id, *args, **kwargs)

        def run(batches):
            import os
            import time

            enter = time.time()
            stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            uptime = float(Path("/proc/uptime").read_text().split()[0])
            started = time.time() - uptime + float(stat[19]) / os.sysconf("SC_CLK_TCK")
            t0 = time.time()
            cold = model_id not in engine._MODELS
            engine._cached_model(model_path, model_id)  # what the task would do first; cached after
            loaded = time.time() - t0
            yield from inner(batches)
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()} {started:.3f} {enter:.3f} {loaded if cold else 0.0:.3f} {time.time():.3f}\n")

        return run

    engine._classify_batches = wrapper


def job_rows(log: Path, start: float, end: float) -> list[tuple[int, float, float, float, float]]:
    rows = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return sorted((int(r[0]), *map(float, r[1:])) for r in rows if start <= float(r[2]) <= end)


def breakdown(rows, start: float, end: float) -> dict[str, float]:
    """Seconds of a job by phase (tasks run one after another on a one-core worker)."""
    rows = sorted(rows, key=lambda r: r[2])
    first_process = min(r[1] for r in rows)
    new_process = first_process >= start
    load = sum(r[3] for r in rows)
    compute = sum(r[4] - r[2] for r in rows) - load
    gaps = sum(b[2] - a[4] for a, b in pairwise(rows))
    return {"tasks": len(rows),
            "to the first Python worker": (first_process - start) if new_process else 0.0,
            "to the first task in Python (imports, unpickling)": rows[0][2] - max(start, first_process),
            "model load + compile": load, "images (in tasks)": compute, "between tasks": gaps,
            "after the last task (commit, counts)": end - rows[-1][4], "total": end - start}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="images per job")
    ap.add_argument("--workers", type=int, default=1, help="one-core workers (spark.cores.max)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep generated images here (default: temp)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "spark_overhead.md")
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)
    os.environ.setdefault("SEMCAT_HOME", str(work / "home"))
    paths = make_images(work / "images", args.n, 256)[:args.n]
    model_path = work / "model.semcat"
    if not model_path.exists():
        train_model(paths[::max(1, len(paths) // 100)], model_path)
    log = work / "tasks.log"
    log.unlink(missing_ok=True)
    traced(log)
    from semcat.engines import spark as engine
    from semcat.engines.standalone import StandaloneCluster

    load_before = os.getloadavg()[0]
    cluster = StandaloneCluster(work / "cluster").start()
    jobs = []
    try:
        cluster.add_workers(args.workers, cores=1, memory="1g")
        t0 = time.time()
        spark = engine.spark_session(cluster.url, app_name="semcat-overhead", conf={"spark.cores.max": str(args.workers)})
        session_s = time.time() - t0
        try:
            for name, parts in (("first job of the session", None), ("later job, automatic tasks", None),
                                ("later job, 4 tasks per core", 4 * spark.sparkContext.defaultParallelism)):
                out = work / f"out-{len(jobs)}"
                shutil.rmtree(out, ignore_errors=True)
                start = time.time()
                summary = engine.classify(model_path, paths, out=out, spark=spark, progress=False, partitions=parts)
                end = time.time()
                assert summary.ok == len(paths), summary
                jobs.append((name, breakdown(job_rows(log, start, end), start, end)))
        finally:
            spark.stop()
    finally:
        cluster.stop()
    phases = list(jobs[0][1])
    table = ["| phase | " + " | ".join(n for n, _ in jobs) + " |", "|---|" + "---|" * len(jobs)]
    for p in phases:
        table.append(f"| {p} | " + " | ".join(f"{b[p]:.0f}" if p == "tasks" else f"{b[p]:.1f} s" for _, b in jobs) + " |")
    text = f"""`semcat classify --engine spark` of {args.n} synthetic 256-px images on a loopback standalone cluster of
{args.workers} one-core worker(s), three jobs in one session (session start-up {session_s:.1f} s, not
counted). Phases from timestamps taken inside the Python workers (process start from /proc, task
start, model load, task end) and on the driver (job start and end):

{chr(10).join(table)}

"to the first Python worker": the executor JVM launching and registering, the job's first task
reaching it and pyspark's daemon forking the worker. "between tasks": from one task's last rows to
the next task's start on the same core (writing and committing the task's part file, scheduling,
handing the next batch over). Later jobs reuse the executors, the Python workers
(`spark.python.worker.reuse`) and the compiled model (the executor's cache keyed on the model digest).

Load average (1 min) at the start: {load_before:.1f}, at the end: {os.getloadavg()[0]:.1f} on
{os.cpu_count()} logical CPUs: absolute seconds are those of this machine at that time; compare
the jobs' rows with one another.
"""
    write_results(args.out, header("Where a Spark job's fixed time goes") + ["", *text.rstrip("\n").split("\n")])
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
