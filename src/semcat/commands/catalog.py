"""CLI commands of the catalog: ingest, watch, search, similar, export, label, tag, stats."""
from __future__ import annotations

import json
import sys
import threading
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from semcat._validation import MAX_COUNT
from semcat.commands._common import (
    FORMAT_HELP,
    PRECISION_HELP,
    ChunkOpt,
    Engine,
    Format,
    Precision,
    SparkConfOpt,
    bounded_text,
    err_console,
    error,
    error_line,
    finite,
    USAGE,
    plain_console,
    shown,
    spark_conf,
    use_model_precision,
    warning,
    write_rows,
    plural,
)
from semcat.engines.spark import DEFAULT_CHUNK
from semcat.interrupts import sigint_deferred

DbOpt = Annotated[Optional[str], typer.Option(
    "--db", help="Catalog URL: sqlite:///PATH, a file path, or postgresql://USER@HOST/DB "
                 "[default: $SEMCAT_DB or SQLite in the semcat home].", show_default=False)]
ModelOpt = Annotated[Optional[Path], typer.Option(
    "--model", help="Model artifact (.semcat) used to classify new images; without it images are "
                    "catalogued unclassified.", exists=True, dir_okay=False, readable=True)]


class ExportFormat(str, Enum):
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


class Decision(str, Enum):
    auto = "auto"
    suggest = "suggest"
    manual = "manual"
    unknown = "unknown"


def _open(db: str | None, *, create: bool = False):  # -> Catalog
    """The catalog at ``--db``; exit 2 (usage) on a bad URL, an unreachable server, or, unless this
    command ``create``s one, a SQLite file that does not exist (a mistyped path is never shown as
    an empty catalog)."""
    from sqlalchemy.exc import OperationalError

    from semcat.catalog import CatalogError, open_catalog

    try:
        if not create:
            missing_catalog(db)
        return open_catalog(db)
    except (CatalogError, OperationalError) as e:
        error(f"cannot open catalog {db or '(default)'}: {getattr(e, 'orig', None) or e}")
        raise typer.Exit(code=USAGE) from None


def missing_catalog(db: str | None) -> None:
    """Raise ``CatalogError`` when ``db`` (default: ``$SEMCAT_DB`` or the home's) names a SQLite
    file that does not exist: only the commands that create a catalog (ingest, watch, category
    add, align score --db, serve) may start one."""
    from sqlalchemy.engine import make_url

    from semcat.catalog import CatalogError, normalize_url
    from semcat.config import default_db_url

    url = make_url(normalize_url(db or default_db_url()))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not Path(url.database).expanduser().exists():
        raise CatalogError(f"no catalog at {url.database}; `semcat ingest FOLDER --db ...` creates one")


def _load_model(model: Path | None):
    if model is None:
        return None
    from semcat.errors import ModelFileError
    from semcat.model import load_model

    try:
        return load_model(model)
    except ModelFileError as e:
        error_line(model, e)
        raise typer.Exit(code=1) from None


def _resolve_image(cat: Any, image: str) -> str:
    """A path to an image file (hashed) or a catalogued hash / unique prefix → full hash."""
    from semcat._io import sha256_file
    from semcat.catalog import CatalogError

    try:
        sha = sha256_file(image) if Path(image).is_file() else image
        return cat.resolve(sha)
    except CatalogError as e:
        error(e)
        raise typer.Exit(code=1) from None


def ingest_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).",
                                                  exists=True, show_default=False)],
    db: DbOpt = None,
    model: ModelOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", max=MAX_COUNT, min=1, help="Images per transaction (a crash loses at most one batch).")] = 64,
    engine: Annotated[Engine, typer.Option("--engine", help="local: this process; spark: classify on a Spark cluster and write the results here.")] = Engine.local,
    master: Annotated[str, typer.Option("--master", help="Spark master URL for --engine spark.")] = "local[2]",
    precision: Annotated[Precision, typer.Option("--precision", help=PRECISION_HELP)] = Precision.auto,
    follow_links: Annotated[bool, typer.Option("--follow-links", help="Follow symlinks inside the folders even when they lead out of them (off: such links are skipped).")] = False,
    conf: SparkConfOpt = None,
    chunk_size: ChunkOpt = DEFAULT_CHUNK,
) -> None:
    """Catalogue images: hash, metadata, paths, and (with --model) classification.

    Idempotent and resumable: re-running skips finished work; moved or renamed files are
    recognised by their content hash. Only regular files are read; symlinks that lead out of
    the given folders are skipped unless --follow-links.

    Example: semcat ingest /data/sem --model model.semcat --db catalog.sqlite
    """
    if engine is Engine.spark:
        if model is None:
            error("--engine spark needs --model MODEL")
            raise typer.Exit(code=2)
        from semcat.catalog import normalize_url
        from semcat.config import default_db_url
        from semcat.engines import spark as spark_engine

        def classified(s: spark_engine.SparkSummary) -> None:
            err_console.print(f"spark: {s.ok + s.failed} classified on {s.master}, {s.skipped} reused "
                              f"from an earlier run ({s.out}); cataloguing", highlight=False)

        summary = spark_engine.ingest([str(p) for p in inputs], normalize_url(db or default_db_url()),
                                      str(model), master=master, batch_size=batch_size,
                                      precision=precision.value, chunk_size=chunk_size, progress=True,
                                      conf=spark_conf(conf), on_classified=classified)
    else:
        m = _load_model(model)  # a refused model creates no catalog
        cat = _open(db, create=True)
        if m is not None:
            use_model_precision(m, precision)
        try:
            try:
                summary = cat.ingest(inputs, m, batch_size=batch_size, progress=True, follow_links=follow_links)
            finally:
                with sigint_deferred():  # a Ctrl-C during the close comes after it, not inside SQLAlchemy
                    cat.close()
        except KeyboardInterrupt:
            err_console.print("interrupted: finished batches are committed; run the same command again to resume")
            raise typer.Exit(code=130) from None
    for path, problem in summary.errors:
        error_line(path, problem)
    if not summary.seen:
        warning("no image files found: nothing was catalogued")
    err_console.print(f"summary: {summary.line()}", highlight=False)
    raise typer.Exit(code=1 if summary.failed or not summary.seen else 0)


def watch_cmd(
    folders: Annotated[list[Path], typer.Argument(help="Folders to watch (recursively).", exists=True,
                                                   file_okay=False, show_default=False)],
    model: ModelOpt = None,
    db: DbOpt = None,
    settle: Annotated[float, typer.Option("--settle", callback=finite, min=0.0, help="Seconds a file must stay unchanged before it is ingested.")] = 1.0,
    initial: Annotated[bool, typer.Option("--initial/--no-initial", help="First ingest what is already in the folders.")] = True,
) -> None:
    """Watch folders and ingest images as they appear, once completely written. Ctrl-C stops.

    Example: semcat watch /microscope/export --model model.semcat --settle 2
    """
    m = _load_model(model)
    cat = _open(db, create=True)
    failed = 0

    def report(paths: list[str], summary: Any) -> None:
        nonlocal failed
        failed += summary.failed
        for path, problem in summary.errors:
            error_line(path, problem)
        if summary.seen:
            err_console.print(f"ingested: {summary.line()}", highlight=False)

    from semcat.catalog.watch import watch

    err_console.print(f"watching {', '.join(map(shown, folders))} (Ctrl-C to stop)")
    try:
        try:
            watch(cat, folders, m, settle_s=settle, initial=initial, stop=threading.Event(), on_ingest=report)
        finally:
            with sigint_deferred():
                cat.close()
    except KeyboardInterrupt:
        err_console.print("stopped")
    raise typer.Exit(code=1 if failed else 0)


def _parse_day(value: str | None, option: str) -> date | datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected a date like 2024-05-31 (or 2024-05-31T14:00), got {value!r}",
                                 param_hint=option) from None


def search_cmd(
    category: Annotated[Optional[str], typer.Option("--category", help="Confirmed label, else predicted top-1 class.")] = None,
    decision: Annotated[Optional[Decision], typer.Option("--decision", help="Decision of the latest prediction.")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", callback=finite, help="Lowest top-1 probability.")] = None,
    max_score: Annotated[Optional[float], typer.Option("--max-score", callback=finite, help="Highest top-1 probability.")] = None,
    confirmed: Annotated[Optional[bool], typer.Option("--confirmed/--unconfirmed", help="Only images with / without a confirmed label.", show_default=False)] = None,
    mag_min: Annotated[Optional[float], typer.Option("--mag-min", callback=finite, help="Lowest magnification.")] = None,
    mag_max: Annotated[Optional[float], typer.Option("--mag-max", callback=finite, help="Highest magnification.")] = None,
    pixel_size_min: Annotated[Optional[float], typer.Option("--pixel-size-min", callback=finite, help="Smallest pixel size in metres (e.g. 1e-9).")] = None,
    pixel_size_max: Annotated[Optional[float], typer.Option("--pixel-size-max", callback=finite, help="Largest pixel size in metres.")] = None,
    date_from: Annotated[Optional[str], typer.Option("--from", help="Acquired on or after this date (YYYY-MM-DD).")] = None,
    date_to: Annotated[Optional[str], typer.Option("--to", help="Acquired on or before this date (YYYY-MM-DD).")] = None,
    text: Annotated[Optional[str], typer.Option("--text", callback=bounded_text, help="Case-insensitive substring of a file path.")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", help="Images carrying this tag.")] = None,
    measurement: Annotated[Optional[str], typer.Option("--measurement", help="NAME:MIN:MAX, e.g. coherency:0.6: (bounds may be empty).")] = None,
    order: Annotated[str, typer.Option("--order", help="recent, oldest, score (least sure first), score_desc, acquired, magnification.")] = "recent",
    limit: Annotated[int, typer.Option("--limit", max=MAX_COUNT, min=0, help="Maximum number of results.")] = 50,
    fmt: Annotated[Format, typer.Option("--format", help=FORMAT_HELP)] = Format.table,
    db: DbOpt = None,
) -> None:
    """Find catalogued images by category, decision, score, metadata, date, path text, tag.

    Examples:
      semcat search --decision suggest --unconfirmed --order score --limit 20
      semcat search --category Nanowires --min-score 0.9 --format csv
    """
    from semcat.catalog.search import ORDERS, parse_measurement

    if order not in ORDERS:
        raise typer.BadParameter(f"expected one of {', '.join(ORDERS)}, got {order!r}", param_hint="--order")
    try:
        meas = parse_measurement(measurement) if measurement else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--measurement") from None
    filters = dict(category=category, decision=decision.value if decision else None, min_score=min_score,
                   max_score=max_score, confirmed=confirmed, mag_min=mag_min, mag_max=mag_max,
                   pixel_size_min=pixel_size_min, pixel_size_max=pixel_size_max,
                   date_from=_parse_day(date_from, "--from"), date_to=_parse_day(date_to, "--to"),
                   text=text, tag=tag, measurement=meas)
    cat = _open(db)
    try:
        from semcat.catalog.search import COUNT_CAP

        cap = max(COUNT_CAP, limit + 1)
        records, total = cat.search_page(**filters, limit=limit, order=order, count_at_most=cap)
    finally:
        cat.close()
    _print_records(records, fmt)
    matching = f"{cap:,}+" if total >= cap else f"{total:,}"
    err_console.print(f"{len(records)} of {matching} matching images shown")


def _print_records(records: list[Any], fmt: Format) -> None:
    from semcat.catalog.export import write_records

    if fmt is Format.table:
        from rich.table import Table

        table = Table(show_lines=False)
        for col in ("sha256", "category", "score", "decision", "confirmed", "mag", "pixel nm", "path"):
            table.add_column(col)
        for r in records:
            table.add_row(r.sha256[:12], shown(r.category or ""), f"{r.score:.3f}" if r.score is not None else "",
                          r.decision or "", r.label_source or "", f"{r.magnification:g}" if r.magnification else "",
                          f"{r.pixel_size_m * 1e9:.3g}" if r.pixel_size_m else "", shown(r.path or (r.paths or [""])[0]))
        plain_console(file=sys.stdout, width=200).print(table)
    else:
        write_records(records, sys.stdout, fmt.value)


def similar_cmd(
    image: Annotated[str, typer.Argument(help="An image file, or the SHA-256 (or unique prefix) of a catalogued image.", show_default=False)],
    limit: Annotated[int, typer.Option("--limit", max=MAX_COUNT, min=1, help="How many neighbours.")] = 10,
    fmt: Annotated[Format, typer.Option("--format", help=FORMAT_HELP)] = Format.table,
    db: DbOpt = None,
    k: Annotated[Optional[int], typer.Option("-k", "--k", max=MAX_COUNT, min=1, hidden=True,
                                             help="Old spelling of --limit.")] = None,
) -> None:
    """Nearest catalogued images by backbone-feature cosine similarity.

    Examples:
      semcat similar /data/sem/2024/zno_wires_012.tif --limit 5
      semcat similar 3f9c0a1b22 --format json
    """
    from semcat.catalog import CatalogError

    if k is not None:
        warning("-k/--k is deprecated: use --limit")
        limit = k
    cat = _open(db)
    try:
        sha = _resolve_image(cat, image)
        try:
            hits = cat.similar(sha, k=limit)
        except CatalogError as e:
            error(e)
            raise typer.Exit(code=1) from None
        records = {r.sha256: r for r in cat.records([h for h, _ in hits])}
    finally:
        cat.close()
    rows = [{"sha256": h, "similarity": round(s, 6), "category": records[h].category if h in records else None,
             "path": records[h].path if h in records else None} for h, s in hits]
    if fmt is not Format.table:
        write_rows(rows, fmt, columns=["sha256", "similarity", "category", "path"])
    else:
        for r in rows:
            typer.echo(f"{r['similarity']:.4f}  {r['sha256'][:12]}  {shown(r['category'] or '-'):<28} "
                       f"{shown(r['path'] or '(missing)')}")


def export_cmd(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Format of the catalog export.")] = ExportFormat.json,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the export to this file (atomically) instead of stdout.", dir_okay=False)] = None,
    sidecars: Annotated[Optional[Path], typer.Option("--sidecars", help="Also write one NAME.semcat.json per image into this folder.", file_okay=False)] = None,
    next_to_images: Annotated[bool, typer.Option("--sidecars-next-to-images", help="Also write IMAGE.semcat.json beside each image file (images are never modified).")] = False,
    db: DbOpt = None,
) -> None:
    """Export the whole catalog as JSON, JSON Lines or CSV, and optionally per-image JSON sidecars.

    Examples:
      semcat export --format json --out catalog.json
      semcat export --sidecars /data/sem-metadata
    """
    from semcat._io import atomic_write
    from semcat.catalog.export import write_records, write_sidecars

    if sidecars is not None and next_to_images:
        raise typer.BadParameter("use either --sidecars DIR or --sidecars-next-to-images, not both",
                                 param_hint="--sidecars")
    cat = _open(db)
    try:
        if out is not None:
            with atomic_write(out, "w") as f:
                n = write_records(cat.iter_records(), f, fmt.value)
            err_console.print(f"wrote {plural(n, 'images')} to {out}")
        elif sidecars is None and not next_to_images:
            n = write_records(cat.iter_records(), sys.stdout, fmt.value)
        if sidecars is not None or next_to_images:
            files = write_sidecars(cat.iter_records(), out_dir=sidecars, next_to_images=next_to_images)
            err_console.print(f"wrote {len(files)} sidecar files")
    finally:
        cat.close()


def label_cmd(
    image: Annotated[str, typer.Argument(help="Image file or catalogued SHA-256 (prefix).", show_default=False)],
    label: Annotated[str, typer.Argument(help="The confirmed class.", show_default=False)],
    who: Annotated[Optional[str], typer.Option("--who", help="Who confirms (default: $USER).")] = None,
    db: DbOpt = None,
) -> None:
    """Confirm the class of one image (the latest label wins; history is kept).

    The label must be a known category (the 10 NFFA ones, one a model predicted into this
    catalog, or one created with `semcat category add`); anything else is refused, exit code 1.

    Example: semcat label /data/sem/2024/zno_wires_012.tif Nanowires --who ana
    """
    import getpass

    cat = _open(db)
    try:
        sha = _resolve_image(cat, image)
        try:
            cat.confirm(sha, label, who=who or getpass.getuser(), source="human")
        except ValueError as e:
            error(str(e))
            raise typer.Exit(code=1) from None
    finally:
        cat.close()
    err_console.print(f"{sha[:12]}: label {shown(label)}")


def tag_cmd(
    image: Annotated[str, typer.Argument(help="Image file or catalogued SHA-256 (prefix).", show_default=False)],
    tags: Annotated[list[str], typer.Argument(help="Tags to add.", show_default=False)],
    remove: Annotated[bool, typer.Option("--remove", help="Remove these tags instead of adding them.")] = False,
    db: DbOpt = None,
) -> None:
    """Add (or --remove) free-form tags on one image.

    Examples:
      semcat tag /data/sem/2024/zno_wires_012.tif gold-sputtered batch-7
      semcat tag 3f9c0a1b22 batch-7 --remove
    """
    cat = _open(db)
    try:
        sha = _resolve_image(cat, image)
        for t in tags:
            try:
                (cat.remove_tag if remove else cat.add_tag)(sha, t)
            except ValueError as e:
                raise typer.BadParameter(str(e), param_hint="TAGS") from None
    finally:
        cat.close()


def stats_cmd(db: DbOpt = None) -> None:
    """Catalog counts (per category, decision, confirmed) as JSON on stdout.

    Example: semcat stats --db sqlite:///catalog.db
    """
    cat = _open(db)
    try:
        typer.echo(json.dumps(cat.stats(), indent=1))
    finally:
        cat.close()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("ingest")(ingest_cmd)
    app.command("watch")(watch_cmd)
    app.command("search")(search_cmd)
    app.command("similar")(similar_cmd)
    app.command("export")(export_cmd)
    app.command("label")(label_cmd)
    app.command("tag")(tag_cmd)
    app.command("stats")(stats_cmd)
