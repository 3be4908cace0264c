"""Helpers shared by CLI commands: stderr console, per-file error reporting, exit codes."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.console import Console

err_console = Console(stderr=True, highlight=False)
"""Messages and progress go to stderr so stdout stays machine-readable."""


def error_line(path: object, problem: object) -> None:
    """One clear line per failed file: ``error: PATH: problem``."""
    err_console.print(f"[red]error[/red]: {path}: {problem}", markup=True, soft_wrap=True)


@dataclass
class BatchSummary:
    """Counts a batch command prints at the end; ``exit()`` is non-zero when anything failed."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, path: object, problem: object) -> None:
        self.failed += 1
        self.failures.append((str(path), str(problem)))
        error_line(path, problem)

    def print(self, what: str = "images") -> None:
        parts = [f"{self.ok} {what} ok", f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (already done)")
        err_console.print("summary: " + ", ".join(parts), highlight=False)

    def exit(self) -> None:
        if self.failed:
            raise typer.Exit(code=1)


def is_tty() -> bool:
    return sys.stderr.isatty()


class Engine(str, Enum):
    """Where batch work runs: this machine (threads) or a Spark cluster (``--master``)."""

    local = "local"
    spark = "spark"


SparkConfOpt = Annotated[Optional[list[str]], typer.Option(
    "--conf", metavar="KEY=VALUE",
    help="Spark setting for --engine spark (repeatable), e.g. spark.archives=env.tar.gz#environment "
         "to ship a packed environment (semcat spark pack-env).")]
ChunkOpt = Annotated[int, typer.Option(
    "--chunk-size", min=1, help="Images per Spark job with --engine spark: the unit of progress, of "
                                "resume, and of work lost when the driver dies.")]


def spark_conf(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` → ``{k: v}``; a pair without ``=`` is a usage error naming it."""
    conf = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--conf")
        conf[key.strip()] = value
    return conf
