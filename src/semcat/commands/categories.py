"""CLI commands ``semcat category add|list``: categories beyond the model's classes."""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from semcat.commands._common import err_console, error
from semcat.commands.catalog import DbOpt, _open

category_app = typer.Typer(
    name="category",
    help="Create and list label categories beyond the model's classes (a label outside them is refused).",
    no_args_is_help=True,
)


@category_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="The new category, e.g. Nanotubes (1-64 printable characters).", show_default=False)],
    who: Annotated[Optional[str], typer.Option("--who", help="Who creates it (default: $USER).")] = None,
    db: DbOpt = None,
) -> None:
    """Create a category so that images can be labelled with it (creating it again is a no-op).

    Example: semcat category add Nanotubes && semcat label IMAGE.tif Nanotubes
    """
    import getpass

    cat = _open(db, create=True)
    try:
        name = cat.add_category(name, who=who or getpass.getuser())
    except ValueError as e:
        error(e)
        raise typer.Exit(code=2) from None
    finally:
        cat.close()
    err_console.print(f"category {name!r} ready")


@category_app.command("list")
def list_cmd(db: DbOpt = None) -> None:
    """Every label the catalog accepts, as JSON: the defaults, created and predicted categories.

    Example: semcat category list --db sqlite:///catalog.db
    """
    cat = _open(db)
    try:
        typer.echo(json.dumps({"known": cat.known_labels(), "created": cat.categories()}, indent=1))
    finally:
        cat.close()


def register(app: typer.Typer) -> None:
    """Add the ``semcat category`` group to the top-level app."""
    app.add_typer(category_app)
