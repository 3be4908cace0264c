"""MkDocs hook: pages that are generated from the code at build time, so they cannot drift from it.

``<!-- semcat: cli -->`` becomes every command's ``--help``; ``<!-- semcat: schema -->`` the
catalogue's tables and columns, read from the SQLAlchemy models.
"""
from __future__ import annotations

from typing import Any


def _cli_reference() -> str:
    import typer.main
    from typer.testing import CliRunner

    from semcat.cli import app

    runner, parts = CliRunner(), []

    def walk(cmd: Any, path: list[str]) -> None:
        if path:
            text = runner.invoke(app, [*path, "--help"], env={"NO_COLOR": "1", "COLUMNS": "100"}).output
            parts.append(f"## semcat {' '.join(path)}\n\n```text\n{text.rstrip()}\n```\n")
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return "\n".join(parts)


def _schema_reference() -> str:
    from semcat.catalog.schema import Base

    parts = []
    for table in Base.metadata.sorted_tables:
        rows = [f"| `{c.name}` | {c.type} | {'key' if c.primary_key else ''}"
                f"{' → ' + ', '.join(f'`{fk.target_fullname}`' for fk in c.foreign_keys) if c.foreign_keys else ''} | "
                f"{'yes' if c.nullable else 'no'} |" for c in table.columns]
        indexes = ", ".join(f"`{i.name}` ({', '.join(c.name for c in i.columns)})" for i in sorted(table.indexes, key=lambda i: i.name or ""))
        parts.append(f"## `{table.name}`\n\n| column | type | key | may be empty |\n|---|---|---|---|\n"
                     + "\n".join(rows) + (f"\n\nIndexes: {indexes}." if indexes else "") + "\n")
    return "\n".join(parts)


GENERATED = {"<!-- semcat: cli -->": _cli_reference, "<!-- semcat: schema -->": _schema_reference}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, make in GENERATED.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
