"""CLI commands: ``semcat align train | score | eval`` (nanowire alignment, see semcat.alignment)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from semcat.backbones import DEFAULT_BACKBONE
from semcat.commands._common import (
    DOC_FORMAT_HELP,
    FORMAT_HELP,
    BatchSummary,
    CsvAlias,
    DocFormat,
    Format,
    JsonAlias,
    chosen_format,
    err_console,
    error,
    error_line,
    finite,
    shown,
    write_rows,
)

align_app = typer.Typer(
    name="align",
    help="Nanowire alignment: structure-tensor coherency and a learned P(aligned) score.",
    no_args_is_help=True,
)

_SCORE_COLUMNS = ["path", "sha256", "p_aligned", "coherency", "local_coherency", "orientation_deg", "error"]

SigmaOpt = Annotated[float, typer.Option("--sigma", callback=finite, min=0.1, help="Structure-tensor window (Gaussian sigma, pixels) after downscaling.")]
MaxSideOpt = Annotated[int, typer.Option("--max-side", min=0, help="Downscale images so the longer side is at most this many pixels before the structure tensor (0 = full resolution).")]


def _load(model: Path) -> Any:
    from semcat.alignment import check_alignment_model
    from semcat.errors import ModelFileError
    from semcat.model import load_model

    try:
        m = load_model(model)
        check_alignment_model(m)
    except (ModelFileError, ValueError) as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    return m


@align_app.command("train")
def train_cmd(
    aligned_dir: Annotated[Path, typer.Argument(help="Folder of clearly aligned nanowire images.", exists=True, show_default=False)],
    not_aligned_dir: Annotated[Path, typer.Argument(help="Folder of randomly oriented nanowire images.", exists=True, show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the alignment model (.semcat).")] = Path("align.semcat"),
    backbone: Annotated[str, typer.Option("--backbone", help="Feature backbone (registered name, or a+b).")] = DEFAULT_BACKBONE,
    weight_decay: Annotated[float, typer.Option("--weight-decay", callback=finite, min=0.0, help="L2 penalty of the head; larger gives a more graded score between the extremes.")] = 1e-2,
) -> None:
    """Train a two-class aligned / not-aligned head on the two extremes (as in the paper).

    Its P(aligned) on images in between is a graded alignment score (`semcat align score`).

    Example: semcat align train aligned/ random/ --out align.semcat
    """
    from semcat.alignment import ALIGNMENT_VIEW, train_alignment_model
    from semcat.featurespec import FeatureSpec

    try:
        model, errors = train_alignment_model([aligned_dir], [not_aligned_dir], spec=FeatureSpec.resolve(backbone, view=ALIGNMENT_VIEW),
                                              weight_decay=weight_decay, progress=True)
    except ValueError as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    for path, problem in errors:
        error_line(path, problem)
    model.save(out)
    counts = model.meta["train_counts"]
    err_console.print(f"saved {out} (trained on {counts['aligned']} aligned, {counts['not_aligned']} "
                      f"not aligned; {len(errors)} unreadable)", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1 if errors else 0)


def _write(scores: list[Any], fmt: Format) -> None:
    if fmt is not Format.table:
        write_rows((s.to_dict() for s in scores), fmt, columns=_SCORE_COLUMNS)
        return
    typer.echo(f"{'p_aligned':>9}  {'coherency':>9}  {'orient°':>7}  path")
    for s in scores:
        if s.error is None:
            p = "-" if s.p_aligned is None else f"{s.p_aligned:.3f}"
            typer.echo(f"{p:>9}  {s.coherency:>9.3f}  {s.orientation_deg:>7.1f}  {shown(s.path)}")


def _store(scores: list[Any], db: str, source: str) -> None:
    """Record the scores as catalog measurements (images not yet catalogued are ingested first)."""
    from semcat.catalog import open_catalog

    ok = [s for s in scores if s.error is None and s.sha256]
    with open_catalog(db) as cat:
        known = {s.sha256 for s in ok if cat.get(s.sha256) is not None}
        missing = [s.path for s in ok if s.sha256 not in known]
        if missing:
            cat.ingest(missing, None, progress=False)
        for s in ok:
            for name, value in s.measurements().items():
                cat.set_measurement(s.sha256, name, value, source=source)
    err_console.print(f"stored {len(ok)} images' alignment measurements in the catalog", highlight=False)


@align_app.command("score")
def score_cmd(
    model: Annotated[Path, typer.Argument(help="Alignment model from `semcat align train`.", exists=True, dir_okay=False, show_default=False)],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).", exists=True, show_default=False)],
    fmt: Annotated[Format, typer.Option("--format", help=FORMAT_HELP + " json/jsonl/csv add sha256, local_coherency, error.")] = Format.table,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG like the paper's Figure 8 (both scores per image, first 12 images).")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Catalog URL or SQLite path: store alignment_p, coherency, orientation_deg as searchable measurements.")] = None,
    sigma: SigmaOpt = 2.0,
    max_side: MaxSideOpt = 1024,
    as_json: JsonAlias = False,
    as_csv: CsvAlias = False,
) -> None:
    """P(aligned), coherency and dominant orientation (degrees, 0 = horizontal, CCW) per image.

    Examples:
      semcat align score align.semcat images/ --plot fig8.png
      semcat align score align.semcat images/ --format csv --db catalog.db
    """
    from semcat._io import iter_image_files
    from semcat.alignment import plot_scores, score_images

    fmt = chosen_format(fmt, as_json=as_json, as_csv=as_csv)
    m = _load(model)
    paths = list(iter_image_files(images))
    scores = score_images(paths, m, sigma=sigma, max_side=max_side or None, progress=True)
    summary = BatchSummary()
    for s in scores:
        if s.error is None:
            summary.ok += 1
        else:
            summary.fail(s.path, s.error)
    _write(scores, fmt)
    if plot is not None and summary.ok:
        plot_scores(scores, plot)
        err_console.print(f"wrote {plot}", highlight=False, soft_wrap=True)
    if db is not None and summary.ok:
        _store(scores, db, source=f"align:{m.model_id[:12]}")
    summary.print()
    summary.exit()


@align_app.command("eval")
def eval_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder with images and truth.csv (columns file,order).", exists=True, file_okay=False, show_default=False)],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Alignment model; without it only the structure-tensor scores are evaluated.", exists=True, dir_okay=False)] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a comparison PNG: example images with both scores, and every score against the truth.")] = None,
    fmt: Annotated[DocFormat, typer.Option("--format", help=DOC_FORMAT_HELP)] = DocFormat.table,
    sigma: SigmaOpt = 2.0,
    max_side: MaxSideOpt = 1024,
    as_json: JsonAlias = False,
) -> None:
    """Spearman correlation of each alignment score with the true order parameter.

    Examples:
      semcat align eval nanowires/ --model align.semcat --plot eval.png
      semcat align eval nanowires/ --format json
    """
    from semcat.alignment import evaluate_alignment, plot_evaluation

    fmt = chosen_format(fmt, as_json=as_json, json_is=DocFormat.json)
    m = _load(model) if model is not None else None
    try:
        ev = evaluate_alignment(folder, m, sigma=sigma, max_side=max_side or None, progress=True)
    except (FileNotFoundError, ValueError) as exc:  # no truth.csv, or nothing to evaluate: failed work
        error(exc)
        raise typer.Exit(code=1) from None
    summary = BatchSummary()
    for s in ev.scores:
        if s.error is None:
            summary.ok += 1
        else:
            summary.fail(s.path, s.error)
    result = ev.to_dict()
    if fmt is DocFormat.json:
        typer.echo(json.dumps(result, indent=1))
    else:
        for name, rho in result["spearman"].items():
            typer.echo(f"{name:16s} spearman_rho={'-' if rho is None else f'{rho:.4f}'}")
    if plot is not None and summary.ok:
        plot_evaluation(ev, plot)
        err_console.print(f"wrote {plot}", highlight=False, soft_wrap=True)
    summary.print()
    summary.exit()


def register(app: typer.Typer) -> None:
    """Add the ``align`` sub-command group to the top-level app."""
    app.add_typer(align_app, name="align")
