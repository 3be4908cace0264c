"""CLI command ``semcat doctor``: check this machine for semcat and say how to fix what is missing."""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.text import Text

from semcat.commands._common import err_console, shown
from semcat.doctor import OK, failed, run_checks


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("doctor")(doctor_cmd)


def doctor_cmd(
    db: Annotated[Optional[str], typer.Option(
        "--db", help="Also check this catalogue: postgresql://USER@HOST/DB or sqlite:///PATH.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as a JSON list.")] = False,
) -> None:
    """Report the CPU's instruction sets, the inference runtime auto picks, OpenVINO/torch versions,
    the feature cache, the catalogue (--db), Java for Spark and Chromium, with a fix for each problem.

    Example: semcat doctor --db postgresql://postgres@127.0.0.1:5432/semcat

    Exit code 1 when something required (a runtime, a writable cache, the --db catalogue) is missing.
    """
    checks = run_checks(db)
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in checks], indent=1))
    else:
        for c in checks:
            colour = "green" if c.status == OK else "red" if failed([c]) else "yellow"
            err_console.print(Text.assemble((f"{c.status:<4}", colour), f" {c.name:<9} {shown(c.detail)}"),
                              soft_wrap=True)
            if c.fix:
                err_console.print(f"     {'':<9} fix: {shown(c.fix)}", soft_wrap=True)
    if failed(checks):
        raise typer.Exit(code=1)
