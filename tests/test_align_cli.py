"""`semcat align train | score | eval` through Typer's CliRunner, on small synthetic nanowires."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from semcat.featurespec import FeatureSpec
from semcat.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def wires(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aligned/, not_aligned/ (6 each) and test/ (8 images spanning the range + truth.csv), 128 px."""
    import tifffile

    from semcat.synth import generate_nanowires, write_alignment_set

    root = tmp_path_factory.mktemp("wires")
    for order, name in ((1.0, "aligned"), (0.0, "not_aligned")):
        (root / name).mkdir()
        for i in range(6):
            img, _ = generate_nanowires(order, np.random.default_rng([3, int(order), i]), 128)
            tifffile.imwrite(root / name / f"w{i}.tif", img)
    write_alignment_set(root / "test", n=8, size=128, seed=1)
    return root


@pytest.fixture(scope="module")
def model(wires: Path) -> Path:
    out = wires / "align.semcat"
    res = runner.invoke(app, ["align", "train", str(wires / "aligned"), str(wires / "not_aligned"),
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "trained on 6 aligned, 6 not aligned" in res.output
    return out


@pytest.mark.parametrize("cmd", [["align"], ["align", "train"], ["align", "score"], ["align", "eval"]])
def test_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0
    assert "Usage" in res.output


def test_train_refuses_an_empty_folder(wires: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["align", "train", str(wires / "aligned"), str(tmp_path), "--out",
                              str(tmp_path / "m.semcat")])
    assert res.exit_code == 1
    assert "no not_aligned training images found" in res.output
    assert not (tmp_path / "m.semcat").exists()


@pytest.mark.slow
def test_score_json_csv_plot_and_catalog(model: Path, wires: Path, tmp_path: Path) -> None:
    test = wires / "test"
    res = runner.invoke(app, ["align", "score", str(model), str(test), "--json",
                              "--plot", str(tmp_path / "fig8.png"), "--db", str(tmp_path / "cat.db")])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 8 and all(r["error"] is None for r in rows)
    assert all(0 <= r["p_aligned"] <= 1 and 0 <= r["coherency"] <= 1 for r in rows)
    assert all(-90 < r["orientation_deg"] <= 90 for r in rows)
    assert (tmp_path / "fig8.png").read_bytes()[:4] == b"\x89PNG"

    from semcat.catalog import open_catalog

    with open_catalog(tmp_path / "cat.db") as cat:
        rec = cat.get(rows[0]["sha256"])
        assert rec.measurements["coherency"] == pytest.approx(rows[0]["coherency"], abs=1e-6)
        assert rec.measurements["alignment_p"] == pytest.approx(rows[0]["p_aligned"], abs=1e-6)
        assert "orientation_deg" in rec.measurements
        high = max(r["coherency"] for r in rows)
        found = cat.search(measurement=("coherency", high - 1e-6, None))
        assert [r.sha256 for r in found] == [next(r["sha256"] for r in rows if r["coherency"] == high)]

    res = runner.invoke(app, ["align", "score", str(model), str(test / "nanowires_0000.tif"), "--csv"])
    assert res.exit_code == 0
    (row,) = list(csv.DictReader(io.StringIO(res.stdout)))
    assert row["path"].endswith("nanowires_0000.tif") and float(row["coherency"]) >= 0


@pytest.mark.slow
def test_score_reports_a_bad_file_and_goes_on(model: Path, wires: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not an image at all")
    res = runner.invoke(app, ["align", "score", str(model), str(bad), str(wires / "test" / "nanowires_0001.tif")])
    assert res.exit_code == 1
    assert "broken.tif" in res.stderr and "error" in res.stderr
    assert "nanowires_0001.tif" in res.stdout
    assert "1 image ok, 1 failed" in res.stderr


def test_score_refuses_a_model_that_is_not_about_alignment(wires: Path, tmp_path: Path) -> None:
    from semcat.head import SoftmaxHead
    from semcat.model import SemcatModel

    rng = np.random.default_rng(0)
    head = SoftmaxHead().fit(rng.normal(size=(8, 1280)).astype(np.float32), ["a", "b"] * 4)
    other = SemcatModel(FeatureSpec.resolve("efficientnet_lite0"), head).save(tmp_path / "o.semcat")
    res = runner.invoke(app, ["align", "score", str(other), str(wires / "test")])
    assert res.exit_code == 1  # a refused model is failed work, not a usage error
    assert "expected an alignment model" in res.stderr


@pytest.mark.slow
def test_eval_with_and_without_model(model: Path, wires: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["align", "eval", str(wires / "test"), "--model", str(model), "--json",
                              "--plot", str(tmp_path / "eval.png")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 8 and out["failed"] == 0
    assert -1 <= out["spearman"]["coherency"] <= 1 and -1 <= out["spearman"]["p_aligned"] <= 1
    assert (tmp_path / "eval.png").exists()
    res = runner.invoke(app, ["align", "eval", str(wires / "test")])
    assert res.exit_code == 0
    assert "p_aligned" in res.stdout and "spearman_rho=-" in res.stdout


def test_eval_needs_truth_csv(tmp_path: Path) -> None:
    res = runner.invoke(app, ["align", "eval", str(tmp_path)])
    assert res.exit_code == 1
    assert "truth.csv" in res.stderr
