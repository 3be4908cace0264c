"""Helpers shared by CLI commands: stderr console, per-file error reporting, exit codes."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from enum import Enum

import typer
from rich.console import Console

from semcat.errors import SemcatWarning

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


def print_semcat_warnings() -> None:
    """Show semcat's own warnings as one plain ``warning: ...`` line each (not Python's two-line
    form with a source line); other warnings keep Python's format."""
    shown = warnings.showwarning
    if getattr(shown, "semcat", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, SemcatWarning):
            err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
        else:
            shown(message, category, filename, lineno, file, line)

    show.semcat = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def is_tty() -> bool:
    return sys.stderr.isatty()


class Engine(str, Enum):
    """Where batch work runs: this machine (threads) or a Spark cluster (``--master``)."""

    local = "local"
    spark = "spark"


class Precision(str, Enum):
    """Feature precision: ``--precision`` on every command that computes features."""

    auto = "auto"
    fp32 = "fp32"
    int8 = "int8"


PRECISION_HELP = ("Feature precision: fp32, int8 (the NNCF-quantised backbone built by `semcat quantize`), "
                  "or auto: int8 where the CPU has VNNI/AMX and a quantised model that met parity exists, "
                  "else fp32; with a model, the precision its head was trained on.")


def use_model_precision(model: object, precision: Precision) -> None:
    """Set the model's feature precision; print the measured drift when it differs from training."""
    note = model.use_precision(precision.value)  # type: ignore[attr-defined]
    if note:
        err_console.print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)
