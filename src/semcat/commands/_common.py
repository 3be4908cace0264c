"""Helpers shared by CLI commands: consoles, escaping of outside text, per-file errors, exit codes."""
from __future__ import annotations

import errno
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from semcat._validation import check_number, check_query_text
from semcat.errors import SemcatWarning


def plain_console(**kwargs: Any) -> Console:
    """A rich console that never interprets what it prints: no markup (``[/]``), no emoji codes
    (``:x:``), no highlighting. Style comes only from ``Text`` objects built in code."""
    return Console(markup=False, emoji=False, highlight=False, **kwargs)


err_console = plain_console(stderr=True)
"""Messages and progress go to stderr so stdout stays machine-readable."""

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    code = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: object) -> str:
    """Outside text (a path, file bytes, metadata, an error naming them) as one printable line.

    Control characters, line separators, bidi overrides and undecodable bytes become escapes
    (``\\n``, ``\\x1b``, ``\\u202e``, ``\\xff``), so a file name cannot forge output lines, hide,
    or crash the output encoder. Markup is not interpreted by semcat's consoles at all.
    """
    return _UNSAFE.sub(_escape, str(value))


def _option_check(check: Callable[..., Any], value: Any, **bounds: Any) -> Any:
    """Run a ``semcat._validation`` check as an option callback: its one-line ``ValueError`` becomes
    a usage error (exit 2) that click prefixes with the option's name."""
    try:
        return check("value", value, **bounds)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).removeprefix("value: ")) from None


def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinities are usage errors (exit 2), never a silent empty result."""
    return _option_check(check_number, value)


def bounded_text(value: str | None) -> str | None:
    """Option callback: search text with control characters or over ``MAX_QUERY_TEXT`` characters is
    a usage error (the web's rule: ``semcat._validation.check_query_text``)."""
    return _option_check(check_query_text, value)


def error(message: object) -> None:
    """One ``error: message`` line on stderr (the message shown escaped)."""
    err_console.print(Text.assemble(("error", "red"), f": {shown(message)}"), soft_wrap=True)


def warning(message: object) -> None:
    """One ``warning: message`` line on stderr (the message shown escaped)."""
    err_console.print(Text.assemble(("warning", "yellow"), f": {shown(message)}"), soft_wrap=True)


def error_line(path: object, problem: object) -> None:
    """One clear line per failed file: ``error: PATH: problem``."""
    error(f"{shown(path)}: {shown(problem)}")


_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


def environment_problem(exc: BaseException) -> str | None:
    """The one-line message of a failure of the machine rather than of semcat (disk full, read-only
    file system or catalog, permission, the database gone), or None for anything else."""
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    if type(exc).__module__.startswith("sqlalchemy") and type(exc).__name__ == "OperationalError":
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or ["unknown error"])[0]
        return f"the catalog database failed: {first}"
    return None


class SemcatGroup(TyperGroup):
    """The command group: a ``SemcatError`` (a refused model, a read-only catalogue, ...) or an
    environment failure ends a command with one error line and exit 1, never a traceback (a bug
    still shows its traceback)."""

    def invoke(self, ctx: Any) -> Any:
        from semcat.errors import SemcatError

        try:
            return super().invoke(ctx)
        except Exception as exc:
            problem = str(exc) if isinstance(exc, SemcatError) else environment_problem(exc)
            if problem is None:
                raise
            error(problem)
            raise typer.Exit(code=1) from None


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
