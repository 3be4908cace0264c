"""CLI commands: ``semcat train``, ``evaluate``, ``compare`` and ``classify``.

Thin wrappers over ``semcat.training`` and ``semcat.engines``: data (JSON, CSV, Markdown,
predictions) to stdout, progress and per-file errors to stderr, exit 1 when any file failed.
"""
from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import track

from semcat._validation import MAX_COUNT
from semcat.backbones import DEFAULT_BACKBONE
from semcat.commands._common import (
    FORMAT_HELP,
    PRECISION_HELP,
    BatchSummary,
    ChunkOpt,
    CsvAlias,
    Engine,
    Format,
    JsonAlias,
    ScaleOpt,
    scale_note,
    Precision,
    SparkConfOpt,
    chosen_format,
    err_console,
    error,
    finite,
    named_paths,
    shown,
    spark_conf,
    warning,
    write_rows,
)
from semcat.commands.features import ViewChoice
from semcat.engines.spark import DEFAULT_CHUNK
from semcat.features import DEFAULT_VIEW

if TYPE_CHECKING:
    from semcat.featurespec import FeatureSpec


class Solver(str, Enum):
    lbfgs = "lbfgs"
    adam = "adam"


class CV(str, Enum):
    split = "split"
    groups = "groups"


class Protocol(str, Enum):
    crossfit = "crossfit"
    val = "val"


class Adapt(str, Enum):
    """``semcat classify --adapt``: the modes of :data:`semcat.adapt.ADAPT_MODES`."""

    group = "group"
    balanced = "balanced"
    scale = "scale"
    classwise = "classwise"


class Split(str, Enum):
    all = "all"
    train = "train"
    val = "val"
    test = "test"


def _fail(message: str, code: int = 2) -> None:
    error(message)
    raise typer.Exit(code=code)


def _metrics_line(m: dict[str, Any] | None) -> str:
    if not m:
        return "no test images (the split is empty): add images or check the split fractions"
    return (f"accuracy {100 * m['accuracy']:.1f}%, macro precision {100 * m['macro_precision']:.1f}%, "
            f"recall@1 {100 * m['recall_at_1']:.1f}%, top-2 {100 * m['top2_accuracy']:.1f}% (N={m['n']})")


def _from_catalog(url: str, group_by: str | None) -> Any:
    """Confirmed catalog labels as a LabelledSet, split by content hash like a folder dataset; the
    duplicate groups stored by ``semcat duplicates --db`` stay in one split."""
    from semcat.commands.catalog import _open
    from semcat.retrain import catalog_labelled_set

    with _open(url) as cat:  # a catalogue that does not exist is a usage error, never an empty set
        data = catalog_labelled_set(cat, split=True)
    if group_by:
        err_console.print("note: --group-by applies to folders only; catalog images are split by content hash "
                          "and duplicate group (semcat duplicates --db)")
    return data


def train(
    data_dir: Annotated[Path | None, typer.Argument(metavar="DATA_DIR", exists=True, file_okay=False,
                                                    help="Labelled folder: one sub-folder per category. "
                                                         "Omit with --from-catalog.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False, help="Model file to write (.semcat).")] = Path("model.semcat"),
    backbone: Annotated[str, typer.Option(help="Feature backbone; join two with '+' to concatenate their "
                                               "features (e.g. efficientnet_lite0+efficientnet_lite2).")] = DEFAULT_BACKBONE,
    view: Annotated[ViewChoice, typer.Option(help="Which part of the image the backbone sees: clean (the "
                                           "default: the centre crop, its background flattened and a 5x5 median), "
                                           "center (the paper's centre crop as it is), full (whole image) or tiles5; clahe or "
                                           "histeq (centre crop, equalised); tta4 (the features of the crop's "
                                           "4 rotations averaged); tta2 (the crop and its mirror image).")] = ViewChoice(DEFAULT_VIEW),
    augment: Annotated[str | None, typer.Option(help="Also train the head on features of augmented copies of each "
                                                     "training image: comma-separated flip, rot90, dark, bright, "
                                                     "noise, blur, invert (contrast inverted), dihedral (the 7 other "
                                                     "rotations and mirror images), or all (the first six); with "
                                                     "--view clean or center; none: no augmentation (the default); with --scale also "
                                                     "noscale (today's crop too, for files without a pixel size) and "
                                                     "scalejitter (crops at 1/√2 and √2 the physical scale).")] = None,
    solver: Annotated[Solver, typer.Option(help="lbfgs: scikit-learn's full-batch L-BFGS (default, measured faster and "
                                                "as accurate); adam: minibatch Adam.")] = Solver.lbfgs,
    epochs: Annotated[int | None, typer.Option("--epochs", "--steps", min=1,
                                               help="Adam epochs / L-BFGS iterations (default 60 / 300).")] = None,
    lr: Annotated[float | None, typer.Option(callback=finite, min=0.0, help="Adam learning rate (default 0.01; L-BFGS needs none).")] = None,
    batch_size: Annotated[int, typer.Option(max=MAX_COUNT, min=1, help="Adam minibatch size.")] = 128,
    weight_decay: Annotated[float | None, typer.Option(callback=finite, min=0.0, help="L2 penalty on the head weights (default: "
                                                                   "chosen by cross-validation with --split "
                                                                   "crossfit, 1e-3 with --split val).")] = None,
    split: Annotated[Protocol, typer.Option(help="crossfit: fit on train+val, penalty chosen by k-fold "
                                                 "cross-validation (default; small sets need it); val: fit "
                                                 "on train, early-stop on val.")] = Protocol.crossfit,
    folds: Annotated[int, typer.Option(min=2, max=MAX_COUNT, help="Cross-validation folds of --split crossfit.")] = 5,
    class_balanced: Annotated[bool, typer.Option("--class-balanced", help="Weight classes inversely to "
                                                                          "their frequency.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the head training (Adam minibatch order).")] = 0,
    group_by: Annotated[str | None, typer.Option(help="Regex whose first group names a sample in each file "
                                                      "name; a sample's images never straddle splits or folds "
                                                      "(default folds: file-name series, cells34_127.tif -> "
                                                      "cells34).")] = None,
    no_crop_databar: Annotated[bool, typer.Option("--no-crop-databar", help="Keep the instrument's data "
                                                                            "bar (cropped by default).")] = False,
    report_dir: Annotated[Path | None, typer.Option(file_okay=False, help="Folder for metrics.json, "
                                                    "confusion.csv/.png and report.json (default: "
                                                    "MODEL name + '.report').")] = None,
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.auto,
    from_catalog: Annotated[str | None, typer.Option(metavar="DB_URL", help="Train on the labels confirmed "
                                                     "in this catalog instead of DATA_DIR.")] = None,
    scale: ScaleOpt = None,
) -> None:
    """Train the softmax head on cached backbone features and report on the untouched test split.

    By default the head is fitted on every labelled image outside the test split, its L2 penalty
    chosen by 5-fold cross-validation whose folds keep each file-name series (or --group-by sample)
    together; --split val fits on train and
    early-stops on val. Writes MODEL (one .semcat file) and a report folder with the test metrics
    and confusion matrix; prints the test metrics as JSON on stdout. Unreadable images are named on
    stderr and skipped (exit 1 when any failed, or when there was no test image to report on).
    Features are cached, so a re-run only extracts new images.

    Examples:
      semcat train data/ --group-by '^([^_]+_[^_]+)_' --out model.semcat
      semcat train data/ --scale auto --out model.semcat
      semcat train data/ --scale auto --augment noscale --out model.semcat
    """
    from semcat.errors import SemcatError
    from semcat.featurespec import FeatureSpec
    from semcat.metrics import write_metrics
    from semcat.training import labelled_set, train_on_samples
    from semcat._io import atomic_write_text
    from semcat.physical_scale import parse_scale, with_scale
    from semcat.view_transforms import parse_augment

    if (data_dir is None) == (from_catalog is None):
        _fail("give either DATA_DIR or --from-catalog DB_URL (exactly one).")
    summary = BatchSummary()
    try:
        spec = FeatureSpec.resolve(backbone, view=view.value, crop_databar=not no_crop_databar, precision=precision.value)
        data = _from_catalog(from_catalog, group_by) if from_catalog else labelled_set(data_dir, group_by=group_by)
        spec, unscaled = with_scale(spec, parse_scale(scale), data.paths)
        err_console.print(f"training on {len(data.paths)} images, {len(data.classes)} classes, backbone {spec.name}")
        scale_note(spec.scale_nm, len(unscaled), len(data.paths))
        model, report = train_on_samples(
            data, spec, solver=solver.value, seed=seed, progress=True, epochs=epochs, lr=lr, batch_size=batch_size,
            weight_decay=weight_decay, class_weight="balanced" if class_balanced else None,
            protocol=split.value, folds=folds, augment=parse_augment(augment))
    except (SemcatError, ValueError) as exc:
        _fail(str(exc), code=1)
    for path, problem in report["errors"]:
        summary.fail(path, problem)
    summary.ok = sum(sum(c.values()) for c in report["counts"].values())
    cv = report["weight_decay_cv"]
    for line in (cv or {}).get("warnings", []):
        err_console.print(f"warning: {line}", soft_wrap=True, highlight=False, markup=False)
    if cv:
        err_console.print(f"weight decay {report['weight_decay']:g} chosen by {cv['folds']}-fold cross-validation, "
                          f"folds grouped by {cv['grouping']} (out-of-fold log-loss {cv['log_loss']})",
                          soft_wrap=True, highlight=False, markup=False)
    model.save(out)
    rdir = report_dir or out.with_name(out.name + ".report")
    if report["test_metrics"]:
        write_metrics(report["test_metrics"], rdir)
    atomic_write_text(rdir / "report.json", json.dumps(report, indent=2) + "\n")
    if report["classes_without_training_images"]:
        warning(f"no training images for {report['classes_without_training_images']}")
    err_console.print(f"features {report['time_features_s']:.1f} s, head {report['time_head_s']:.2f} s "
                      f"({report['n_iter']} iterations); test: {_metrics_line(report['test_metrics'])}")
    err_console.print(f"wrote {out} (model id {model.model_id[:12]}) and {rdir}/")
    typer.echo(json.dumps({"model": str(out), "model_id": model.model_id, "report_dir": str(rdir),
                           "test": _brief(report["test_metrics"])}))
    summary.print()
    if not report["test_metrics"]:
        err_console.print(f"error: the test split is empty, so {out} was written but is untested; add images"
                          + (" or sample groups (--group-by keeps each group in one split)" if group_by else ""),
                          soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(code=1)
    summary.exit()


def _brief(m: dict[str, Any] | None) -> dict[str, Any] | None:
    keys = ("n", "accuracy", "macro_precision", "recall_at_1", "top2_accuracy")
    return {k: m[k] for k in keys} if m else None


def evaluate(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", exists=True, dir_okay=False, help="Trained .semcat model.")],
    labelled_dir: Annotated[Path, typer.Argument(metavar="LABELLED_DIR", exists=True, file_okay=False,
                                                 help="Labelled folder (one sub-folder per category), e.g. "
                                                      "images from another instrument or lab.")],
    split: Annotated[Split, typer.Option(help="Evaluate all images, or only one split of the folder.")] = Split.all,
    out: Annotated[Path | None, typer.Option("--out", "-o", file_okay=False, help="Also write metrics.json, confusion.csv "
                                                                   "and confusion.png to this folder.")] = None,
    cv: Annotated[CV, typer.Option(help="split: MODEL as trained; groups: leave one group out (retrain MODEL's "
                                        "head on all groups but one, test on it, for each group).")] = CV.split,
    group_by: Annotated[str | None, typer.Option(help="With --cv groups: 'folder' (sub-folder below the category, "
                                                      "e.g. the instrument), a regex with one group over the file name, or "
                                                      "the file's SEM metadata: meta:instrument, meta:detector, "
                                                      "meta:magnification (its decade).")] = None,
) -> None:
    """Accuracy, precision, recall@1, top-2 and the confusion matrix of MODEL on a labelled folder.

    Categories the model does not know are named on stderr and excluded, never an error.
    Prints the metrics as JSON on stdout; exit 1 when an image could not be read.

    Example: semcat evaluate model.semcat data/inst --cv groups --group-by folder
    """
    if cv is CV.groups:
        from semcat.model import load_model

        _cross_group(labelled_dir, group_by, ["semcat"], load_model(model_path).spec, 0,
                     out / "cross_group.md" if out else None)
        return
    from semcat.errors import SemcatError
    from semcat.metrics import write_metrics
    from semcat.model import load_model
    from semcat.training import evaluate_model

    try:
        model = load_model(model_path)
        metrics = evaluate_model(model, labelled_dir, split=split.value, progress=True)
    except (SemcatError, ValueError) as exc:
        _fail(str(exc), code=1)
    summary = BatchSummary(ok=metrics["n"])
    for path, problem in metrics["errors"]:
        summary.fail(path, problem)
    for name, n in metrics["unknown_classes"].items():
        warning(f"category {name!r} ({n} images) is not one of the model's classes; excluded")
    if out:
        write_metrics(metrics, out)
        err_console.print(f"wrote {out}/metrics.json, confusion.csv, confusion.png")
    err_console.print(_metrics_line(metrics if metrics["n"] else None))
    typer.echo(json.dumps(metrics))
    summary.print()
    summary.exit()


def compare(
    data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", exists=True, file_okay=False,
                                             help="Labelled folder: one sub-folder per category.")],
    backbones: Annotated[str, typer.Option(help="Comma-separated backbones; 'a+b' concatenates features.")] = DEFAULT_BACKBONE,
    runs: Annotated[int, typer.Option(max=MAX_COUNT, min=1, help="Repeated runs (new head seed and re-split each).")] = 5,
    variants: Annotated[str, typer.Option(help="Comma-separated preprocessing variants VIEW[:nocrop], "
                                               "e.g. center,full,tiles5,center:nocrop.")] = DEFAULT_VIEW,
    solver: Annotated[Solver, typer.Option(help="Head solver.")] = Solver.lbfgs,
    group_by: Annotated[str | None, typer.Option(help="Groups: 'folder' (sub-folder below the category), a regex naming "
                                                      "the sample in each file name, or the file's SEM metadata: "
                                                      "meta:instrument, meta:detector, meta:magnification (its decade). "
                                                      "--cv split keeps a group in one split; --cv groups leaves each "
                                                      "out in turn.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first run (run r uses seed + r).")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False, help="Write the table: .md (Markdown) or .csv.")] = None,
    cv: Annotated[CV, typer.Option(help="split: repeated train/val/test splits; groups: leave one group out "
                                        "(--group-by) for each method of --methods.")] = CV.split,
    methods: Annotated[str, typer.Option(help="With --cv groups: semcat (default head on the default clean view), semcat@center "
                                              "(the same head on the centre crop: the default before; the methods below read "
                                              "that crop), plain (centre crop, no contrast stretch, bar "
                                              "kept, scikit-learn LogisticRegression), semcat+groupstd, semcat-wd1e-3, "
                                              "logreg@center, semcat-nostd, semcat+clahe, semcat+histeq, semcat+aug-all, "
                                              "semcat+aug-all+groupstd, semcat+tta4, semcat-fullstd, semcat+adapt-group, "
                                              "semcat+adapt-balanced, semcat+adapt-scale, semcat+adapt-classwise, "
                                              "semcat+scale, semcat+scale+tta4, semcat+scale/test-nopx, semcat+scale+tta4/test-nopx, semcat+ms3, "
                                              "semcat+tta2, semcat+scale+tta2, semcat+scale+aug-flip, semcat+scale+aug-fliprot, semcat+scale-mix, "
                                              "semcat+scale-jitter, semcat+scale-mix-jitter, semcat+scale-mix+tta2, semcat+scale-mix+aug-flip, "
                                              "semcat+scale-mix+aug-fliprot (each scale-mix and -jitter also /test-nopx), "
                                              "semcat+scale-mix+aug-d4 (also +cv, -wd0.1, +gamma, +sem), "
                                              "semcat+scale-mix+aug-fliprot+cv (also +gamma, +invert, +noise) "
                                              "(each also /test-nopx), "
                                              "semcat+ft, semcat+ft2, semcat+ft-60s, semcat+ft-120s, semcat+scale-mix+aug-fliprot+ft-60s (the backbone's last blocks fine-tuned "
                                              "in a CPU budget; needs torch) "
                                              "(see the manual, how-to/train).")] = "semcat,plain",
) -> None:
    """Compare backbones and preprocessing variants: test accuracy mean ± std over runs, time per stage.

    The paper's Table 3. Features are extracted once per backbone and variant (and cached); each
    run retrains the head with another seed on another split. Prints Markdown on stdout.
    With --cv groups: per-group and pooled accuracy and per-class recall of each method, trained
    on all groups but one and tested on that one (e.g. instruments never seen in training).

    Examples:

      semcat compare data/inst --cv groups --group-by folder --out logo.md

      semcat compare data/ --cv groups --group-by meta:instrument   # the instrument in each TIFF's tags
    """
    from rich.table import Table

    from semcat._io import atomic_write_text
    from semcat.errors import SemcatError
    from semcat.training import compare as run_compare
    from semcat.training import compare_markdown, parse_variants

    names = [b.strip() for b in backbones.split(",") if b.strip()]
    if cv is CV.groups:
        from semcat.featurespec import FeatureSpec

        try:
            spec = FeatureSpec.resolve(names[0])
        except ValueError as exc:
            _fail(str(exc), code=1)
        _cross_group(data_dir, group_by, [m.strip() for m in methods.split(",") if m.strip()], spec, seed, out)
        return
    try:
        rows = run_compare(data_dir, names, runs, parse_variants(variants), solver=solver.value,
                           group_by=group_by, seed=seed, progress=True)
    except (SemcatError, ValueError) as exc:
        _fail(str(exc), code=1)
    table = Table(title=f"test accuracy over {runs} runs")
    for col in ("backbone", "view", "crop", "accuracy %", "features s", "head s"):
        table.add_column(col, justify="left" if col in ("backbone", "view") else "right")
    for r in rows:
        table.add_row(r["backbone"], r["view"], "on" if r["crop_databar"] else "off",
                      f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}",
                      f"{r['time_features_s']:.1f}", f"{r['time_head_s']:.2f}")
    err_console.print(table)
    md = compare_markdown(rows)
    if out:
        atomic_write_text(out, _csv(rows) if out.suffix.lower() == ".csv" else md)
        err_console.print(f"wrote {out}")
    typer.echo(md, nl=False)


def _cross_group(data_dir: Path, group_by: str | None, methods: list[str], spec: FeatureSpec, seed: int,
                 out: Path | None) -> None:
    """Leave-one-group-out of ``methods`` on features of ``spec`` (resolved by the command: the
    model's or the options'): Markdown on stdout, errors on stderr, JSON/Markdown to ``out``."""
    from semcat._io import atomic_write_text
    from semcat.crossval import cross_group_markdown, run_methods
    from semcat.errors import SemcatError

    if not group_by:
        _fail("--cv groups needs --group-by: 'folder' (e.g. DIR/<category>/<instrument>/) or a regex with one group.")
    try:
        res = run_methods(data_dir, group_by, methods, spec=spec, seed=seed, progress=True)
    except (SemcatError, ValueError) as exc:
        _fail(str(exc), code=1)
    first = next(iter(res.values()))
    summary = BatchSummary(ok=first["pooled"]["n"])
    for path, problem in dict(e for r in res.values() for e in r["errors"]).items():
        summary.fail(path, problem)
    if first["ungrouped"]:
        err_console.print(f"warning: {first['ungrouped']} images have no group (--group-by did not match); left out")
    md = cross_group_markdown(res)
    if out:
        if out.suffix.lower() == ".json":
            atomic_write_text(out, json.dumps(res, indent=2) + "\n")
        else:
            atomic_write_text(out, md)
        err_console.print(f"wrote {out}")
    typer.echo(md, nl=False)
    summary.print()
    summary.exit()


def _csv(rows: list[dict[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def classify(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", exists=True, dir_okay=False, help="Trained .semcat model.")],
    inputs: Annotated[list[Path], typer.Argument(metavar="IMAGES_OR_DIRS...", callback=named_paths,
                                                 help="Image files and folders (searched recursively).")],
    top_k: Annotated[int, typer.Option(max=MAX_COUNT, min=1, help="Classes reported per image, best first.")] = 3,
    fmt: Annotated[Format, typer.Option("--format", help=FORMAT_HELP + " table: path, label, score and "
                                                          "decision, tab-separated.")] = Format.table,
    engine: Annotated[Engine, typer.Option(help="local (this machine) or spark (needs --out, a Parquet folder).")] = Engine.local,
    master: Annotated[str, typer.Option(help="Spark master URL for --engine spark.")] = "local[2]",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write results here instead of stdout "
                                                                "(a Parquet folder with --engine spark).")] = None,
    batch_size: Annotated[int, typer.Option(max=MAX_COUNT, min=1, help="Images classified per chunk (local engine).")] = 64,
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.auto,
    conf: SparkConfOpt = None,
    chunk_size: ChunkOpt = DEFAULT_CHUNK,
    adapt: Annotated[Adapt | None, typer.Option(
        help="Test-time adaptation (local engine): classify each folder as one batch, its features mapped "
             "onto the training statistics: group (its mean and std), balanced (mean of its predicted classes' "
             "means), scale (its spread only), classwise (each predicted class against its training mean). "
             "For a folder of one instrument holding many categories; it loses on folders of one or two "
             "categories (see the manual, explanation/limits).")] = None,
    output: Annotated[Path | None, typer.Option("--output", hidden=True, help="Old spelling of --out.")] = None,
    as_json: JsonAlias = False,
    as_csv: CsvAlias = False,
) -> None:
    """Top-k classes with probabilities and the labelling decision for each image, streamed as it goes.

    Default output: one tab-separated line per image (path, label, score, decision). Unreadable
    files get an error line on stderr (and a row with the error in json/jsonl/csv); exit 1 if any
    failed. With --out a progress bar runs on stderr.

    Examples:
      semcat classify model.semcat incoming/ --top-k 3
      semcat classify model.semcat incoming/ --format csv --out preds.csv
      semcat classify model.semcat new-microscope/ --adapt group
    """
    fmt = chosen_format(fmt, as_json=as_json, as_csv=as_csv, json_is=Format.jsonl)
    if output is not None:
        warning("--output is deprecated: use --out (-o)")
        out = out or output
    if engine is Engine.spark:
        if adapt is not None:
            _fail("--adapt runs on the local engine only (each folder is one batch).")
        _classify_spark(model_path, inputs, out, master, top_k, precision, chunk_size, spark_conf(conf))
        return
    from semcat._io import iter_image_files
    from semcat.engines.local import classify as local_classify
    from semcat.model import load_model, row_columns

    model = load_model(model_path)
    if adapt is not None:
        try:
            model.adapt_reference()
        except ValueError as exc:
            _fail(f"{model_path}: {exc}", code=1)
    files = list(iter_image_files(inputs))
    summary = BatchSummary()
    if model.spec.scale_nm is not None:
        from semcat.physical_scale import survey

        unscaled = len(survey(files, model.backbone.input_size, model.crop_databar)[1])
        scale_note(model.spec.scale_nm, unscaled, len(files))
        mixed = "aug-noscale" in (model.meta.get("training") or {}).get("augment", [])  # head saw both crops
        if unscaled and not mixed:  # measured: a --scale head is far less accurate on crops it was not trained on
            warning(f"{model_path} was trained with --scale: its {unscaled} image(s) without a pixel size are "
                    "classified less reliably (docs: explanation/limits)")

    def predictions() -> Iterator[Any]:
        for pred in local_classify(model, files, top_k=top_k, precision=precision.value, chunk_size=batch_size,
                                   adapt=adapt.value if adapt else None):
            if pred.error:
                summary.fail(pred.path, pred.error)
            else:
                summary.ok += 1
            yield pred

    preds = track(predictions(), total=len(files), description="classifying", console=err_console,
                  transient=True) if out and files else predictions()
    stream: IO[str] = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        if fmt is Format.table:
            for pred in preds:
                if not pred.error:
                    stream.write(f"{shown(pred.path)}\t{shown(pred.label)}\t{pred.score:.4f}\t{pred.decision}\n")
                    stream.flush()
        elif fmt is Format.csv:
            write_rows((p.to_row(top_k) for p in preds), fmt, stream, columns=row_columns(top_k))
        else:
            write_rows((p.to_dict() for p in preds), fmt, stream)
    except KeyboardInterrupt:
        err_console.print("interrupted: the lines above are complete")
        summary.print()
        raise typer.Exit(code=130) from None
    finally:
        if out:
            stream.close()
    summary.print()
    summary.exit()


def _classify_spark(model_path: Path, inputs: list[Path], output: Path | None, master: str, top_k: int,
                    precision: Precision, chunk_size: int, conf: dict[str, str]) -> None:
    if output is None:
        _fail("--engine spark writes a Parquet folder: give --out DIR.")
    from semcat.engines import spark
    from semcat.errors import SemcatError

    try:
        res = spark.classify(model_path, [str(p) for p in inputs], out=output, master=master, top_k=top_k,
                             precision=precision.value, chunk_size=chunk_size, progress=True, conf=conf)
    except SemcatError as exc:
        _fail(str(exc), code=1)
    summary = BatchSummary(ok=res.ok, skipped=res.skipped)
    df = spark.read_results(output)
    for row in df[df["error"].fillna("") != ""].itertuples():
        summary.fail(row.path, row.error)
    err_console.print(f"wrote {res.out} ({res.seconds:.1f} s on {res.master})")
    summary.print()
    summary.exit()


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("compare")(compare)
    app.command("classify")(classify)
