"""Writing a benchmark's results file: one place, so every script writes atomically and alike."""
from __future__ import annotations

from pathlib import Path

from semcat._io import atomic_write_text


def write_results(out: Path, lines: list[str]) -> None:
    """Replace ``out`` (folders created) with ``lines`` as Markdown, atomically, and echo them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "\n".join(lines) + "\n")
    print("\n".join(lines))
