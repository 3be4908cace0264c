"""Docs stay true: every CLI command has working --help and is documented in the README or the manual."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from semcat.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MANUAL = README + "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").rglob("*.md")))


def _command_paths() -> list[str]:
    root = typer.main.get_command(app)
    paths: list[str] = []

    def walk(cmd: Any, prefix: str) -> None:
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click classes)
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            paths.append(prefix)

    walk(root, "")
    return paths


COMMANDS = _command_paths()


def test_cli_has_the_core_commands() -> None:
    for name in ("synth", "dataset summary", "features", "train", "classify", "calibrate", "ingest", "serve"):
        assert name in COMMANDS, f"missing command: semcat {name}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_works(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_documented_in_readme(command: str) -> None:
    assert re.search(rf"semcat {re.escape(command)}\b", MANUAL), f"`semcat {command}` is not in README.md or docs/"


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_block = README.split("```", 2)[1]
    assert "make demo" in first_block and "make test" in first_block
