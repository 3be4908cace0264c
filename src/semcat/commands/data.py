"""CLI commands: ``semcat synth`` (synthetic SEM data) and ``semcat dataset summary`` (folder scan)."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from semcat.commands._common import (
    DOC_FORMAT_HELP,
    BatchSummary,
    DocFormat,
    JsonAlias,
    chosen_format,
    err_console,
    error,
    error_line,
    plain_console,
    shown,
    warning,
    plural,
)

dataset_app = typer.Typer(
    name="dataset",
    help="Inspect labelled image folders: counts per class, hash splits, unreadable files.",
    no_args_is_help=True,
)


class ImageFormat(str, Enum):
    tif = "tif"
    png = "png"
    jpg = "jpg"


class BitDepth(str, Enum):
    b8 = "8"
    b16 = "16"


def _parse_shape(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected ROWSxCOLS such as 768x1024, got {text!r}") from None
    return rows, cols


def _parse_fractions(text: str) -> tuple[float, float, float]:
    from semcat.dataset import check_fractions

    try:
        return check_fractions([float(v) for v in text.split(",")])
    except ValueError as exc:
        raise typer.BadParameter(f"expected three comma-separated shares such as 0.8,0.1,0.1: {exc}") from None


def synth(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write into: one sub-folder per category.", file_okay=False)],
    per_class: Annotated[int, typer.Option("--per-class", min=0, help="Images per category.")] = 20,
    size: Annotated[int, typer.Option("--size", min=32, help="Side of the square images in pixels.")] = 512,
    shape: Annotated[Optional[str], typer.Option("--shape", help="Non-square images as ROWSxCOLS (e.g. 768x1024); overrides --size.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed writes byte-identical files.")] = 0,
    databar: Annotated[bool, typer.Option("--databar/--no-databar", help="Append an instrument data bar (Zeiss/FEI/JEOL-like) below each image.")] = False,
    fmt: Annotated[ImageFormat, typer.Option("--format", help="File format.")] = ImageFormat.tif,
    bit_depth: Annotated[BitDepth, typer.Option("--bit-depth", help="8 or 16 bits per pixel (16 needs tif or png).")] = BitDepth.b8,
    metadata: Annotated[bool, typer.Option("--metadata/--no-metadata", help="Embed Zeiss or FEI/Thermo acquisition tags (magnification, pixel size, HV, WD, detector, date) in TIFFs.")] = True,
    alignment: Annotated[int, typer.Option("--alignment", min=0, help="Also write N nanowire images with known alignment (order 0..1) and truth.csv into OUT-alignment/.")] = 0,
    blends: Annotated[int, typer.Option("--blends", min=0, help="Also write N ambiguous two-category images and truth.csv into OUT-blends/.")] = 0,
    instruments: Annotated[int, typer.Option("--instruments", min=0, help="Instead, render every category as seen by N instruments (the last a held-out style) into OUT/<category>/<instrument>/ (TIFF, the pixel size, instrument and detector in its vendor tag; --per-class per instrument); evaluate with --cv groups --group-by folder (or meta:instrument).")] = 0,
    size_spread: Annotated[float, typer.Option("--size-spread", min=1.0, max=100.0, help="With --instruments: each shot's structures scaled by a factor over this range (4 = 1/2 to 2x), the recorded pixel size unchanged: categories spanning scales (1 = one physical size per category).")] = 1.0,
    categories: Annotated[Optional[str], typer.Option("--categories", help="Comma-separated subset of the 10 categories (default: all), e.g. to keep one unseen by a model.")] = None,
) -> None:
    """Write procedural SEM-like images for the 10 NFFA categories (deterministic by --seed).

    Files are named like a facility archive (USER_SAMPLE_NNN.tif, a few shots per sample).
    TIFFs carry vendor acquisition metadata consistent with the image unless --no-metadata.
    Existing files are kept, so an interrupted run resumes and a larger --per-class only adds
    images. Prints the folders written to stdout.

    Examples:
      semcat synth data/inst --instruments 4 --per-class 20 --size 256
      semcat synth data/inst-spread --instruments 4 --size-spread 4
    """
    from semcat.synth import write_alignment_set, write_blend_set, write_dataset

    shape_rc = _parse_shape(shape)
    chosen = {"categories": [c.strip() for c in categories.split(",") if c.strip()]} if categories else {}
    if instruments:
        _synth_instruments(out, instruments, per_class, size, seed, databar, size_spread, **chosen)
        return
    try:
        written = write_dataset(out, per_class=per_class, size=size, seed=seed, databar=databar,
                                fmt=fmt.value, shape=shape_rc, bit_depth=int(bit_depth.value), metadata=metadata,
                                progress=True, **chosen)
        folders = [out]
        if alignment:
            folders.append(write_alignment_set(out.with_name(out.name + "-alignment"), n=alignment,
                                               size=size, seed=seed, metadata=metadata).parent)
        if blends:
            folders.append(write_blend_set(out.with_name(out.name + "-blends"), n=blends, size=size,
                                           seed=seed, metadata=metadata).parent)
    except ValueError as exc:
        error(exc)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: finished files are kept; run the same command again to resume")
        raise typer.Exit(code=130) from None
    except OSError as exc:
        error_line(out, f"cannot write: {exc.strerror or exc}")
        raise typer.Exit(code=1) from None
    new = sum(written.values())
    err_console.print(f"summary: {plural(new, 'images')} written, {per_class * len(written) - new} already there")
    for folder in folders:
        typer.echo(str(folder))


def _synth_instruments(out: Path, n: int, per_class: int, size: int, seed: int, databar: bool,
                       size_spread: float = 1.0, **chosen: list[str]) -> None:
    from semcat.synth.instruments import write_instrument_set

    try:
        written = write_instrument_set(out, instruments=n, per_class=per_class, size=size, seed=seed, databar=databar,
                                       size_spread=size_spread, **chosen)
    except ValueError as exc:
        err_console.print(f"[red]error[/red]: {exc}", markup=True, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except OSError as exc:
        error_line(out, f"cannot write: {exc.strerror or exc}")
        raise typer.Exit(code=1) from None
    err_console.print(f"summary: {sum(written.values())} images written for {n} instruments; styles in {out}/instruments.csv")
    typer.echo(str(out))


@dataset_app.command("summary")
def summary(
    root: Annotated[Path, typer.Argument(metavar="DIR", help="Folder with one sub-folder per class (nested sub-folders allowed).", exists=True, file_okay=False)],
    group_by: Annotated[Optional[str], typer.Option("--group-by", help="Keep samples together: 'folder' (sub-folder below the class), a regex with one group over the file name, e.g. '^([^_]+_[^_]+)_', or the file's SEM metadata: meta:instrument, meta:detector, meta:magnification (its decade).")] = None,
    fractions: Annotated[str, typer.Option("--fractions", help="Train,val,test shares summing to 1.")] = "0.8,0.1,0.1",
    check: Annotated[bool, typer.Option("--check/--no-check", help="Decode every image to list unreadable ones (slower); --no-check --no-near-duplicates only hashes.")] = True,
    fmt: Annotated[DocFormat, typer.Option("--format", help=DOC_FORMAT_HELP)] = DocFormat.table,
    near: Annotated[bool, typer.Option("--near-duplicates/--no-near-duplicates", help="Keep near duplicates (re-saves, other data bars; semcat duplicates) in one split; decodes every image.")] = True,
    as_json: JsonAlias = False,
) -> None:
    """Count images per class and per train/val/test split (by content hash); list unreadable files.

    Splits depend only on each file's bytes (or its group), so adding or renaming images never
    moves the others. Exit code 1 when some files could not be read.

    Examples:
      semcat dataset summary data/ --group-by '^([^_]+_[^_]+)_'
      semcat dataset summary data/ --group-by folder --fractions 0.7,0.15,0.15 --format json
    """
    from semcat.dataset import SPLITS, group_pattern, scan_dataset

    fmt = chosen_format(fmt, as_json=as_json, json_is=DocFormat.json)
    shares = _parse_fractions(fractions)
    try:
        group_pattern(group_by)
    except ValueError as exc:  # a bad --group-by is a usage error; a folder without classes is not
        raise typer.BadParameter(str(exc), param_hint="--group-by") from None
    try:
        ds = scan_dataset(root, fractions=shares, group_by=group_by, check_images=check, near_duplicates=near,
                          progress=True)
    except ValueError as exc:  # no class folders: failed work, like an empty folder
        error(exc)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: nothing was written")
        raise typer.Exit(code=130) from None
    result = BatchSummary(ok=len(ds.samples))
    for path, problem in ds.errors:
        result.fail(path, problem)
    for message in ds.warnings:
        warning(message)
    if near:
        err_console.print(f"{ds.near_groups} near-duplicate groups merged (each kept in one split)")
    if fmt is DocFormat.json:
        typer.echo(json.dumps(ds.to_dict(), indent=2))
    else:
        _print_table(ds.counts(), SPLITS, show_groups=group_by is not None)
    result.print("images")
    result.exit()


def _print_table(counts: dict[str, dict[str, int]], splits: tuple[str, ...], *, show_groups: bool) -> None:
    from rich.table import Table

    columns = ["total", *splits] + (["groups"] if show_groups else [])
    table = Table(title=None, show_footer=True)
    table.add_column("class", footer="all")
    for col in columns:
        table.add_column(col, justify="right", footer=str(sum(row[col] for row in counts.values())))
    for name, row in counts.items():
        table.add_row(shown(name), *(str(row[c]) for c in columns))
    plain_console(soft_wrap=True).print(table)


def register(app: typer.Typer) -> None:
    """Add ``semcat synth`` and the ``semcat dataset`` group to the top-level app."""
    app.command("synth")(synth)
    app.add_typer(dataset_app)
