"""CLI command: ``semcat demo`` — the whole pipeline on built-in synthetic data."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the top-level app."""

    @app.command("demo")
    def demo(
        ctx: typer.Context,
        out: Annotated[Path, typer.Argument(help="Folder for the demo's data, model, catalogue and report.")] = Path("demo-output"),
        per_class: Annotated[int, typer.Option(min=6, help="Training images per category.")] = 40,
        size: Annotated[int, typer.Option(min=64, help="Side of the synthetic images in pixels.")] = 256,
        seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 0,
    ) -> None:
        """Generate synthetic SEM data, then train, evaluate, calibrate, classify and catalogue it.

        Each step runs the real semcat command (printed before it runs), so the demo is also a tour.
        Re-running reuses what is already there (images, cached features, catalogue).

        Example: semcat demo demo-output --per-class 40
        """
        from semcat.demo import run_demo

        run_demo(ctx.find_root().command, out, per_class=per_class, size=size, seed=seed)
