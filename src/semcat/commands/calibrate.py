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
    plural,
)


class Split(str, Enum):
    crossfit = "crossfit"
    val = "val"
    test = "test"
    all = "all"


def _features(model: Any, samples: list[Any], summary: BatchSummary, what: str) -> tuple[Any, list[str], list[str]]:
    """Features (cached by the FeatureStore, so a re-run resumes), labels and paths of the readable samples."""
    err_console.print(f"{what}: {plural(len(samples), 'images')}")
    res = model.spec.extract([s.path for s in samples], progress=True)
    for path, problem in res.errors:
        summary.fail(path, problem)
    label = {str(s.path): s.label for s in samples}
    summary.ok += len(res.paths)
    return res.features, [label[p] for p in res.paths], res.paths


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

    from semcat.reports import threshold_summary

    table = Table(title=f"decision bands (held-out images: {cal['heldout']['source']})")
    for col in ("band", "images", "share", "top-1 precision [95% CI]", "top-2 accuracy [95% CI]"):
        table.add_column(col, justify="left" if col == "band" else "right")

    def fmt(v: float | None, ci: list[float] | None) -> str:
        return "–" if v is None else f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"

    for name, b in cal["bands"].items():
        table.add_row(name, str(b["count"]), f"{100 * b['share']:.1f}%", fmt(b["precision"], b.get("precision_interval")),
                      fmt(b["top2_accuracy"], b.get("top2_interval")))
    err_console.print(table)
    for line in threshold_summary(cal):
        err_console.print(line, soft_wrap=True, highlight=False, markup=False)
    fitted = cal.get("temperature_fitted", cal["temperature"])
    kept = "" if fitted == cal["temperature"] else f" (fitted {fitted:.3f} did not beat 1 beyond noise, not used)"
    err_console.print(f"temperature {cal['temperature']:.3f}{kept}, ECE {cal['ece_before']:.3f} → {cal['ece_after']:.3f}")


def calibrate(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", exists=True, dir_okay=False,
                                               help="Trained .semcat model; rewritten with the calibration.")],
    data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", exists=True, file_okay=False,
                                             help="The training DATA_DIR (one folder per class). By default every "
                                                  "image outside its test split calibrates, out of fold.")],
    split: Annotated[Split, typer.Option(help="crossfit (default): out-of-fold predictions over every image "
                                              "outside the test split; val/test: that split of DATA_DIR, with "
                                              "the train split as the unknown detector's reference ('all' "
                                              "includes training images and is optimistic).")] = Split.crossfit,
    folds: Annotated[int, typer.Option(min=2, help="Folds of --split crossfit.")] = 5,
    group_by: Annotated[str | None, typer.Option(help="Regex whose first group names the sample in each file "
                                                      "name ('folder': the sub-folder): crossfit folds keep a "
                                                      "sample's images together (use the train command's). "
                                                      "Default: file-name series, the name less its shot "
                                                      "counter (cells34_127.tif -> cells34).")] = None,
    guarantee: Annotated[bool, typer.Option("--guarantee", help="Choose t_auto so that the lower end of the "
                                                                "auto band's 95% interval meets the target "
                                                                "(default: the observed precision does).")] = False,
    labelled_dir: Annotated[Path | None, typer.Option(exists=True, file_okay=False,
                                                      help="Calibrate on this separate labelled folder "
                                                           "(one sub-folder per class) instead of a split.")] = None,
    target_precision: Annotated[float, typer.Option(callback=finite, min=0.5, max=1.0,
                                                    help="Precision the automatic labels must reach.")] = 0.95,
    quantile: Annotated[float, typer.Option(callback=finite, min=0.5, max=0.999,
                                            help="Share of held-out known images the unknown test must "
                                                 "accept (its threshold is this quantile).")] = 0.97,
    out: Annotated[Path | None, typer.Option("--out", "-o", file_okay=False,
                                             help="Folder for the plots and calibration.json "
                                                  "(default: MODEL's name + '.calibration').")] = None,
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.auto,
) -> None:
    """Fit temperature, decision thresholds and the unknown detector on held-out images; store them in MODEL.

    By default every labelled image outside the test split is scored by a head (and an unknown
    detector) fitted on the other folds, so small sets calibrate on all their images. Prints each
    threshold with the precision or rate behind it, its 95% interval and the count, and one line
    when the images cannot support --target-precision. Writes the paper's score plots (histograms,
    normalised distributions, P(correct | top score)) and a reliability diagram to --out, prints the
    thresholds as JSON on stdout. Features come from the feature cache, so an interrupted run resumes.

    Example: semcat calibrate model.semcat data/ --group-by '^([^_]+_[^_]+)_' --guarantee
    """
    from semcat.calibration import calibrate_model
    from semcat.dataset import scan_dataset
    from semcat.errors import SemcatError
    from semcat.model import load_model

    try:
        model = load_model(model_path)
        use_model_precision(model, precision)
    except SemcatError as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    try:
        data = scan_dataset(data_dir, group_by=group_by)
    except ValueError as exc:  # no class folders: failed work, like an empty folder
        error(exc)
        raise typer.Exit(code=1) from None
    if split is Split.crossfit and labelled_dir is None:
        _calibrate_crossfit(model, model_path, data, folds=folds, grouped=group_by is not None,
                            target_precision=target_precision, guarantee=guarantee, quantile=quantile, out=out)
        return
    if split is Split.crossfit:
        split = Split.val  # --labelled-dir: the separate folder is the held-out set
    if split is Split.val and labelled_dir is None and (model.meta.get("training") or {}).get("protocol") == "crossfit":
        err_console.print("warning: this model was trained on the val split too (train --split crossfit), so "
                          "calibrating on it is optimistic; use the default --split crossfit", soft_wrap=True)
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
    X_val, y_val, _ = _features(model, heldout, summary, "held-out")
    X_train, y_train, _ = _features(model, train, summary, "training reference")
    _warn_if_few_training_images(y_train)
    try:
        from semcat.ood import UnknownDetector

        cal = calibrate_model(model, X_val, y_val, X_train, target_precision=target_precision, source=source,
                              y_train=y_train, guarantee=guarantee,
                              detector=UnknownDetector(quantile=quantile))
    except ValueError as exc:
        error(exc)
        raise typer.Exit(code=1) from None
    _finish(model, model_path, cal, out, summary)


def _calibrate_crossfit(model: Any, model_path: Path, data: Any, *, folds: int, grouped: bool,
                        target_precision: float, guarantee: bool, quantile: float, out: Path | None) -> None:
    """``--split crossfit``: every image outside the test split, out of fold."""
    from semcat.calibration import calibrate_crossfit
    from semcat.crossfit import fold_groups
    from semcat.ood import UnknownDetector

    pool = [s for s in data.samples if s.split != "test"]
    unknown = sorted({s.label for s in pool} - set(model.classes))
    if unknown:
        err_console.print(f"warning: classes {unknown} are not in the model; their images are left out")
        pool = [s for s in pool if s.label in model.classes]
    if len(pool) < 4:
        error(f"need labelled images outside the test split (got {len(pool)}); check DATA_DIR")
        raise typer.Exit(code=1)
    summary = BatchSummary()
    X, labels, ok = _features(model, pool, summary, "labelled (cross-fitted)")
    group = {str(s.path): s.group for s in pool}
    _warn_if_few_training_images(labels)
    try:
        groups, warnings, _ = fold_groups(ok, labels, [group[p] for p in ok] if grouped else None)
        cal, more = calibrate_crossfit(model, X, labels, groups=groups, folds=folds,
                                           target_precision=target_precision, guarantee=guarantee,
                                           detector=UnknownDetector(quantile=quantile))
    except ValueError as exc:
        err_console.print(f"error: {exc}", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(code=1) from None
    for line in warnings + more:
        err_console.print(f"warning: {line}", soft_wrap=True, highlight=False, markup=False)
    _finish(model, model_path, cal, out, summary)


def _finish(model: Any, model_path: Path, cal: dict[str, Any], out: Path | None, summary: BatchSummary) -> None:
    """Save MODEL, write the plots and calibration.json, print the summary and the JSON line."""
    from semcat.reports import calibration_figures, save_figures

    model.save(model_path)
    out_dir = out or model_path.with_name(model_path.name + ".calibration")
    from semcat._io import atomic_write_text

    paths = save_figures(calibration_figures(model.extra_tensors["calib.stats"], cal), out_dir)
    atomic_write_text(out_dir / "calibration.json", json.dumps(cal, indent=2))
    _print_summary(cal)
    err_console.print(f"stored in {model_path}; plots: {', '.join(p.name for p in paths)} in {out_dir}")
    typer.echo(json.dumps({k: cal[k] for k in ("temperature", "t_auto", "t_suggest", "target_precision",
                                                "guarantee", "labels_needed", "ece_before", "ece_after", "bands")}
                          | {"unknown_threshold": cal["ood"]["threshold"]}))
    summary.print()
    summary.exit()


def report(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", exists=True, dir_okay=False,
                                               help="A .semcat model (calibrated for the plots).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False,
                                             help="HTML file to write (default: MODEL with .html).")] = None,
) -> None:
    """Write an offline, single-file HTML report: metrics, confusion matrix, calibration plots, bands.

    Example: semcat report model.semcat --out report.html
    """
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
