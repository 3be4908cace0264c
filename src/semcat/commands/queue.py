"""CLI command ``semcat queue``: the review queue in active-learning order."""
from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from semcat.commands._common import FORMAT_HELP, Format, err_console, error, plural, write_rows
from semcat.commands.catalog import DbOpt, _open


class Strategy(str, Enum):
    uncertainty = "uncertainty"
    diversity = "diversity"
    hybrid = "hybrid"
    random = "random"


def queue_cmd(
    strategy: Annotated[Strategy, typer.Option("--strategy", help="uncertainty: smallest margin first; diversity: k-center coverage of feature space; hybrid: uncertain and diverse with per-class quotas; random: seeded shuffle.")] = Strategy.hybrid,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="How many images to list.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random strategy.")] = 0,
    fmt: Annotated[Format, typer.Option("--format", help=FORMAT_HELP)] = Format.table,
    db: DbOpt = None,
) -> None:
    """The images to label next (the review queue, as the web review page orders it).

    diversity and hybrid use the features stored at ingest (semcat ingest --model).

    Examples:
      semcat queue --strategy hybrid --limit 50
      semcat queue --strategy diversity --format json
    """
    from semcat.active import review_order

    cat = _open(db)
    try:
        records = review_order(cat, strategy.value, limit, seed=seed)
    except ValueError as e:
        error(e)
        raise typer.Exit(code=2) from None
    finally:
        cat.close()
    rows = [{"sha256": r.sha256, "path": r.path, "top1": r.top[0][0] if r.top else None,
             "score": r.top[0][1] if r.top else None, "decision": r.decision} for r in records]
    if fmt is not Format.table:
        write_rows(rows, fmt)
    else:
        for r in rows:
            score = f"{r['score']:.3f}" if r["score"] is not None else "  -  "
            path = r["path"] or "(missing)"
            typer.echo(f"{r['sha256'][:12]}  {score}  {r['decision'] or '-':<8} {r['top1'] or '-':<28} "
                       f"{path if path.isprintable() else repr(path)}")
    err_console.print(f"{plural(len(rows), 'images')} ({strategy.value})")


def register(app: typer.Typer) -> None:
    """Add ``semcat queue`` to the top-level app."""
    app.command("queue")(queue_cmd)
