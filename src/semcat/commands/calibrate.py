"""CLI commands: ``semcat calibrate`` (thresholds, temperature, unknown detector) and ``semcat report``."""
from __future__ import annotations

import json
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from semcat.commands._common import (
    PRECISION_HELP,
    BatchSummary,
    Precision,
    err_console,
    error,
    finite,
    use_model_precision,
    warning,
)


class Split(str, Enum):
    val = "val"
    test = "test"
    all = "all"


def _features(model: Any, samples: list[Any], summary: BatchSummary, what: str) -> tuple[Any, list[str]]:
    """Features (cached by the FeatureStore, so a re-run resumes) and labels of the readable samples."""
    from semcat.model import extract_backbone_features

    err_console.print(f"{what}: {len(samples)} images")
    ok, _, X, errors, _ = extract_backbone_features(
        [s.path for s in samples], model.feature_specs, view=model.view, crop_databar=model.crop_databar,
        store="default", progress=True)
    for path, problem in errors:
        summary.fail(path, problem)
    label = {str(s.path): s.label for s in samples}
    summary.ok += len(ok)
    return X, [label[p] for p in ok]


def _warn_if_few_training_images(labels: list[str]) -> None:
    """Say when the unknown test has too few training images per class to catch an unseen SEM category."""
    from semcat.ood import UNSEEN_CATEGORY_MIN_PER_CLASS

    if not labels:
        return
    cls, n = min(Counter(labels).items(), key=lambda item: item[1])
    if n < UNSEEN_CATEGORY_MIN_PER_CLASS:
        warning(
            f"the unknown test learned from only {n} training images of {cls!r}; below "
            f"~{UNSEEN_CATEGORY_MIN_PER_CLASS} per class it still flags photographs but misses more of an SEM "
            "category the model never saw (README \"Limits\")")


def _print_summary(cal: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="decision bands (held-out images)")
    for col in ("band", "images", "share", "top-1 precision", "top-2 accuracy"):
        table.add_column(col, justify="left" if col == "band" else "right")
    for name, b in cal["bands"].items():
        fmt = (lambda v: "–" if v is None else f"{v:.3f}")  # noqa: E731
        table.add_row(name, str(b["count"]), f"{100 * b['share']:.1f}%", fmt(b["precision"]), fmt(b["top2_accuracy"]))
    err_console.print(table)
    t_auto = "never" if cal["t_auto"] > 1 else f"{cal['t_auto']:.3f}"
    err_console.print(
        f"temperature {cal['temperature']:.3f}, t_auto {t_auto}, t_suggest {cal['t_suggest']:.3f}, "
        f"ECE {cal['ece_before']:.3f} → {cal['ece_after']:.3f}, unknown threshold {cal['ood']['threshold']:.4f}")


def calibrate(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", exists=True, dir_okay=False,
                                               help="Trained .semcat model; rewritten with the calibration.")],
    data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", exists=True, file_okay=False,
                                             help="The training DATA_DIR (one folder per class): its train split "
                                                  "is the unknown detector's reference, its held-out split "
                                                  "calibrates unless --labelled-dir is given.")],
    split: Annotated[Split, typer.Option(help="Held-out split of DATA_DIR to calibrate on ('all' includes "
                                              "training images and is optimistic).")] = Split.val,
    labelled_dir: Annotated[Path | None, typer.Option(exists=True, file_okay=False,
                                                      help="Calibrate on this separate labelled folder "
                                                           "(one sub-folder per class) instead of a split.")] = None,
    target_precision: Annotated[float, typer.Option(callback=finite, min=0.5, max=1.0,
                                                    help="Precision the automatic labels must reach.")] = 0.95,
    quantile: Annotated[float, typer.Option(callback=finite, min=0.5, max=0.999,
                                            help="Share of held-out known images the unknown test must "
                                                 "accept (its threshold is this quantile).")] = 0.97,
    out: Annotated[Path | None, typer.Option(file_okay=False,
                                             help="Folder for the plots and calibration.json "
                                                  "(default: MODEL's name + '.calibration').")] = None,
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.auto,
) -> None:
    """Fit temperature, decision thresholds and the unknown detector on held-out images; store them in MODEL.

    Writes the paper's score plots (histograms, normalised distributions, P(correct | top score)) and a
    reliability diagram to --out, prints the thresholds as JSON on stdout. Features come from the
    feature cache, so an interrupted run resumes where it stopped.
    """
    from semcat.calibration import calibrate_model
    from semcat.dataset import scan_dataset
    from semcat.errors import SemcatError
    from semcat.model import load_model
    from semcat.reports import calibration_figures, save_figures

    try:
        model = load_model(model_path)
        use_model_precision(model, precision)
    except SemcatError as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    data = scan_dataset(data_dir)
    if labelled_dir is not None:
        heldout, source = scan_dataset(labelled_dir).samples, str(labelled_dir)
    else:
        heldout = data.samples if split is Split.all else data.split(split.value)
        source = f"{data_dir} ({split.value} split)"
    unknown = sorted({s.label for s in heldout} - set(model.classes))
    if unknown:
        warning(f"classes {unknown} are not in the model; their images are left out")
        heldout = [s for s in heldout if s.label in model.classes]
    train = data.split("train")
    if len(heldout) < 2 or len(train) < 4:
        error(f"need held-out images (got {len(heldout)}) and training images (got {len(train)}); "
              "check DATA_DIR / --split / --labelled-dir")
        raise typer.Exit(code=1)
    if len(heldout) < 100:
        warning(f"only {len(heldout)} held-out images: thresholds will be rough")
    summary = BatchSummary()
    X_val, y_val = _features(model, heldout, summary, "held-out")
    X_train, y_train = _features(model, train, summary, "training reference")
    _warn_if_few_training_images(y_train)
    try:
        from semcat.ood import UnknownDetector

        cal = calibrate_model(model, X_val, y_val, X_train, target_precision=target_precision, source=source,
                              y_train=y_train,
                              detector=UnknownDetector(quantile=quantile))
    except ValueError as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    model.save(model_path)
    out_dir = out or model_path.with_name(model_path.name + ".calibration")
    from semcat._io import atomic_write_text

    paths = save_figures(calibration_figures(model.extra_tensors["calib.stats"], cal), out_dir)
    atomic_write_text(out_dir / "calibration.json", json.dumps(cal, indent=2))
    _print_summary(cal)
    err_console.print(f"stored in {model_path}; plots: {', '.join(p.name for p in paths)} in {out_dir}")
    typer.echo(json.dumps({k: cal[k] for k in ("temperature", "t_auto", "t_suggest", "target_precision",
                                                "ece_before", "ece_after", "bands")}
                          | {"unknown_threshold": cal["ood"]["threshold"]}))
    summary.print()
    summary.exit()


def report(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", exists=True, dir_okay=False,
                                               help="A .semcat model (calibrated for the plots).")],
    out: Annotated[Path | None, typer.Option(dir_okay=False,
                                             help="HTML file to write (default: MODEL with .html).")] = None,
) -> None:
    """Write an offline, single-file HTML report: metrics, confusion matrix, calibration plots, bands."""
    from semcat.errors import SemcatError
    from semcat.model import load_model
    from semcat.reports import write_report

    try:
        model = load_model(model_path)
    except SemcatError as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    path = write_report(model, out or model_path.with_suffix(".html"))
    if not model.calibration:
        warning("the model is not calibrated; run `semcat calibrate MODEL DATA_DIR` for the plots")
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("calibrate")(calibrate)
    app.command("report")(report)
