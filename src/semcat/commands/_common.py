"""Helpers shared by CLI commands: consoles, escaping of outside text, per-file errors, exit codes."""
from __future__ import annotations

import csv
import errno
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from semcat._validation import check_number, check_query_text
from semcat.errors import SemcatWarning
from semcat.units import plural


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


def named_paths(paths: list[Path] | None) -> list[Path] | None:
    """Argument callback: a path named on the command line that is not there at all is a usage
    error (exit 2); one that is there but unreadable (a symlink loop, a FIFO, a dangling link)
    goes on to the batch, which names it in an error line and carries on."""
    missing = [p for p in paths or [] if not os.path.lexists(p)]
    if missing:
        raise typer.BadParameter(f"{shown(missing[0])} does not exist"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return paths


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


USAGE = 2
"""Exit code of a usage error: click's own (a bad option, a missing argument) and ours (a path named
on the command line that does not exist, a missing catalogue). Failed work exits 1, success 0."""


def _hide_flag_types(command: Any) -> None:
    """No ``<bool>`` type column on on/off flags in ``--help`` (it suggests they take a value)."""
    from typer._click import Context

    help_option = command.get_help_option(Context(command))  # created once, cached by the command
    for param in [*getattr(command, "params", []), *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub)


class SemcatGroup(TyperGroup):
    """The command line's one error boundary.

    A usage error (click's, or a ``typer.BadParameter`` a command raises) is one ``error: ...``
    line and exit 2, never click's boxed usage; a ``SemcatError`` (a refused model, a read-only
    catalogue, ...) or an environment failure is one ``error: ...`` line and exit 1. A bug still
    shows its traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _hide_flag_types(self)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort

        if not standalone_mode:  # the demo calls commands in-process and handles their outcome
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            if not isinstance(exc, NoArgsIsHelpError):  # `semcat align` alone: its help is shown already
                error(usage_line(exc))
            sys.exit(exc.exit_code)
        except Abort:  # end of input at a prompt
            error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

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


def usage_line(exc: Any) -> str:
    """A click error as one line, naming the command whose ``--help`` explains it."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and exc.exit_code == USAGE else ""
    return " ".join(exc.format_message().split()) + hint


@dataclass
class BatchSummary:
    """Counts a batch command prints at the end; ``exit()`` is non-zero when anything failed or
    when there was nothing to do (empty input is a warning, never a silent success)."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, path: object, problem: object) -> None:
        self.failed += 1
        self.failures.append((str(path), str(problem)))
        error_line(path, problem)

    @property
    def empty(self) -> bool:
        return not (self.ok or self.failed or self.skipped)

    def print(self, what: str = "images") -> None:
        if self.empty:
            warning(f"no {what} found: nothing was done")
        parts = [f"{plural(self.ok, what)} ok", f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (already done)")
        err_console.print("summary: " + ", ".join(parts), highlight=False)

    def exit(self) -> None:
        if self.failed or self.empty:
            raise typer.Exit(code=1)


class Format(str, Enum):
    """``--format`` of commands that print rows: a table for people, or data for programs."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


class DocFormat(str, Enum):
    """``--format`` of commands that print one result (a summary, an evaluation): text or one JSON document."""

    table = "table"
    json = "json"


DOC_FORMAT_HELP = "Output on stdout: table (text for people) or json (one document)."
FORMAT_HELP = "Output on stdout: table (text for people), json (one array), jsonl (one object a line) or csv."
JsonAlias = Annotated[bool, typer.Option("--json", hidden=True, help="Old spelling of --format json.")]
CsvAlias = Annotated[bool, typer.Option("--csv", hidden=True, help="Old spelling of --format csv.")]


def chosen_format(fmt: Any, *, as_json: bool = False, as_csv: bool = False, json_is: Any = Format.json) -> Any:
    """``--format``, or what an old ``--json`` / ``--csv`` flag meant (``json_is``: JSON Lines where
    ``--json`` printed one object a line); the old flags are kept for one release."""
    if as_json and as_csv:
        raise typer.BadParameter("--json and --csv are exclusive; use --format", param_hint="--format")
    if as_json or as_csv:
        new = json_is if as_json else Format.csv
        warning(f"{'--json' if as_json else '--csv'} is deprecated: use --format {new.value}")
        return new
    return fmt


def write_rows(rows: Iterable[dict[str, Any]], fmt: Format, stream: IO[str] | None = None,
               columns: list[str] | None = None) -> int:
    """Stream rows as a JSON array, JSON Lines or CSV (``columns``: the CSV header, default the
    first row's keys; nested values become JSON text); returns how many. Each row is flushed, so
    a long batch shows its results as it goes."""
    out = stream or sys.stdout
    n = 0
    writer = None
    for row in rows:
        if fmt is Format.csv:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=columns or list(row), lineterminator="\n",
                                        extrasaction="ignore")
                writer.writeheader()
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else "" if v is None else v
                             for k, v in row.items()})
        elif fmt is Format.jsonl:
            out.write(_json_text(row) + "\n")
        else:
            out.write(("," if n else "[") + "\n" + _json_text(row))
        n += 1
        out.flush()
    if fmt is Format.json:
        out.write("\n]\n" if n else "[]\n")
    elif fmt is Format.csv and writer is None and columns:
        csv.DictWriter(out, fieldnames=columns, lineterminator="\n").writeheader()
    return n


def _json_text(row: dict[str, Any]) -> str:
    """JSON with readable UTF-8, except where a value holds a name that is not UTF-8 (lone
    surrogates from the file system): then ASCII escapes, so the exact name survives the round trip."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(row)
    return text


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
ScaleOpt = Annotated[Optional[str], typer.Option(
    "--scale", metavar="PIXEL_NM|auto",
    help="Scale normalisation with the pixel size: images that record theirs (vendor TIFF tags or a sidecar) "
         "are cropped over a fixed physical width, so the network input's pixel size is PIXEL_NM nm; auto = "
         "the median of the training images. Images without a pixel size keep the centre crop (counted in the "
         "summary). Off by default.")]


def scale_note(scale_nm: float | None, unscaled: int, total: int) -> None:
    """The scale normalisation in use and how many images fell back to the centre crop (stderr)."""
    if scale_nm is not None:
        err_console.print(f"scale normalisation: network-input pixel size {scale_nm:.4g} nm; {unscaled} of {total} "
                          "images record no pixel size and keep the centre crop", highlight=False, markup=False)


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
