"""Figures and the offline HTML report: built from a real model artifact, opened in real Chromium."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from typer.testing import CliRunner

from semcat.featurespec import FeatureSpec
from semcat import CATEGORIES
from semcat.calibration import STATS_TENSOR, calibrate_model, score_cases
from semcat.cli import app
from semcat.head import SoftmaxHead
from semcat.model import SemcatModel, load_model
from semcat.reports import calibration_figures, render_report, save_figures

DIM = 1280  # the width of efficientnet_lite0 features, so the model binds to that backbone


def _features(rng: np.random.Generator, centres: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    y = rng.integers(0, len(centres), n)
    mix = rng.uniform(0, 0.8, n)[:, None]  # some images drift towards another class: ambiguous
    other = centres[rng.integers(0, len(centres), n)]
    X = (1 - mix) * centres[y] + mix * other + rng.normal(scale=0.6, size=(n, DIM))
    return X.astype(np.float32), [CATEGORIES[i] for i in y]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory):
    """A model calibrated on feature vectors (no images needed: the report only reads the artifact)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(CATEGORIES), DIM))
    X_train, y_train = _features(rng, centres, 400)
    X_val, y_val = _features(rng, centres, 300)
    head = SoftmaxHead(classes=list(CATEGORIES)).fit(X_train, y_train)
    model = SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), head, meta={"name": "report-test"})
    calibrate_model(model, X_val, y_val, X_train, source="test features", y_train=y_train)
    path = tmp_path_factory.mktemp("report") / "m.semcat"
    model.save(path)
    return path


def test_calibration_is_stored_in_the_artifact(model_path) -> None:
    model = load_model(model_path)
    cal = model.calibration
    assert cal is not None and 0 < cal["t_suggest"] <= cal["t_auto"]
    assert np.array(cal["heldout"]["confusion"]).sum() == cal["heldout"]["n"] == 300
    assert model.extra_tensors[STATS_TENSOR].shape == (300, 3)
    assert model.extra_tensors["ood.precision"].shape == (DIM, DIM)
    assert model.calibration["ood"]["scores"] == ["relative_mahalanobis", "max_logit"]


def test_figures_have_the_papers_panels(tmp_path, model_path) -> None:
    model = load_model(model_path)
    figs = calibration_figures(model.extra_tensors[STATS_TENSOR], model.calibration)
    assert set(figs) == {"score_histogram", "score_distributions", "p_correct", "reliability"}
    assert len(figs["score_distributions"].axes) == 3 and len(figs["p_correct"].axes) == 2
    paths = save_figures(figs, tmp_path)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    with pytest.raises(ValueError, match=r"shape \(N>0, 3\)"):
        calibration_figures(np.zeros((0, 3)))


def test_score_table_matches_cases() -> None:
    proba = softmax(np.array([[3.0, 0, 0], [0, 1.0, 0.9], [0, 0, 2.0]]), axis=1)
    top, case = score_cases(proba, np.array([0, 2, 1]))
    assert case.tolist() == [0, 1, 2] and top[0] > top[1]


def test_report_is_self_contained_and_escaped(model_path) -> None:
    model = load_model(model_path)
    model.meta["name"] = "<script>alert(1)</script>"
    page = render_report(model)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("data:image/png;base64,") == 5  # confusion + 4 calibration plots
    assert "http://" not in page and "https://" not in page


def test_uncalibrated_report_says_what_to_do(tmp_path, model_path) -> None:
    model = load_model(model_path)
    model.calibration = None
    assert "semcat calibrate MODEL DATA_DIR" in render_report(model)


def test_report_cli(tmp_path, model_path) -> None:
    runner = CliRunner()
    assert "offline" in runner.invoke(app, ["report", "--help"]).output
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(model_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!doctype html>")
    bad = tmp_path / "bad.semcat"
    bad.write_bytes(b"not a model")
    res = runner.invoke(app, ["report", str(bad)])
    assert res.exit_code == 1 and "bad.semcat" in res.output


def test_report_renders_in_chromium(tmp_path, model_path, chromium_path) -> None:
    from playwright.sync_api import sync_playwright

    from semcat.reports import write_report

    page_path = write_report(load_model(model_path), tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(page_path.as_uri())
            sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            shot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert len(sizes) == 5
    assert all(done and w > 100 and h > 100 for done, w, h in sizes)
    assert len(shot) > 20_000  # a page of plots, not a blank screen
