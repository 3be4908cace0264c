"""Feature extraction throughput: files → features, semcat default vs the paper's setup.

Usage: ``python benchmarks/features.py --n 2000`` (writes ``benchmarks/results/features.md``).

Images: ``n`` synthetic 1024x768 8-bit TIFF SEM images (``semcat.synth``), decoded from disk.
Measured in the same run, end to end (decode + preprocess + inference), no feature cache:

- semcat default: ``extract_features`` with ``efficientnet_lite0`` and ``runtime="auto"``;
- Lite0 runtime variants: torch eager (no channels_last), torch channels_last, OpenVINO fp32;
- the paper's setup (baseline): timm ``inception_v3`` (random weights; speed does not depend on
  them) at 299 px, plain eager fp32 PyTorch, no channels_last, PIL decode, one image at a time
  through preprocessing, batches of 32 through the model;
- the paper's exact framework: TensorFlow Keras InceptionV3 at 299 px (``keras_baseline.py``),
  run by ``--tf-python`` (default ``$SEMCAT_TF_PYTHON``, else this Python) when that Python has
  ``tensorflow-cpu``; TensorFlow and torch want different numpy versions, so a separate venv is
  the usual way: ``python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu pillow``;
- peak RSS of a separate process extracting ``--rss-n`` (default 2,000) files, with the OpenVINO
  IR already converted (conversion is once per machine and needs torch; it adds ~300 MiB).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import header, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "features.md"


def make_images(root: Path, n: int) -> list[Path]:
    """``n`` synthetic 1024x768 TIFFs under ``root`` (written once: a kept ``--images`` folder is reused)."""
    from semcat import CATEGORIES
    from semcat.synth import write_dataset

    if len(list(root.rglob("*.tif"))) < n:
        write_dataset(root, per_class=-(-n // len(CATEGORIES)), shape=(768, 1024), seed=0, fmt="tif")
    return sorted(root.rglob("*.tif"))[:n]


def semcat_rate(files: list[Path], runtime) -> float:
    from semcat.features import extract_features

    extract_features(files[:8], runtime=runtime, store=None, progress=False)  # warm-up
    t = time.perf_counter()
    res = extract_features(files, runtime=runtime, store=None, progress=False, batch_size=32)
    dt_s = time.perf_counter() - t
    assert len(res.paths) == len(files), res.errors[:3]
    return len(files) / dt_s


def baseline_rate(files: list[Path]) -> float:
    """Inception-v3 at 299 px, eager fp32, NCHW, PIL decode + bicubic resize."""
    import timm
    import torch
    from PIL import Image

    torch.set_num_threads(os.cpu_count() or 1)
    model = timm.create_model("inception_v3", pretrained=False, num_classes=0).eval()

    def load(p: Path) -> np.ndarray:
        img = Image.open(p).convert("L").resize((299, 299), Image.BICUBIC).convert("RGB")
        return ((np.asarray(img, np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)

    with torch.no_grad():
        model(torch.zeros(2, 3, 299, 299))
        t = time.perf_counter()
        for i in range(0, len(files), 32):
            model(torch.from_numpy(np.stack([load(p) for p in files[i: i + 32]])))
    return len(files) / (time.perf_counter() - t)


def keras_rate(files: list[Path], python: str, tmp: Path) -> tuple[float, str] | None:
    """(images/s, TensorFlow version) of the Keras baseline, or None when ``python`` lacks TensorFlow."""
    listing = tmp / "keras_files.txt"
    listing.write_text("\n".join(map(str, files)), encoding="utf-8")
    script = Path(__file__).with_name("keras_baseline.py")
    run = subprocess.run([python, str(script), str(listing)], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"Keras baseline skipped ({python}): {run.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    out = json.loads(run.stdout.strip().splitlines()[-1])
    return out["images_per_s"], out["tensorflow"]


def rss_child(folder: str) -> None:
    from semcat.features import iter_features

    n = 0  # the links by name: a folder's links to files outside it are not followed (semcat._io.iter_image_files)
    for chunk in iter_features(sorted(Path(folder).iterdir()), store=None, progress=False):
        n += len(chunk.paths)
    print(n, _peak_rss_mib())


def _peak_rss_mib() -> int:
    """This process's peak RSS. Linux: VmHWM, which starts afresh at exec; ``ru_maxrss`` would
    carry over the parent's peak from before the fork (this benchmark's parent holds ~2 GiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def peak_rss(files: list[Path], count: int, tmp: Path) -> tuple[int, int]:
    """Extract ``count`` files (symlinks cycling over the images) in a fresh process: (n, MiB)."""
    links = tmp / "rss"
    links.mkdir()
    for i in range(count):
        (links / f"img{i:06d}.tif").symlink_to(files[i % len(files)])
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(links)], check=True,
                         capture_output=True, text=True).stdout.split()
    if int(out[0]) != count:
        raise SystemExit(f"peak RSS run extracted {out[0]} of {count} files")
    return int(out[0]), int(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images for the semcat runs")
    ap.add_argument("--n-baseline", type=int, default=128, help="images for the slow baseline and variants")
    ap.add_argument("--rss-n", type=int, default=2000, help="files in the peak-RSS run")
    ap.add_argument("--tf-python", default=os.environ.get("SEMCAT_TF_PYTHON", sys.executable),
                    help="a Python with tensorflow-cpu for the Keras baseline (skipped without it)")
    ap.add_argument("--images", type=Path, help="keep the generated TIFFs here and reuse them (default: temp)")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return

    from semcat.backbones import get_backbone
    from semcat.runtime import OpenVINORuntime, TorchRuntime, load_runtime

    spec = get_backbone("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_images(args.images or Path(tmp) / "imgs", args.n)
        sub = files[: min(args.n_baseline, len(files))]
        auto = load_runtime(spec, "auto")
        rows = [("semcat default (efficientnet_lite0, auto → " + auto.name + ")", len(files), semcat_rate(files, auto))]
        for label, rt in (("Lite0 torch eager (NCHW)", TorchRuntime(spec, device="cpu", channels_last=False)),
                          ("Lite0 torch channels_last", TorchRuntime(spec, device="cpu")),
                          ("Lite0 OpenVINO fp32", OpenVINORuntime(spec))):
            rows.append((label, len(sub), semcat_rate(sub, rt)))
        base = baseline_rate(sub)
        rows.append(("paper setup: inception_v3 299px eager fp32, PIL", len(sub), base))
        keras = keras_rate(sub, args.tf_python, Path(tmp))
        if keras is not None:
            rows.append((f"paper's framework: TensorFlow {keras[1]} Keras InceptionV3 299px, PIL", len(sub), keras[0]))
        n_rss, rss = peak_rss(files, args.rss_n, Path(tmp))

    lines = header("Feature extraction benchmark") + [
        "- images: synthetic 1024x768 8-bit TIFF SEM images (semcat.synth), end to end files → features, no cache",
        "", "| setup | images | images/s | vs paper setup |", "|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {n} | {rate:.1f} | {rate / base:.1f}x |" for label, n, rate in rows]
    if keras is not None:
        lines += ["", f"semcat default vs the Keras InceptionV3 baseline: {rows[0][2] / keras[0]:.1f}x."]
    lines += ["", f"Peak RSS extracting {n_rss} files in a fresh process (semcat default): {rss} MiB.",
              "", "Targets (quiet 2-core machine): ≥ 200 images/s and ≥ 5x the paper setup; peak RSS < 2 GB."]
    write_results(RESULTS, lines)


if __name__ == "__main__":
    main()
