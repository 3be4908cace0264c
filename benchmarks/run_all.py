"""Run every benchmark, then assemble BENCHMARKS.md from ``benchmarks/results/*.md``.

``make bench-full`` (``--full``) runs each results file's command at the size its committed
figures come from (``FULL``: one argument list per results file, default: the script's own
defaults); ``make bench`` runs each benchmark once at a quick size (``QUICK``) to check it still
works and to get a first picture of a machine: it rewrites the same results files, whose headers
then name the small arguments (don't commit those over the full ones). Benchmarks run one at a
time, so they do not compete for the cores. ``--only features,catalog`` runs a subset;
``--assemble`` only rebuilds BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import subprocess
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["decode", "decode_stages", "tiff_codecs", "databar", "data", "features", "int8", "int8_speed", "int8_pipeline", "int8_recipes", "head", "views", "cross_instrument",
         "ood", "calibration_small", "unknown_threshold", "catalog", "spark_scaling", "spark_cluster", "spark_overhead", "alignment",
         "duplicates", "active_learning", "map", "web_load", "lean_install", "tiles"]

RESULTS_NAME = {"spark_scaling": "spark"}
"""A benchmark whose results file is not named after it; variants add ``-<suffix>`` to the name."""

_PROTOCOLS_0_2 = ["--jobs", "2", *(a for d in range(3) for p in ("groups", "within") for a in ("--only", f"{d}:{p}"))]
"""cross_instrument on draws 0-2, leave one out and within only (the batch protocols change no method here)."""
_CLEAN_METHODS = ("semcat,semcat@center,plain," + ",".join(
    f"semcat+x-{n}" for n in ("median3", "median5", "destripe", "rdestripe", "flatten", "nlm", "gauss-adapt", "gammanorm",
                              "bilateral", "destripe+median5", "rdestripe+median5", "flatten+median5")))
"""Issue 20's clean-up round: the default (``clean``), the centre crop before it, and the rejected candidates."""
_CALIBRATION = ["--data", "/tmp/calsmall17/data", "--draws", "3", "--seed", "71"]
FULL: dict[str, list[list[str]]] = {
    # benchmark → one argument list per results file it writes (the figures quoted in the docs)
    "ood": [[], ["100"],
            ["300", "--eval-per-class", "50", "--seed", "101"], ["300", "--eval-per-class", "50", "--seed", "301"],
            ["500", "--eval-per-class", "50"], ["500", "--eval-per-class", "50", "--seed", "201"]],
    "calibration_small": [[*_CALIBRATION[:2], "--sizes", "20,50,200", *_CALIBRATION[2:], "--out", "calibration_small-3draws.md"],
                          [*_CALIBRATION[:2], "--sizes", "20,50", *_CALIBRATION[2:], "--view", "full",
                           "--out", "calibration_small-views-full.md"],
                          [*_CALIBRATION[:2], "--sizes", "20,50", *_CALIBRATION[2:], "--backbone", "efficientnet_lite1",
                           "--out", "calibration_small-lite1.md"],
                          [*_CALIBRATION[:2], "--sizes", "50", *_CALIBRATION[2:], "--out", "calibration_small-equal-50.md"]],
    "unknown_threshold": [_CALIBRATION[:2]],
    "spark_cluster": [["--n", "200,800", "--ingest", "400", "--pack-env", "100"],
                      ["--n", "200,800", "--out", "spark_cluster-quiet.md", "--plot", "spark_cluster_scaling-quiet.png"]],
    "cross_instrument": [["--jobs", "6"],
                         ["--jobs", "6", "--methods", "semcat,semcat+tta4,semcat+scale,semcat+scale/test-nopx,"
                          "semcat+scale+tta4,semcat+scale+tta4/test-nopx",
                          "--out", "cross_instrument-nopx.md"],
                         ["--jobs", "3", "--methods", "semcat,plain,semcat+tta2,semcat+scale,semcat+scale+tta2,"
                          "semcat+scale-mix,semcat+scale-mix/test-nopx,semcat+scale-mix-jitter,"
                          "semcat+scale-mix-jitter/test-nopx,semcat+scale-mix+tta2,semcat+scale-mix+tta2/test-nopx,"
                          "semcat+scale-mix+aug-flip,semcat+scale-mix+aug-flip/test-nopx,semcat+scale+aug-fliprot,"
                          "semcat+scale-mix+aug-fliprot,semcat+scale-mix+aug-fliprot/test-nopx",
                          "--out", "cross_instrument-mix.md"],
                         ["--jobs", "3", "--size-spread", "4", "--methods", "semcat,plain,semcat+scale,semcat+scale-mix,"
                          "semcat+scale-mix-jitter,semcat+scale-mix+tta2,semcat+scale-mix+aug-flip,"
                          "semcat+scale+aug-fliprot,semcat+scale-mix+aug-fliprot",
                          "--out", "cross_instrument-spread.md"],
                         ["--jobs", "6", "--methods", "semcat,plain,semcat+ft,semcat+ft2,semcat+ft-60s",
                          "--out", "cross_instrument-ft.md"],
                         [*_PROTOCOLS_0_2, "--methods", "semcat,plain,semcat+scale-mix+aug-fliprot,semcat+scale-mix+aug-d4,"
                          "semcat+scale-mix+aug-d4+cv,semcat+scale-mix+aug-d4-wd0.1,semcat+scale-mix+aug-fliprot+cv,"
                          "semcat+scale-mix+aug-d4+gamma,semcat+scale-mix+aug-fliprot+gamma,"
                          "semcat+scale-mix+aug-fliprot+invert,semcat+scale-mix+aug-fliprot+noise,"
                          "semcat+scale-mix+aug-d4+sem,semcat+scale-mix+aug-d4/test-nopx,"
                          "semcat+scale-mix+aug-d4-wd0.1/test-nopx,semcat+scale-mix+aug-d4+gamma/test-nopx",
                          "--out", "cross_instrument-aug.md"],
                         ["--seed", "100", *_PROTOCOLS_0_2, "--methods", "semcat,plain,semcat+scale-mix+aug-fliprot,"
                          "semcat+scale-mix+aug-d4,semcat+scale-mix+aug-d4-wd0.1,semcat+scale-mix+aug-fliprot/test-nopx,"
                          "semcat+scale-mix+aug-d4/test-nopx,semcat+scale-mix+aug-d4-wd0.1/test-nopx",
                          "--out", "cross_instrument-confirm.md"],
                         ["--backbone", "efficientnet_lite2", "--methods", "semcat,plain", "--jobs", "1",
                          "--out", "cross_instrument-lite2.md"],
                         ["--seed", "100", "--backbone", "efficientnet_lite2", "--methods", "semcat,plain", "--jobs", "1",
                          "--out", "cross_instrument-lite2-confirm.md"],
                         ["--seed", "100", "--size-spread", "4", "--jobs", "1", *_PROTOCOLS_0_2[2:], "--methods",
                          "semcat,plain,semcat+scale-mix+aug-fliprot,semcat+scale-mix+aug-d4",
                          "--out", "cross_instrument-confirm-spread.md"],
                         ["--jobs", "2", *(a for d in range(3) for a in ("--only", f"{d}:groups")),
                          "--methods", "semcat,plain,semcat+ft-120s", "--out", "cross_instrument-ft120.md"],
                         ["--jobs", "2", *(a for d in range(3) for a in ("--only", f"{d}:groups")), "--methods",
                          "semcat,plain,semcat+scale-mix+aug-fliprot,semcat+scale-mix+aug-fliprot+ft-60s",
                          "--out", "cross_instrument-ft-mix.md"],
                         [*_PROTOCOLS_0_2, "--methods", _CLEAN_METHODS, "--out", "cross_instrument-clean.md"],
                         ["--seed", "100", *_PROTOCOLS_0_2, "--methods", _CLEAN_METHODS, "--out", "cross_instrument-clean-confirm.md"],
                         ["--seed", "200", *_PROTOCOLS_0_2, "--methods", "semcat,semcat@center,plain",
                          "--out", "cross_instrument-clean-fresh.md"],
                         ["--size-spread", "4", *_PROTOCOLS_0_2, "--methods", "semcat,semcat@center,plain,semcat+x-median5,"
                          "semcat+x-destripe+median5", "--out", "cross_instrument-clean-spread.md"]],
    "data": [["--size", "256", "--n", "2", "--files", "200"]],
    "web_load": [["--clients", "50", "--seconds", "10", "--backends", "sqlite,postgresql", "--workers", "1,2",
                  "--rounds", "2"],
                 ["--clients", "50", "--seconds", "10", "--backends", "sqlite,postgresql", "--rounds", "2",
                  "--baseline", "e166605", "--baseline-label", "e166605", "--out", "web_load-vs-e166605.md"],
                 ["--clients", "50", "--seconds", "10", "--backends", "sqlite,postgresql", "--rounds", "3",
                  "--baseline", "0556e14", "--baseline-label", "0556e14 (pre-ping, BEGIN/ROLLBACK per read)",
                  "--out", "web_load-pg.md"],
                 ["--clients", "1", "--seconds", "8", "--backends", "sqlite,postgresql", "--rounds", "3",
                  "--baseline", "0556e14", "--baseline-label", "0556e14 (pre-ping, BEGIN/ROLLBACK per read)",
                  "--out", "web_load-pg-1client.md"],
                 ["--clients", "50", "--seconds", "10", "--backends", "sqlite,postgresql", "--rounds", "3",
                  "--baseline", "09dfc9e", "--baseline-label", "09dfc9e (8-14 statements per page)",
                  "--out", "web_load-vs-09dfc9e.md"],
                 ["--clients", "1", "--seconds", "8", "--backends", "sqlite,postgresql", "--rounds", "3",
                  "--baseline", "d679044", "--baseline-label", "d679044 (09dfc9e + the statement counter)",
                  "--out", "web_load-statements.md"]],
    "lean_install": [["--work", "/tmp/semcat-install"]],
    "int8": [["--per-class", "60", "--test-per-class", "80", "--unseen-per-style", "160", "--draws", "3", "--speed-n",
              "384", "--rounds", "3", "--n-baseline", "16", "--images", "/tmp/int8-parity"]],  # larger sets than int8_recipes'
    "int8_recipes": [["--images", "/tmp/wt27e/full"]],  # --images keeps the generated images
    "int8_speed": [[], ["--isa-cap", "AVX2"]],  # the second writes int8_speed-avx2.md
    "int8_pipeline": [[]],  # its defaults: 384 images, 5 before/after rounds against c3bc0b1
    "tiles": [["--side", "8192"]],
    "spark_overhead": [["--n", "120", "--workers", "1"]],
    "map": [["--points", "100000", "--hovers", "300", "--lassos", "20", "--tsne-points", "1000"]],
    "duplicates": [["--fields", "60", "--size", "256", "--seeds", "0,1,2"]],
    "active_learning": [["--per-class", "60", "--size", "224", "--seeds", "0,1,2", "--data-seed", "11", "--start", "10",
                         "--batch", "10"]],
    "tiff_codecs": [["--n", "20", "--e2e-n", "200", "--rounds", "3"]],
}
QUICK: dict[str, list[str]] = {
    # benchmark → arguments for a run of a minute or two on 2 cores (features cached where a script keeps them)
    "decode": ["40"], "tiff_codecs": ["--n", "5", "--e2e-n", "40", "--rounds", "1"],
    "databar": ["--sizes", "480x640", "--repeats", "1", "--bar-free", "2"],
    "data": ["--size", "256", "--n", "2", "--files", "200"],
    "features": ["--n", "200", "--n-baseline", "16", "--rss-n", "200"],
    "int8": ["--per-class", "10", "--test-per-class", "5", "--unseen-per-style", "10", "--draws", "2", "--speed-n", "32",
             "--rounds", "1", "--n-baseline", "4"],
    "decode_stages": ["--n", "16", "--rounds", "3"], "int8_speed": ["--speed-n", "32", "--rounds", "1", "--n-baseline", "4"],
    "int8_pipeline": ["--n", "32", "--rounds", "1", "--layout-rounds", "1"],
    "int8_recipes": ["--per-class", "6", "--test-per-class", "4", "--n-net", "32", "--rounds", "1"],
    "head": ["4000", "--rounds", "1"], "views": ["10", "--size", "160", "--runs", "2"],
    "cross_instrument": ["--instruments", "3", "--per-class", "5", "--draws", "1"],
    "ood": [], "calibration_small": ["--sizes", "20", "--draws", "1", "--test-per-class", "20"],
    "unknown_threshold": ["--sizes", "20", "--draws", "1", "--test-per-class", "20", "--logo-sizes", ""],
    "catalog": ["20000", "--vectors", "20000", "--ingest", "100", "--reps", "10"],
    "spark_scaling": ["--n", "200", "--cores", "1,2"], "spark_cluster": ["--n", "100,200"],
    "spark_overhead": ["--n", "100"],
    "alignment": ["--n", "30", "--train", "8"], "duplicates": ["--fields", "10", "--seeds", "0"],
    "active_learning": ["--per-class", "20", "--seeds", "0"],
    "map": ["--points", "10000", "--hovers", "50", "--lassos", "5", "--tsne-points", "500"],
    "web_load": ["--clients", "10", "--seconds", "3", "--backends", "sqlite"],
    "lean_install": [],
    "tiles": ["--side", "2048"],
}


def runs(names: list[str], full: bool) -> list[tuple[str, list[str]]]:
    """(benchmark, arguments) for every run, in order: all of ``FULL``'s or one ``QUICK`` run each."""
    return [(n, a) for n in names for a in (FULL.get(n, [[]]) if full else [QUICK[n]])]


def benchmark_of(results_name: str) -> str | None:
    """The benchmark in ``ORDER`` that writes ``results/<results_name>.md`` (None: none does)."""
    for b in ORDER:
        stem = RESULTS_NAME.get(b, b)
        if results_name == stem or results_name.startswith(stem + "-"):
            return b
    return None


def benchmarks_md() -> str:
    """BENCHMARKS.md's text: a short header + every results file, in pipeline order."""
    parts = ["# semcat benchmarks\n\nGenerated by `python benchmarks/run_all.py` from "
             "`benchmarks/results/*.md` (`make bench-full` reruns them all at these sizes). Each section names "
             "its script and arguments, commit, machine and date; ratios compare against a baseline measured "
             "in the same run, because these machines are noisy.\n"]
    results = HERE / "results"
    names = sorted(p.stem for p in results.glob("*.md"))
    names.sort(key=lambda n: ORDER.index(b) if (b := benchmark_of(n)) else len(ORDER))
    for n in names:
        if benchmark_of(n) == "cross_instrument" and n == next(m for m in names if benchmark_of(m) == "cross_instrument"):
            parts.append(cross_instrument_index([results / f"{m}.md" for m in names if benchmark_of(m) == "cross_instrument"]))
        parts.append((results / f"{n}.md").read_text(encoding="utf-8").strip() + "\n")
    return "\n".join(parts)


def cross_instrument_index(files: list[Path]) -> str:
    """Issue 20's one table: every method of every cross_instrument results file, both protocols,
    copied from those files (each row names its file, whose section below has the run's header)."""
    rows = []
    for f in files:
        lines = f.read_text(encoding="utf-8").splitlines()
        script = next((x for x in lines if x.startswith("- script:")), "")
        commit = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("- commit:")), "?")
        seed = re.search(r"--seed (\d+)", script)
        spread = re.search(r"--size-spread (\S+)", script)
        backbone = re.search(r"--backbone (\S+)", script)
        data = ", ".join(x for x in (f"seeds {int(seed.group(1)) if seed else 0}-{int(seed.group(1)) + 2 if seed else 2}",
                                     f"size spread {spread.group(1)}" if spread else "",
                                     backbone.group(1) if backbone else "") if x)
        start = next((i for i, x in enumerate(lines) if x.startswith("| method | leave one instrument out")), None)
        for x in lines[start + 2:] if start is not None else []:
            if not x.startswith("| "):
                break
            cells = [c.strip() for c in x.strip("|").split("|")]
            rows.append(f"| {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {data} | `{f.name}` at {commit} |")
    return "\n".join([
        "# Cross-instrument: every method tried (issue 20)", "",
        "One row per method and run, copied from the `cross_instrument*` results files below (mean ± std over 3 "
        "draws of 4 synthetic instruments x 10 categories x 15 images; each file's section says what its methods "
        "are). `semcat` is the default at the run's commit: the centre crop until the `clean` view (commit "
        "72b420f), `clean` since; `semcat@center` is the centre crop after it.", "",
        "| method | leave one instrument out, pooled (%) | held-out style alone (%) | within instrument (%) "
        "| draws | results file |", "|---|---|---|---|---|---|", *rows, ""])


def assemble() -> Path:
    """Rewrite BENCHMARKS.md from the results files."""
    from semcat._io import atomic_write_text

    out = HERE.parent / "BENCHMARKS.md"
    atomic_write_text(out, benchmarks_md())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--full", action="store_true", help="the committed figures' sizes (default: quick sizes)")
    ap.add_argument("--assemble", action="store_true", help="only rebuild BENCHMARKS.md")
    args = ap.parse_args()
    failed = []
    if not args.assemble:
        for name, argv in runs(args.only.split(",") if args.only else ORDER, args.full):
            print(f"== benchmarks/{name}.py {' '.join(argv)}", flush=True)
            if subprocess.call([sys.executable, str(HERE / f"{name}.py"), *argv]) != 0:
                failed.append(name)
    print(f"wrote {assemble()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
