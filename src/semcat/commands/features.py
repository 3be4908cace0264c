"""CLI commands: ``semcat backbones`` (registry table) and ``semcat features`` (extract + cache)."""
from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from semcat.commands._common import BatchSummary, ChunkOpt, Engine, SparkConfOpt, err_console, spark_conf
from semcat.engines.spark import DEFAULT_CHUNK


class RuntimeChoice(str, Enum):
    auto = "auto"
    torch = "torch"
    openvino = "openvino"


class ViewChoice(str, Enum):
    full = "full"
    center = "center"
    tiles5 = "tiles5"


def backbones(
    pattern: Annotated[str, typer.Argument(help="Shell pattern over backbone names, e.g. 'efficientnet*'.")] = "*",
    all_timm: Annotated[bool, typer.Option("--all-timm", help="Also list every timm architecture name (usable with --weights).")] = False,
) -> None:
    """List backbones: name, input size, feature width, weights source, runtimes."""
    from rich.console import Console
    from rich.table import Table

    from semcat.backbones import get_backbone, list_backbones

    names = list_backbones(pattern)
    if not names and not all_timm:
        err_console.print(f"error: no registered backbone matches {pattern!r}; try `semcat backbones --all-timm '{pattern}'`.")
        raise typer.Exit(code=1)
    table = Table("name", "input", "features", "weights", "runtimes", "licence")
    for name in names:
        s = get_backbone(name)
        table.add_row(name, f"{s.input_size}px", str(s.feature_dim), s.weights, ",".join(s.runtimes), s.licence)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    if all_timm:
        for name in sorted(set(list_backbones(pattern, include_timm=True)) - set(names)):
            typer.echo(name)


def features(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).", exists=True)],
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Registered backbone or any timm name (see `semcat backbones`).")] = "efficientnet_lite0",
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local checkpoint (safetensors or torch state dict) for the backbone.", exists=True, dir_okay=False)] = None,
    runtime: Annotated[RuntimeChoice, typer.Option("--runtime", help="Inference runtime; auto = OpenVINO fp32 on CPU, torch on CUDA.")] = RuntimeChoice.auto,
    view: Annotated[ViewChoice, typer.Option("--view", help="What is resized to the input: whole image squashed, centre square, or full + 4 tiles averaged.")] = ViewChoice.center,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 32,
    no_crop_databar: Annotated[bool, typer.Option("--no-crop-databar", help="Keep the instrument data bar (default: crop it).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write features to this .npz (paths, sha256, features), or a Parquet folder with --engine spark.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Delete this backbone/preprocessing's cached features first (e.g. after a CacheError).")] = False,
    engine: Annotated[Engine, typer.Option("--engine", help="local (threads + one process) or spark.")] = Engine.local,
    master: Annotated[str, typer.Option("--master", help="Spark master URL with --engine spark.")] = "local[2]",
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Decode threads (default: min(4, cores)).")] = None,
    conf: SparkConfOpt = None,
    chunk_size: ChunkOpt = DEFAULT_CHUNK,
) -> None:
    """Extract backbone features of images into the shared cache (resumable; Ctrl-C safe).

    Cached images are skipped before decoding; re-running computes only new images. Prints a JSON
    summary to stdout; per-file errors and the progress bar go to stderr; exit 1 if any file failed.
    """
    from semcat.backbones import get_backbone
    from semcat.errors import SemcatError
    from semcat.features import FeatureStore, extract_features, feature_key

    crop = not no_crop_databar
    try:
        spec = get_backbone(backbone, weights=str(weights) if weights else None)
        if engine is Engine.spark:
            if out is None:
                raise typer.BadParameter("--engine spark needs --out (a Parquet folder)", param_hint="--out")
            from semcat.engines import spark

            summary = spark.features(inputs, out, backbone=backbone, view=view.value, crop_databar=crop, master=master,
                                     chunk_size=chunk_size, conf=spark_conf(conf))
            typer.echo(json.dumps(dataclasses.asdict(summary), default=str))
            return
        store = FeatureStore()
        key = feature_key(spec, crop_databar=crop, view=view.value)
        if rebuild:
            store.clear(key)
        res = extract_features(inputs, spec, runtime=runtime.value, batch_size=batch_size, store=store,
                               crop_databar=crop, view=view.value, progress=True, workers=workers)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished batches are saved in the feature cache; re-run to resume.")
        raise typer.Exit(code=130) from None
    except SemcatError as e:
        err_console.print(f"[red]error[/red]: {e}", markup=True)
        raise typer.Exit(code=1) from None
    summary = BatchSummary(ok=len(res.paths))
    for path, problem in res.errors:
        summary.fail(path, problem)
    if out is not None:
        _write_npz(out, res)
    typer.echo(json.dumps({"key": key, "images": len(res.paths), "computed": res.computed,
                           "cached": res.cached, "failed": len(res.errors), "dim": int(res.features.shape[1]),
                           "out": str(out) if out else None}))
    summary.print()
    summary.exit()


def _write_npz(out: Path, res) -> None:
    import numpy as np

    from semcat._io import atomic_write

    with atomic_write(out) as f:
        np.savez(f, paths=np.array([str(p) for p in res.paths]), sha256=np.array(res.hashes),
                 features=res.features, key=np.array(res.key))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("backbones")(backbones)
    app.command("features")(features)
