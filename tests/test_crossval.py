"""Issue 20: synthetic instruments and the leave-one-group-out protocol (library and CLI)."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from semcat.cli import app
from semcat.crossval import fit_plain, fit_semcat, leave_one_group_out, within_groups
from semcat.synth.instruments import draw_instruments, render_instrument_image, write_instrument_set
from semcat.synth.metadata import reference_field_m
from semcat.view_transforms import DIHEDRAL

runner = CliRunner()
CATS = ["Particles", "Nanowires", "Patterned_surface"]


@pytest.fixture(scope="module")
def inst_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 instruments x 3 categories x 3 images of 96 px: the smallest set the protocols can use."""
    root = tmp_path_factory.mktemp("instruments")
    write_instrument_set(root, instruments=3, per_class=3, size=96, seed=5, categories=CATS)
    return root


def test_instruments_deterministic_with_a_held_out_style() -> None:
    a, b = draw_instruments(5, seed=3), draw_instruments(5, seed=3)
    assert a == b and a != draw_instruments(5, seed=4)
    train, held = a[:-1], a[-1]
    assert held.held_out and not any(i.held_out for i in train)
    # the held-out style lies outside every training style on several axes at once
    assert held.detector not in {i.detector for i in train}
    assert held.dose < min(i.dose for i in train) and held.gamma > max(i.gamma for i in train)
    assert held.streaks > 0 and all(i.streaks == 0 for i in train)
    img1, px1 = render_instrument_image("Particles", a[0], np.random.default_rng(7), 96)
    img2, px2 = render_instrument_image("Particles", a[0], np.random.default_rng(7), 96)
    assert img1.dtype == np.uint8 and np.array_equal(img1, img2) and px1 == px2
    with pytest.raises(ValueError, match="instruments must be >= 1"):
        draw_instruments(0)


def test_instrument_set_layout_and_category_independent_styles(inst_set: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader((inst_set / "images.csv").open()))
    assert len(rows) == 3 * 3 * 3 and all((inst_set / r["path"]).is_file() for r in rows)
    assert {r["instrument"] for r in rows} == {"inst0", "inst1", "inst2"}
    # each shot's style (here its magnification) depends on the instrument and index, never the
    # category; the pixel size is the category's physical field over the pixels it is drawn across
    by_shot: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        zoom = reference_field_m(r["category"]) * 1e9 / (96 * float(r["pixel_nm"]))
        by_shot.setdefault((r["instrument"], Path(r["path"]).name), set()).add(f"{zoom:.4f}")
    assert all(len(v) == 1 for v in by_shot.values())
    assert len({r["pixel_nm"] for r in rows if r["instrument"] == "inst0"}) == 3 * 3  # a magnification range
    # the same seed writes byte-identical files
    again = tmp_path / "again"
    write_instrument_set(again, instruments=3, per_class=1, size=96, seed=5, categories=CATS[:1])
    for p in again.rglob("*.tif"):
        assert p.read_bytes() == (inst_set / p.relative_to(again)).read_bytes()
    result = runner.invoke(app, ["synth", str(tmp_path / "cli"), "--instruments", "2", "--per-class", "1", "--size", "64"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cli").rglob("*.tif"))) == 2 * 10 and "inst1,BSE," in (tmp_path / "cli" / "instruments.csv").read_text()


def _shifted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """3 classes x 3 groups; every group adds its own large offset and scale to the features."""
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    centres = rng.normal(0, 1, (3, 8))
    X, y, g = [], [], []
    for gi in range(3):
        offset, scale = rng.normal(0, 6, 8), rng.uniform(0.5, 2.0, 8)
        for ci, c in enumerate(classes):
            X.append((centres[ci] + 0.15 * rng.normal(0, 1, (10, 8))) * scale + offset)
            y += [c] * 10
            g += [f"g{gi}"] * 10
    return np.vstack(X).astype(np.float32), np.array(y, dtype=object), np.array(g, dtype=object), classes


def test_leave_one_group_out_holds_each_group_out() -> None:
    X, y, g, classes = _shifted()
    seen: list[int] = []

    def fit(Xt: np.ndarray, yt: np.ndarray, cls: list[str], seed: int, extra=None):  # type: ignore[no-untyped-def]
        seen.append(len(Xt))
        return fit_semcat(Xt, yt, cls, seed, extra)

    res = leave_one_group_out(X, y, g, classes, fit)
    assert seen == [60, 60, 60] and sorted(res["per_group"]) == ["g0", "g1", "g2"]
    assert res["pooled"]["n"] == 90 and set(res["pooled"]["recall"]) == set(classes)
    # an unseen per-group shift defeats the plain head; standardising each group's features fixes it
    std = leave_one_group_out(X, y, g, classes, fit_semcat, group_standardize=True)
    assert std["pooled"]["accuracy"] >= 0.95 > res["pooled"]["accuracy"]
    with pytest.raises(ValueError, match="at least 2 groups"):
        leave_one_group_out(X, y, np.array(["one"] * len(y), dtype=object), classes, fit_semcat)


def test_within_groups_and_plain_baseline() -> None:
    X, y, g, classes = _shifted(1)
    res = within_groups(X, y, g, classes, fit_plain, test_share=0.5)
    assert res["pooled"]["n"] == 45 and sorted(res["per_group"]) == ["g0", "g1", "g2"]
    assert res["pooled"]["accuracy"] >= 0.95  # inside one group the classes are well separated
    proba = fit_plain(X, y, ["c", "a", "b", "unseen"], 0)(X[:3])
    assert proba.shape == (3, 4) and np.allclose(proba[:, 3], 0) and np.allclose(proba.sum(1), 1)


@pytest.mark.slow
def test_compare_and_evaluate_cv_groups_cli(inst_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "logo.json"
    result = runner.invoke(app, ["compare", str(inst_set), "--cv", "groups", "--group-by", "folder",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| inst0 (held out) | inst1 (held out) | inst2 (held out) | pooled |" in result.stdout
    assert "| semcat |" in result.stdout and "| plain |" in result.stdout and "| Particles |" in result.stdout
    res = json.loads(out.read_text())
    assert res["semcat"]["pooled"]["n"] == 27 and sorted(res["plain"]["per_group"]) == ["inst0", "inst1", "inst2"]
    result = runner.invoke(app, ["compare", str(inst_set), "--cv", "groups"])
    assert result.exit_code == 2 and "--group-by" in result.stderr
    result = runner.invoke(app, ["compare", str(inst_set), "--cv", "groups", "--group-by", "folder", "--methods", "nope"])
    assert result.exit_code == 1 and "unknown methods" in result.stderr
    model = tmp_path / "m.semcat"
    result = runner.invoke(app, ["train", str(inst_set), "--out", str(model), "--augment", "dihedral,invert"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "m.semcat.report" / "report.json").read_text())
    assert report["augment"] == [*DIHEDRAL, "aug-invert"]  # the 7 other rotations and mirror images, then invert
    fitted = sum(report["counts"]["train"].values()) + sum(report["counts"]["val"].values())
    assert report["training_rows"] == 9 * fitted  # each training image and its 8 copies
    result = runner.invoke(app, ["train", str(inst_set), "--out", str(tmp_path / "x.semcat"), "--augment", "sharpen"])
    assert result.exit_code == 1 and "unknown augmentation 'sharpen'" in result.stderr
    from semcat.featurespec import FeatureSpec

    def by_name(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a backbone name was resolved again: {args} {kwargs}")

    # the model's FeatureSpec (weights, precision, runtime as trained) flows down; no name is looked up again
    monkeypatch.setattr(FeatureSpec, "resolve", classmethod(by_name))
    result = runner.invoke(app, ["evaluate", str(model), str(inst_set), "--cv", "groups", "--group-by", "folder",
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "| semcat |" in result.stdout and (tmp_path / "ev" / "cross_group.md").is_file()


def test_plain_view_keeps_intensities_and_has_its_own_cache_key() -> None:
    from semcat.features import _preprocess_gray, feature_key

    dark = np.linspace(0.1, 0.3, 256 * 320, dtype=np.float32).reshape(256, 320)  # a dim, low-contrast frame
    plain = _preprocess_gray(dark, 224, "bicubic", "plain")
    center = _preprocess_gray(dark, 224, "bicubic", "center")
    assert plain.shape == center.shape == (1, 224, 224)
    assert 0.09 < plain.min() and plain.max() < 0.31  # by dtype range: as dim as the image
    assert center.min() == 0.0 and center.max() == 1.0  # the default stretches to the full range
    assert feature_key("efficientnet_lite0", view="plain") != feature_key("efficientnet_lite0", view="center")


def test_augmented_rows_and_test_view_reach_the_head() -> None:
    """Training on features of augmented views covers a style no training group has."""
    rng = np.random.default_rng(2)
    classes = ["a", "b", "c"]
    centres = rng.normal(0, 2, (3, 8))
    flip = np.r_[-np.ones(4), np.ones(4)].astype(np.float32)  # a style change the augmentation also makes
    X = np.vstack([centres[i % 3] + 0.3 * rng.normal(0, 1, 8) for i in range(90)]).astype(np.float32)
    y = np.array([classes[i % 3] for i in range(90)], dtype=object)
    g = np.array([f"g{i // 30}" for i in range(90)], dtype=object)
    X[g == "g2"] *= flip  # the held-out instrument's style
    aug = X * flip  # the augmented view of every image
    base = leave_one_group_out(X, y, g, classes, fit_semcat)
    augmented = leave_one_group_out(X, y, g, classes, fit_semcat, extra=[aug])
    assert augmented["per_group"]["g2"]["accuracy"] >= 0.95 > base["per_group"]["g2"]["accuracy"]
    sizes: list[tuple[int, int]] = []

    def fit(Xt, yt, cls, seed, extra=None):  # type: ignore[no-untyped-def]
        sizes.append((len(Xt), len(extra[0])))
        return fit_semcat(Xt, yt, cls, seed, extra)

    within = within_groups(X, y, g, classes, fit, extra=[aug, aug], X_test=aug, test_share=0.5)
    assert sizes == [(15, 30)] * 3 and within["pooled"]["n"] == 45


def test_groups_from_sem_metadata(inst_set: Path, tmp_path: Path) -> None:
    """Issue 20: --group-by meta:instrument / meta:detector / meta:magnification read each file's
    vendor tags. On synthetic instruments the instrument in the tags is the instrument folder."""
    from semcat.dataset import META_GROUPS, scan_dataset

    folder = {s.path: s.group for s in scan_dataset(inst_set, group_by="folder").samples}
    for how in ("meta:instrument", "meta:detector"):
        meta = {s.path: s.group for s in scan_dataset(inst_set, group_by=how).samples}
        pairs = {(folder[p], meta[p]) for p in folder}
        assert len(pairs) == 3 and len({m for _, m in pairs}) == 3 and None not in {m for _, m in pairs}, (how, pairs)
    bands = {s.group for s in scan_dataset(inst_set, group_by="meta:magnification").samples}
    assert bands and all(re.fullmatch(r"\d+-\d+x", b) for b in bands), bands
    assert META_GROUPS == ("meta:instrument", "meta:detector", "meta:magnification")
    with pytest.raises(ValueError, match="SEM metadata groups are meta:instrument"):
        scan_dataset(inst_set, group_by="meta:voltage")
    # a file without vendor tags is left ungrouped, and the scan says why
    plain = tmp_path / "plain" / "Particles"
    plain.mkdir(parents=True)
    cv2.imwrite(str(plain / "a.png"), np.full((32, 32), 128, np.uint8))
    ds = scan_dataset(tmp_path / "plain", group_by="meta:instrument")
    assert ds.samples[0].group is None and any("have no instrument in their SEM metadata" in w for w in ds.warnings)


def test_groups_from_real_vendor_metadata(tmp_path: Path) -> None:
    """The real Zeiss and FEI test files name their instrument and detector in their tags."""
    from semcat.dataset import scan_dataset

    src = Path(__file__).resolve().parents[2] / "shared" / "real-vendor-files"
    files = sorted(src.glob("*.tif")) if src.is_dir() else []
    if not files:
        pytest.skip("../shared/real-vendor-files is absent")
    (tmp_path / "Any").mkdir()
    for f in files:
        shutil.copy(f, tmp_path / "Any" / f.name)
    groups = {s.path.name: s.group for s in scan_dataset(tmp_path, group_by="meta:instrument").samples}
    zeiss = {g for n, g in groups.items() if n.lower().startswith(("zeiss", "test_tiff_zeiss"))}
    fei = {g for n, g in groups.items() if n.startswith("FEI")}
    assert None not in zeiss | fei and zeiss.isdisjoint(fei), groups


@pytest.mark.slow
def test_compare_cv_groups_by_sem_metadata_cli(inst_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "meta.json"
    result = runner.invoke(app, ["compare", str(inst_set), "--cv", "groups", "--group-by", "meta:instrument",
                                 "--methods", "semcat", "--out", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert len(res["semcat"]["per_group"]) == 3 and res["semcat"]["pooled"]["n"] == 27


def test_unparseable_vendor_tags_leave_a_file_ungrouped(inst_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Malformed vendor tags are data: with --group-by meta:* the file is ungrouped, the scan goes on."""
    import semcat.semmeta
    from semcat.dataset import scan_dataset

    def broken(path: object) -> None:
        raise RuntimeError("a tag no parser expected")

    monkeypatch.setattr(semcat.semmeta, "read_sem_metadata", broken)
    ds = scan_dataset(inst_set, group_by="meta:instrument")
    assert len(ds.samples) == 27 and all(s.group is None for s in ds.samples) and not ds.errors
    assert any("have no instrument in their SEM metadata" in w for w in ds.warnings)


def test_cross_group_table_escapes_outside_names() -> None:
    """Group and class names come from folders, file names and SEM metadata: a '|' or a newline
    in one cannot break the Markdown table or forge a line."""
    from semcat.crossval import cross_group_markdown

    metrics = {"accuracy": 0.5, "recall": {"A|B\nforged": 0.5}, "classes": ["A|B\nforged"]}
    md = cross_group_markdown({"semcat": {"per_group": {"inst|1\n| x |": metrics}, "pooled": metrics}})
    lines = md.splitlines()
    assert lines[0] == "| method | inst\\|1\\n\\| x \\| (held out) | pooled |"
    assert "| A\\|B\\nforged | 50.0 |" in lines and len(lines) == 7
