"""CLI command ``semcat inspect``: what semcat sees in each image file (format, data bar, metadata)."""
from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.progress import track

from semcat import units
from semcat._io import iter_image_files
from semcat.commands._common import (
    FORMAT_HELP,
    BatchSummary,
    Format,
    JsonAlias,
    chosen_format,
    err_console,
    is_tty,
    named_paths,
    shown,
    write_rows,
)
from semcat.errors import ImageReadError
from semcat.images import ImageInfo, read_image


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("inspect")(inspect_cmd)


def inspect_cmd(
    paths: Annotated[list[Path], typer.Argument(
        help="Image files or folders (folders are scanned recursively for image files).", callback=named_paths)],
    fmt: Annotated[Format, typer.Option("--format", help=FORMAT_HELP + " table: one tab-separated line per image.")] = Format.table,
    no_crop: Annotated[bool, typer.Option(
        "--no-crop", help="Do not look for a data bar (report databar_rows = 0).")] = False,
    as_json: JsonAlias = False,
) -> None:
    """Show format, bit depth, size, channels, data-bar rows, pixel size and SEM metadata per image.

    Metadata comes from the file's vendor tags, else from a JEOL/Hitachi NAME.txt or TESCAN
    NAME-tif.hdr next to it (shown as sidecar=NAME.txt).
    bar=29 (metadata): the vendor's scanned height; bar=77 (image): detected in the pixels.

    Unreadable files get one error line each; the rest go on. Exit code 1 when any file failed.

    Examples:
      semcat inspect scans/
      semcat inspect scans/a.tif --format jsonl
    """
    fmt = chosen_format(fmt, as_json=as_json, json_is=Format.jsonl)
    files = list(iter_image_files(paths))
    summary = BatchSummary()
    items = track(files, description="inspecting", console=err_console, transient=True) \
        if is_tty() and len(files) > 20 else files

    def infos() -> Iterator[ImageInfo]:
        for path in items:
            try:
                _, info = read_image(path, crop_databar=not no_crop)
            except ImageReadError as exc:
                summary.fail(exc.path, exc.problem)
                continue
            summary.ok += 1
            yield info

    if fmt is Format.table:
        for info in infos():
            typer.echo(_text_line(info))
    else:
        write_rows((info_to_dict(info) for info in infos()), fmt, columns=_COLUMNS)
    summary.print()
    summary.exit()


_COLUMNS = ["path", "format", "bit_depth", "rows", "cols", "channels", "databar_rows", "databar_source",
            "pixel_size_m", "metadata"]


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
