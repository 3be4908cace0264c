"""CLI command ``semcat retrain``: train and calibrate a new live model on a catalogue's confirmed labels."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from semcat._validation import MAX_COUNT
from semcat.commands._common import err_console, error


def retrain(
    db: Annotated[str | None, typer.Option("--db", help="Catalog URL (SQLite file or postgresql://...); default $SEMCAT_DB or ~/.semcat/catalog.db.")] = None,
    models_dir: Annotated[Path | None, typer.Option("--models-dir", file_okay=False, help="Folder of the versioned models and live.json; default one per catalogue under $SEMCAT_HOME/models (where `semcat serve --db` looks).")] = None,
    model: Annotated[Path | None, typer.Option("--model", exists=True, dir_okay=False, readable=True, help="Backbone, view and precision to use while no retrained model is live (default efficientnet_lite0, centre view).")] = None,
    folds: Annotated[int, typer.Option(min=2, max=MAX_COUNT, help="Cross-validation folds (penalty and calibration).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the head.")] = 0,
) -> None:
    """Retrain on every confirmed label of the catalogue, calibrate out of fold, and make the result live.

    The same job `semcat serve --retrain-every N` runs in the background: the new model is written
    as the next versioned file in the models folder and then named in its live.json, which a running
    server picks up for new requests. Prints the live entry as JSON; exit 1 (the live model unchanged)
    when the labels cannot make a model, e.g. a class with a single confirmed label.

    Example: semcat retrain --db catalog.db
    """
    from semcat.commands.catalog import _open
    from semcat.config import default_db_url
    from semcat.retrain import RetrainBusy, RetrainError
    from semcat.retrain import models_dir as folder_of
    from semcat.retrain import retrain as run

    _open(db).close()  # a catalogue that does not exist is a usage error (exit 2), never an empty one
    url = db or default_db_url()
    folder = folder_of(url, models_dir)
    err_console.print(f"retraining on the confirmed labels of the catalogue; models in {folder}",
                      soft_wrap=True, highlight=False, markup=False)
    try:
        entry = run(url, folder, base=model, folds=folds, seed=seed)
    except (RetrainBusy, RetrainError) as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    cal = entry["calibration"]
    err_console.print(f"model v{entry['version']} is live: {entry['labels']} labels, {len(entry['classes'])} classes, "
                      f"out-of-fold accuracy {100 * (cal['accuracy'] or 0):.1f}%, t_auto {cal['t_auto']}",
                      soft_wrap=True, highlight=False, markup=False)
    typer.echo(json.dumps(entry))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("retrain")(retrain)
