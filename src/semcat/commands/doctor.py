"""CLI command ``semcat doctor``: check this machine for semcat and say how to fix what is missing."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from semcat.commands._common import FORMAT_HELP, Format, JsonAlias, chosen_format, err_console, shown, write_rows
from semcat.doctor import OK, failed, run_checks


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("doctor")(doctor_cmd)


def doctor_cmd(
    db: Annotated[Optional[str], typer.Option(
        "--db", help="Also check this catalogue: postgresql://USER@HOST/DB or sqlite:///PATH.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help=FORMAT_HELP + " table goes to stderr.")] = Format.table,
    as_json: JsonAlias = False,
) -> None:
    """Report the CPU's instruction sets, the inference runtime auto picks, OpenVINO/torch versions,
    the feature cache, the catalogue (--db), Java for Spark and Chromium, with a fix for each problem.

    Example: semcat doctor --db postgresql://postgres@127.0.0.1:5432/semcat

    Exit code 1 when something required (a runtime, a writable cache, the --db catalogue) is missing.
    """
    fmt = chosen_format(fmt, as_json=as_json)
    checks = run_checks(db)
    if fmt is not Format.table:
        write_rows((c.to_dict() for c in checks), fmt)
    else:
        for c in checks:
            colour = "green" if c.status == OK else "red" if failed([c]) else "yellow"
            err_console.print(Text.assemble((f"{c.status:<4}", colour), f" {c.name:<9} {shown(c.detail)}"),
                              soft_wrap=True)
            if c.fix:
                err_console.print(f"     {'':<9} fix: {shown(c.fix)}", soft_wrap=True)
    if failed(checks):
        raise typer.Exit(code=1)
