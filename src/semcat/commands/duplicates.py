"""CLI command ``semcat duplicates``: exact, near and feature-similar duplicate groups."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from semcat.commands._common import BatchSummary, Format, err_console, shown, write_rows
from semcat.commands.catalog import DbOpt, _open


def duplicates_cmd(
    folder: Annotated[Optional[Path], typer.Argument(metavar="[DIR]", help="Image folder to scan (recursively); without it the catalog (--db) is scanned and its groups are stored.", exists=True, file_okay=False)] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table: one block per group; json: an array of groups, each a list of paths; jsonl: one group a line; csv: group,path rows.")] = Format.table,
    features: Annotated[bool, typer.Option("--features/--no-features", help="Also compare backbone features (finds crops and re-scans); folders: computed and cached, catalog: those stored at ingest.")] = True,
    db: DbOpt = None,
) -> None:
    """Find groups of duplicate images: the same bytes, the same picture re-saved or with another
    data bar (perceptual hash), or the same field cropped or re-scanned (features + pixel check).

    Scanning the catalog stores each image's group; the image page shows it and splits keep a
    group on one side. Exit code 1 when some files could not be read.

    Examples:
      semcat duplicates archive/ --format json > groups.json
      semcat duplicates --db sqlite:///catalog.db
    """
    from semcat.duplicates import catalog_duplicates, scan_duplicates

    if folder is not None and db is not None:
        raise typer.BadParameter("give either DIR or --db, not both", param_hint="--db")
    if folder is not None:
        result = scan_duplicates(folder, features=features, progress=True)
    else:
        cat = _open(db)
        try:
            result = catalog_duplicates(cat, features=features)
        finally:
            cat.close()
    summary = BatchSummary(ok=len(result.paths))
    for path, problem in result.errors:
        summary.fail(path, problem)
    groups = result.path_groups()
    if fmt is Format.json:
        typer.echo(json.dumps(groups, indent=1))
    elif fmt is Format.jsonl:
        for group in groups:
            typer.echo(json.dumps(group))
    elif fmt is Format.csv:
        write_rows(({"group": k, "path": p} for k, group in enumerate(groups, 1) for p in group), fmt,
                   columns=["group", "path"])
    else:
        for k, group in enumerate(groups, 1):
            typer.echo(f"group {k} ({len(group)} files)")
            for path in group:
                typer.echo("  " + shown(path))  # file names are data
    err_console.print(f"{len(groups)} duplicate groups, {sum(len(g) for g in groups)} files in them"
                      + ("; stored in the catalog" if folder is None else ""), highlight=False)
    summary.print("images")
    summary.exit()


def register(app: typer.Typer) -> None:
    """Add ``semcat duplicates`` to the top-level app."""
    app.command("duplicates")(duplicates_cmd)
