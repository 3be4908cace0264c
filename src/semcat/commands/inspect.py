"""CLI command ``semcat inspect``: what semcat sees in each image file (format, data bar, metadata)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import track

from semcat import units
from semcat._io import iter_image_files
from semcat.commands._common import BatchSummary, err_console, is_tty, shown
from semcat.errors import ImageReadError
from semcat.images import ImageInfo, read_image


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("inspect")(inspect_cmd)


def inspect_cmd(
    paths: Annotated[list[Path], typer.Argument(
        help="Image files or folders (folders are scanned recursively for image files).")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object per image (JSON Lines) instead of a text line.")] = False,
    no_crop: Annotated[bool, typer.Option(
        "--no-crop", help="Do not look for a data bar (report databar_rows = 0).")] = False,
) -> None:
    """Show format, bit depth, size, channels, data-bar rows, pixel size and SEM metadata per image.

    Metadata comes from the file's vendor tags, else from a JEOL/Hitachi NAME.txt or TESCAN
    NAME-tif.hdr next to it (shown as sidecar=NAME.txt).
    bar=29 (metadata): the vendor's scanned height; bar=77 (image): detected in the pixels.

    Unreadable files get one error line each; the rest go on. Exit code 1 when any file failed.

    Example: semcat inspect scans/ --json
    """
    files = list(iter_image_files(paths))
    summary = BatchSummary()
    items = track(files, description="inspecting", console=err_console, transient=True) \
        if is_tty() and len(files) > 20 else files
    for path in items:
        try:
            _, info = read_image(path, crop_databar=not no_crop)
        except ImageReadError as exc:
            summary.fail(exc.path, exc.problem)
            continue
        summary.ok += 1
        typer.echo(json.dumps(info_to_dict(info)) if as_json else _text_line(info))
    if not files:
        err_console.print("no image files found in: " + ", ".join(str(p) for p in paths))
    summary.print()
    if not files:
        raise typer.Exit(code=1)
    summary.exit()


def info_to_dict(info: ImageInfo) -> dict[str, Any]:
    """JSON-safe view of an :class:`ImageInfo` (metadata via ``SemMetadata.to_dict``)."""
    return {
        "path": info.path,
        "format": info.format,
        "bit_depth": info.bit_depth,
        "rows": info.shape[0],
        "cols": info.shape[1],
        "channels": info.channels,
        "databar_rows": info.databar_rows,
        "databar_source": info.databar_source,
        "pixel_size_m": info.pixel_size_m,
        "metadata": info.metadata.to_dict() if info.metadata else None,
    }


def _text_line(info: ImageInfo) -> str:
    rows, cols = info.shape
    parts = [info.path, info.format, f"{info.bit_depth}-bit", f"{cols}x{rows}",
             f"{info.channels}ch", _bar_text(info)]
    if info.pixel_size_m:
        parts.append(f"pixel={units.pixel_size(info.pixel_size_m)}")
    m = info.metadata
    if m is not None:
        extra = [m.vendor, m.instrument,
                 units.magnification(m.magnification) if m.magnification else None,
                 units.voltage(m.high_voltage_v) if m.high_voltage_v else None,
                 f"WD {units.working_distance(m.working_distance_m)}" if m.working_distance_m else None,
                 m.detector, units.timestamp(m.acquired) if m.acquired else None]
        parts.append(", ".join(x for x in extra if x))
    if m is not None and m.sidecar:
        parts.append(f"sidecar={Path(m.sidecar).name}")
    return "\t".join(shown(p) for p in parts)


def _bar_text(info: ImageInfo) -> str:
    """``bar=56 (metadata)`` / ``bar=56 (image)``: how many rows were cropped and what found them."""
    return f"bar={info.databar_rows} ({info.databar_source})" if info.databar_source else f"bar={info.databar_rows}"
