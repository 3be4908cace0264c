"""Writing a benchmark's results file: one place, so every script writes atomically and alike.

Every results file opens with the same header (:func:`header`): the script and its arguments, the
commit, the machine (CPU model and instruction sets, from ``semcat._sysinfo``) and the date, so
that any figure quoted from it can be traced and rerun. ``tests/test_figures.py`` checks it.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from semcat._io import atomic_write_text
from semcat._sysinfo import machine_description

ROOT = Path(__file__).resolve().parent.parent
HEADER_FIELDS = ("script", "commit", "machine", "date")
"""The header lines every results file carries (``- script: ...``), in this order."""


def commit() -> str:
    """The short commit of the code being measured, marked when tracked code (src/, benchmarks/ but
    not their results) differs from it: edits to the docs do not change a measurement."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        sha = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks",
                    ":(exclude)benchmarks/results")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + (" (with uncommitted changes)" if dirty else "")


def header(title: str, *, started: float | None = None, script: str | None = None,
           argv: Sequence[str] | None = None) -> list[str]:
    """The opening lines of a results file: ``# title`` then script, commit, machine and date.

    ``started`` (a ``time.perf_counter()`` value) adds the run time; ``script``/``argv`` default to
    the running script and its command-line arguments (pass them when a wrapper calls ``main``).
    """
    name = Path(script or sys.argv[0]).name
    args = shlex.join(sys.argv[1:] if argv is None else list(argv))
    date = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    if started is not None:
        date += f"; run time {time.perf_counter() - started:.0f} s"
    date += "; load average (1/5/15 min) " + "/".join(f"{x:.1f}" for x in os.getloadavg())  # a shared machine's noise
    return [f"# {title}", "",
            f"- script: `{f'python benchmarks/{name} {args}'.rstrip()}`",
            f"- commit: {commit()}",
            f"- machine: {machine_description()}",
            f"- date: {date}"]


def source_tree(baseline: str, tmp: Path) -> Path:
    """A folder holding ``semcat/`` to measure against: ``baseline`` itself, or the ``src`` of that
    git commit, extracted under ``tmp``."""
    if Path(baseline).is_dir():
        return Path(baseline).resolve()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", baseline, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp / "src"


def write_results(out: Path, lines: list[str]) -> None:
    """Replace ``out`` (folders created) with ``lines`` as Markdown, atomically, and echo them.

    ``lines`` must open with :func:`header`'s lines: a results file without them is refused.
    """
    fields = [line.split(":", 1)[0].removeprefix("- ") for line in lines[2:2 + len(HEADER_FIELDS)]]
    if not lines or not lines[0].startswith("# ") or tuple(fields) != HEADER_FIELDS:
        raise ValueError(f"{out.name}: a results file must open with benchmarks/_results.header(...)")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))
