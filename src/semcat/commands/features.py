"""CLI commands: ``semcat backbones`` (registry table) and ``semcat features`` (extract + cache)."""
from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from semcat._validation import MAX_COUNT
from semcat.backbones import DEFAULT_BACKBONE
from semcat.commands._common import (
    PRECISION_HELP,
    BatchSummary,
    ChunkOpt,
    Engine,
    Precision,
    ScaleOpt,
    scale_note,
    SparkConfOpt,
    err_console,
    error,
    plain_console,
    spark_conf,
)
from semcat.engines.spark import DEFAULT_CHUNK
from semcat.errors import SemcatError
from semcat.features import DEFAULT_VIEW, VIEWS
from semcat.quantize import PRESET, RECIPES
from semcat.view_transforms import AUGMENTED_VIEWS


class RuntimeChoice(str, Enum):
    auto = "auto"
    torch = "torch"
    openvino = "openvino"


PresetChoice = Enum("PresetChoice", {p: p for p in RECIPES}, type=str)  # NNCF presets of semcat.quantize
# The views a user picks: semcat.features.VIEWS less the compare baseline and the training augmentations.
ViewChoice = Enum("ViewChoice", {v: v for v in VIEWS if v != "plain" and v not in AUGMENTED_VIEWS}, type=str)


def backbones(
    pattern: Annotated[str, typer.Argument(help="Shell pattern over backbone names, e.g. 'efficientnet*'.")] = "*",
    all_timm: Annotated[bool, typer.Option("--all-timm", help="Also list every timm architecture name (usable with --weights).")] = False,
) -> None:
    """List backbones: name, input size, feature width, weights source, runtimes.

    Examples:
      semcat backbones
      semcat backbones 'efficientnet*' --all-timm
    """
    from rich.table import Table

    from semcat.backbones import get_backbone, list_backbones

    names = list_backbones(pattern)
    if not names and not all_timm:
        error(f"no registered backbone matches {pattern!r}; try `semcat backbones --all-timm '{pattern}'`.")
        raise typer.Exit(code=1)
    table = Table("name", "input", "features", "weights", "runtimes", "licence")
    for name in names:
        try:
            s = get_backbone(name)
        except SemcatError:  # a timm backbone without the torch extra installed
            table.add_row(name, "", "", "needs pip install 'semcat[torch]'", "", "")
            continue
        table.add_row(name, f"{s.input_size}px", str(s.feature_dim), s.weights, ",".join(s.runtimes), s.licence)
    plain_console(width=None if sys.stdout.isatty() else 200).print(table)
    if all_timm:
        for name in sorted(set(list_backbones(pattern, include_timm=True)) - set(names)):
            typer.echo(name)


def features(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).", exists=True)],
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Registered backbone or any timm name (see `semcat backbones`).")] = DEFAULT_BACKBONE,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local checkpoint (safetensors or torch state dict) for the backbone.", exists=True, dir_okay=False)] = None,
    runtime: Annotated[RuntimeChoice, typer.Option("--runtime", help="Inference runtime; auto = OpenVINO fp32 on CPU, torch on CUDA.")] = RuntimeChoice.auto,
    view: Annotated[ViewChoice, typer.Option("--view", help="What is resized to the input: clean (default: the centre square, its background flattened and a 5x5 median), center (the centre square as it is), the whole image squashed, or full + 4 tiles averaged; clahe, histeq, tta4, tta2: the centre square equalised, or its 4 rotations (its mirror image) averaged.")] = ViewChoice(DEFAULT_VIEW),
    batch_size: Annotated[int, typer.Option("--batch-size", max=MAX_COUNT, min=1, help="Images per forward pass.")] = 32,
    no_crop_databar: Annotated[bool, typer.Option("--no-crop-databar", help="Keep the instrument data bar (default: crop it).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write features to this .npz (paths, sha256, features), or a Parquet folder with --engine spark.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Delete this backbone/preprocessing's cached features first (e.g. after a CacheError).")] = False,
    engine: Annotated[Engine, typer.Option("--engine", help="local (threads + one process) or spark.")] = Engine.local,
    master: Annotated[str, typer.Option("--master", help="Spark master URL with --engine spark.")] = "local[2]",
    workers: Annotated[Optional[int], typer.Option("--workers", max=MAX_COUNT, min=1, help="Decode threads (default: min(4, cores)).")] = None,
    precision: Annotated[Precision, typer.Option("--precision", help=PRECISION_HELP)] = Precision.auto,
    conf: SparkConfOpt = None,
    chunk_size: ChunkOpt = DEFAULT_CHUNK,
    scale: ScaleOpt = None,
) -> None:
    """Extract backbone features of images into the shared cache (resumable; Ctrl-C safe).

    Cached images are skipped before decoding; re-running computes only new images. Prints a JSON
    summary to stdout; per-file errors and the progress bar go to stderr; exit 1 if any file failed.

    Examples:
      semcat features data/
      semcat features data/ --view tiles5 --out features.npz
      semcat features data/ --scale 40 --out features.npz
    """
    from semcat._io import iter_image_files
    from semcat.errors import SemcatError
    from semcat.features import FeatureStore
    from semcat.featurespec import FeatureSpec
    from semcat.physical_scale import parse_scale, with_scale

    try:
        choice = "fp32" if runtime is RuntimeChoice.torch and precision is Precision.auto else precision.value  # int8 is OpenVINO's
        spec = FeatureSpec.resolve(backbone, weights=str(weights) if weights else None, view=view.value,
                                   crop_databar=not no_crop_databar, precision=choice, runtime=runtime.value)
        files = list(iter_image_files(inputs))
        spec, _ = with_scale(spec, parse_scale(scale), files)
        if engine is Engine.spark:
            if out is None:
                raise typer.BadParameter("--engine spark needs --out (a Parquet folder)", param_hint="--out")
            from semcat.engines import spark

            summary = spark.features(inputs, out, spec, master=master, chunk_size=chunk_size, progress=True,
                                     conf=spark_conf(conf))
            typer.echo(json.dumps(dataclasses.asdict(summary), default=str))
            return
        store = FeatureStore()
        if rebuild:
            for key in spec.keys:
                store.clear(key)
        res = spec.extract(files, batch_size=batch_size, store=store, progress=True, workers=workers)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished batches are saved in the feature cache; re-run to resume.")
        raise typer.Exit(code=130) from None
    except (SemcatError, ValueError) as e:
        error(e)
        raise typer.Exit(code=1) from None
    summary = BatchSummary(ok=len(res.paths))
    for path, problem in res.errors:
        summary.fail(path, problem)
    if out is not None:
        _write_npz(out, res)
    typer.echo(json.dumps({"key": spec.key, "precision": spec.precision, "images": len(res.paths), "computed": res.computed,
                           "cached": res.cached, "failed": len(res.errors), "dim": int(res.features.shape[1]),
                           "scale_nm": spec.scale_nm, "unscaled": len(res.unscaled), "out": str(out) if out else None}))
    scale_note(spec.scale_nm, len(res.unscaled), len(res.paths))
    summary.print()
    summary.exit()


def _write_npz(out: Path, res) -> None:
    import numpy as np

    from semcat._io import atomic_write

    with atomic_write(out) as f:
        np.savez(f, paths=np.array([str(p) for p in res.paths]), sha256=np.array(res.hashes),
                 features=res.features, key=np.array(res.key))


def quantize(
    calibration: Annotated[Optional[list[Path]], typer.Option("--calibration", exists=True, help="Your own images (files or folders; up to --max-user of them, evenly spaced) added to the synthetic calibration set. Repeatable.")] = None,
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Registered backbone or any timm name (see `semcat backbones`).")] = DEFAULT_BACKBONE,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local checkpoint (safetensors or torch state dict) for the backbone.", exists=True, dir_okay=False)] = None,
    synthetic: Annotated[int, typer.Option("--synthetic", min=0, help="Synthetic SEM calibration images (all ten categories).")] = 300,
    max_user: Annotated[int, typer.Option("--max-user", min=0, help="At most this many of the --calibration images.")] = 300,
    preset: Annotated[PresetChoice, typer.Option("--preset", help="NNCF preset: performance (symmetric activations, faster) or mixed (asymmetric activations, the first recipe).")] = PresetChoice[PRESET],
    fp32_depthwise: Annotated[bool, typer.Option("--fp32-depthwise", help="Keep depthwise convolutions in fp32 (closer to fp32 features, slower).")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Quantise again even when the inputs are unchanged.")] = False,
) -> None:
    """Build the int8 (NNCF post-training) model of a backbone and measure its drift from fp32.

    Runs offline, once per machine; the int8 model is cached beside the fp32 one and rebuilt only
    when its inputs change. Prints its record (calibration, feature cosine to fp32 on held-out
    synthetic images) as JSON. Example: `semcat quantize --calibration /data/sem-archive`, then
    `semcat train DATA_DIR --precision int8`. Unreadable calibration files are named and skipped.
    """
    from semcat._sysinfo import has_int8_acceleration
    from semcat.backbones import get_backbone
    from semcat.errors import SemcatError
    from semcat.quantize import parity_ok, quantize_backbone

    try:
        spec = get_backbone(backbone, weights=str(weights) if weights else None)
        err_console.print(f"int8 model of {spec.name} (calibration: {synthetic} synthetic"
                          f"{' + your images' if calibration else ''}): re-used if its inputs are unchanged, "
                          "else built (a few minutes)", markup=False)
        res = quantize_backbone(spec, calibration, n_synthetic=synthetic, max_user=max_user,
                                preset=preset.value, fp32_depthwise=fp32_depthwise, rebuild=rebuild)
    except SemcatError as e:
        err_console.print(f"error: {e}", markup=False)
        raise typer.Exit(code=1) from None
    summary = BatchSummary(ok=res.info["calibration"]["user"])
    for path, problem in res.errors:
        summary.fail(path, problem)
    typer.echo(json.dumps({"path": str(res.path), "built": res.built, **res.info}))
    use = "used by --precision auto" if parity_ok(res.info) and has_int8_acceleration() else (
        "not used by --precision auto (" + ("parity not met" if not parity_ok(res.info) else "this CPU lacks VNNI/AMX") + ")")
    err_console.print(f"int8 feature cosine to fp32: min {res.info['cosine_min']:.4f}, median "
                      f"{res.info['cosine_median']:.4f}; {use}", markup=False)
    if calibration:
        summary.print("calibration images")
    summary.exit()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("backbones")(backbones)
    app.command("features")(features)
    app.command("quantize")(quantize)
