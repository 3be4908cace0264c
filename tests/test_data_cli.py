"""`semcat synth` and `semcat dataset summary` through Typer's CliRunner."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semcat import CATEGORIES
from semcat.cli import app

runner = CliRunner()


def _flat(text: str) -> str:
    """Output without rich's panel borders and line wrapping, for substring checks."""
    return " ".join(text.replace("│", " ").split())


@pytest.mark.parametrize("command", [["synth"], ["dataset", "summary"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_synth_then_summary_shows_10_classes_of_20(tmp_path: Path) -> None:
    out = tmp_path / "s"
    result = runner.invoke(app, ["synth", str(out), "--per-class", "20", "--size", "48"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert "200 images written" in result.stderr
    result = runner.invoke(app, ["dataset", "summary", str(out), "--no-check"])
    assert result.exit_code == 0, result.output
    for cat in CATEGORIES:
        line = next(line for line in result.stdout.splitlines() if f" {cat} " in line)
        numbers = [int(v) for v in line.replace("│", " ").split()[1:]]
        assert numbers[0] == 20 and sum(numbers[1:]) == 20
    assert "200 images ok, 0 failed" in result.stderr
    again = runner.invoke(app, ["synth", str(out), "--per-class", "20", "--size", "48"])
    assert "0 images written, 200 already there" in again.stderr


def test_synth_extras_16_bit_png_and_shape(tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "s"
    result = runner.invoke(app, ["synth", str(out), "--per-class", "1", "--shape", "40x64", "--format", "png",
                                 "--bit-depth", "16", "--databar", "--alignment", "3", "--blends", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out), str(out) + "-alignment", str(out) + "-blends"]
    img = cv2.imread(str(next((out / "Tips").iterdir())), cv2.IMREAD_UNCHANGED)
    assert img.dtype.name == "uint16" and img.shape == (40 + 10, 64)
    assert len((tmp_path / "s-alignment" / "truth.csv").read_text().splitlines()) == 4
    assert len((tmp_path / "s-blends" / "truth.csv").read_text().splitlines()) == 3


def test_synth_usage_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--format", "jpg", "--bit-depth", "16"])
    assert result.exit_code == 2 and "JPEG cannot hold 16-bit" in _flat(result.stderr)
    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--shape", "big"])
    assert result.exit_code == 2 and "ROWSxCOLS" in _flat(result.output)
    assert not (tmp_path / "x").exists()


def test_summary_json_groups_and_bad_files(small_dataset_copy: Path) -> None:
    bad = small_dataset_copy / "Powder" / "broken.tif"
    bad.write_text("not really a tiff")
    result = runner.invoke(app, ["dataset", "summary", str(small_dataset_copy), "--json",
                                 "--group-by", "^([^_]+_[^_]+)_", "--fractions", "0.6,0.2,0.2"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["total"]["total"] == 120 and data["fractions"] == [0.6, 0.2, 0.2]
    assert all(row["groups"] >= 2 for row in data["classes"].values())
    assert data["errors"][0]["path"] == str(bad)
    assert f"error: {bad}: not an image" in result.stderr
    assert "120 images ok, 1 failed" in result.stderr


def test_summary_usage_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dataset", "summary", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in _flat(result.output)
    (tmp_path / "A").mkdir()
    result = runner.invoke(app, ["dataset", "summary", str(tmp_path), "--fractions", "0.5,0.5"])
    assert result.exit_code == 2 and "0.8,0.1,0.1" in _flat(result.output)
    result = runner.invoke(app, ["dataset", "summary", str(tmp_path), "--group-by", "no_group"])
    assert result.exit_code == 2 and "one capture group" in _flat(result.stderr)
