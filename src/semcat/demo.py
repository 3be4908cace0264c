"""The main job on built-in synthetic data: every stage of semcat, run as the CLI commands a user
would type, so the demo doubles as a tour (each command is printed before it runs)."""
from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import click


UNSEEN = "Tips"
"""The category the demo model never sees: its images arrive later and should be decided ``unknown``
(the detector flags it best of the ten, ``benchmarks/results/ood.md``)."""
GROUP_BY = "^([^_]+_[^_]+)_"
"""The synthetic archive's sample names (USER_SAMPLE_NNN): shots of one sample stay in one fold and split."""


def demo_steps(out: Path, *, per_class: int, size: int, seed: int) -> list[tuple[str, list[str]]]:
    """The demo as (title, argv) pairs: train on one synthetic set, then catalogue a second one."""
    from semcat import CATEGORIES

    data, incoming, model = out / "data", out / "incoming", out / "model.semcat"
    db = f"sqlite:///{out / 'catalog.db'}"
    known = ",".join(c for c in CATEGORIES if c != UNSEEN)
    return [
        (f"Generate a labelled synthetic SEM set (9 NFFA categories, data bars; {UNSEEN} is kept unseen)",
         ["synth", str(data), "--per-class", str(per_class), "--size", str(size), "--seed", str(seed),
          "--categories", known]),
        ("Summarise it: classes, stable hash-based train/val/test split",
         ["dataset", "summary", str(data)]),
        ("Train the softmax head on cached EfficientNet-Lite0 features (penalty by 5-fold cross-validation)",
         ["train", str(data), "--out", str(model), "--report-dir", str(out / "train"), "--group-by", GROUP_BY]),
        ("Calibrate on every labelled image, out of fold: auto / suggest / manual thresholds, unknown detector; "
         "--guarantee: only a band whose 95% interval proves the target precision is labelled automatically",
         ["calibrate", str(model), str(data), "--out", str(out / "calibration"), "--group-by", GROUP_BY, "--guarantee"]),
        (f"New images arrive (another seed, never seen in training; some ambiguous blends; {UNSEEN} too)",
         ["synth", str(incoming), "--per-class", str(max(2, per_class // 8)), "--size", str(size),
          "--seed", str(seed + 1), "--blends", str(max(4, per_class // 4))]),
        ("Evaluate the model on them", ["evaluate", str(model), str(incoming), "--out", str(out / "evaluate")]),
        ("Classify them", ["classify", str(model), str(incoming), "--format", "csv", "--out", str(out / "predictions.csv")]),
        ("Catalogue them with metadata and predictions",
         ["ingest", str(incoming), f"{incoming}-blends", "--db", db, "--model", str(model)]),
        ("What the catalogue holds", ["stats", "--db", db]),
        ("Search it: the least certain unconfirmed images, for review",
         ["search", "--db", db, "--unconfirmed", "--order", "score", "--limit", "5"]),
        ("Write the offline HTML report", ["report", str(model), "--out", str(out / "report.html")]),
    ]


def run_demo(command: click.Command, out: Path, *, per_class: int = 40, size: int = 256, seed: int = 0,
             echo: Callable[[str], None] = click.echo) -> None:
    """Run every demo step in-process through ``command`` (the ``semcat`` command group, handed in
    by the caller so this module never imports the CLI that imports it); stop at the first failing
    step with its exit code."""
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    steps = demo_steps(out, per_class=per_class, size=size, seed=seed)
    for i, (title, argv) in enumerate(steps, 1):
        echo(f"\n[{i}/{len(steps)}] {title}\n$ semcat {shlex.join(argv)}", err=True)
        _invoke(command, argv)
    echo(f"\ndemo finished in {time.perf_counter() - t_start:.0f} s; outputs in {out}", err=True)
    echo(f"browse and review: semcat serve --db sqlite:///{out / 'catalog.db'} --model {out / 'model.semcat'}",
         err=True)


def _invoke(command: click.Command, argv: Sequence[str]) -> None:
    # Outside standalone mode click returns (or raises) a command's exit code instead of exiting.
    try:
        code = command.main(list(argv), prog_name="semcat", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    if isinstance(code, int) and code != 0:
        raise SystemExit(code)
