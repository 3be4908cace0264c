"""CLI command ``semcat serve``: the review web app (FastAPI + uvicorn)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semcat.commands._common import err_console, error, finite, warning


def serve(
    db: Annotated[str | None, typer.Option("--db", help="Catalog URL (SQLite file or postgresql://...); default $SEMCAT_DB or ~/.semcat/catalog.db.")] = None,
    model: Annotated[Path | None, typer.Option("--model", exists=True, dir_okay=False, readable=True, help="Model (.semcat) for uploads, calibration plots and the class list.")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on. Anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option("--token", envvar="SEMCAT_TOKEN", help="Access token of reviewers (may label, tag, upload)..")] = None,
    read_token: Annotated[str | None, typer.Option("--read-token", envvar="SEMCAT_READ_TOKEN", help="Access token of viewers (read-only)..")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Nobody may change the catalog: every session is a viewer.")] = False,
    storage: Annotated[Path | None, typer.Option("--storage", file_okay=False, help="Folder uploaded images are stored in; default ~/.semcat/storage.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", callback=finite, min=0.001, help="Largest upload request in MB.")] = 200.0,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Server processes (each uses one CPU core); 2 or more for many concurrent users.")] = 1,
    max_decode_mb: Annotated[float, typer.Option("--max-decode-mb", callback=finite, min=1, max=65536, help="Decode budget in MiB (pixels x channels x bytes per sample): a larger image is decoded band by band, reduced.")] = 256.0,
    max_decodes: Annotated[int, typer.Option("--max-decodes", min=1, max=64, help="Images decoded at once per server process (thumbnails, viewer tile levels, uploads); further requests wait.")] = 2,
    retrain_every: Annotated[int, typer.Option("--retrain-every", min=0, max=10**9, help="Retrain and calibrate on the confirmed labels in the background after every N confirmations (semcat retrain); the new model goes live for new requests. 0 = never.")] = 50,
    models_dir: Annotated[Path | None, typer.Option("--models-dir", file_okay=False, help="Folder of retrained models; default one per catalogue under $SEMCAT_HOME/models (as semcat retrain).")] = None,
) -> None:
    """Serve the catalog in a browser: grid, search, image pages, review queue, dashboard, upload, REST API (/docs).

    The newest model retrained on this catalogue (``semcat retrain``, or in the background every
    --retrain-every confirmations) is live; --model is the one before any retrain.

    Example: semcat serve --db catalog.db --workers 2 --retrain-every 50
    """
    import uvicorn
    from semcat.errors import SemcatError
    from semcat.web.app import create_app
    from semcat.web.retraining import after_confirmations
    from semcat.web.settings import InsecureBindError, Settings

    settings = Settings(host=host, port=port, token=token, read_token=read_token, read_only=read_only,
                        model_path=model, storage_dir=storage, max_upload_bytes=int(max_upload_mb * 1e6),
                        max_decode_bytes=int(max_decode_mb * 2**20), max_decodes=max_decodes,
                        retrain_every=retrain_every, models_dir=models_dir)
    if db:
        settings.db_url = db
    try:
        settings.check()
    except InsecureBindError as exc:  # options that would expose the catalog: a usage error (exit 2)
        raise typer.BadParameter(str(exc)) from None
    try:
        app = create_app(settings)
        app.state.semcat.model()  # a corrupt or tampered --model refuses start-up, not every request later
        after_confirmations(app.state.semcat)  # a retrain due before a restart starts now
    except SemcatError as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    if app.state.semcat.settings.read_only and not read_only:  # create_app found the store read-only
        warning("the catalog cannot be written here (a read-only share): serving it read-only")
    shown = f"[{host}]" if ":" in host else host
    link = f"http://{shown}:{port}/"
    if token:
        link += "?token=<your --token>"
    err_console.print(f"semcat: serving {app.state.semcat.catalog!r} at {link} "
                      f"({'read-only' if app.state.semcat.settings.read_only else 'reviewers may label'}); Ctrl-C stops.",
                      soft_wrap=True)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    from semcat.web.settings import settings_to_env

    app.state.semcat.catalog.close()
    settings_to_env(app.state.semcat.settings)
    uvicorn.run("semcat.web.app:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level="warning")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("serve")(serve)
