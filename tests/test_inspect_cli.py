"""`semcat inspect`: --help, a happy path in text and JSON, and a batch with bad files."""
from __future__ import annotations

import json

import cv2
import numpy as np
import tifffile
from typer.testing import CliRunner

from semcat.cli import app
from semcat.synth.layouts import render_layout

runner = CliRunner()
FEI_TEXT = "\r\n".join([
    "[System]", "SystemType=Helios NanoLab 660", "[Beam]", "HV=5000",
    "[Scan]", "PixelWidth=2.07e-009", "[Image]", "ResolutionY=200", "",
])


def _files(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (220, 256), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "fei.tif", img, extratags=[(34682, "s", 0, FEI_TEXT, True)])
    cv2.imwrite(str(tmp_path / "plain.png"), img[:100])
    return tmp_path


def test_help():
    result = runner.invoke(app, ["inspect", "--help"])
    assert result.exit_code == 0
    for word in ("--format", "jsonl", "--no-crop", "data-bar"):
        assert word in result.output


def test_json_lines(tmp_path):
    result = runner.invoke(app, ["inspect", str(_files(tmp_path)), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    old = runner.invoke(app, ["inspect", str(tmp_path), "--json"])  # the old spelling, for one release
    assert old.stdout == result.stdout and "--json is deprecated" in old.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    fei = by_name["fei.tif"]
    assert (fei["format"], fei["bit_depth"], fei["rows"], fei["cols"]) == ("TIFF", 8, 220, 256)
    assert fei["databar_rows"] == 20 and fei["pixel_size_m"] == 2.07e-9
    assert fei["databar_source"] == "metadata" and by_name["plain.png"]["databar_source"] is None
    assert fei["metadata"]["instrument"] == "Helios NanoLab 660"
    assert by_name["plain.png"]["format"] == "PNG" and by_name["plain.png"]["metadata"] is None
    assert "2 images ok, 0 failed" in result.stderr


def test_text_and_no_crop(tmp_path):
    result = runner.invoke(app, ["inspect", str(_files(tmp_path) / "fei.tif"), "--no-crop"])
    assert result.exit_code == 0
    line = result.stdout.strip()
    assert "\tTIFF\t8-bit\t256x220\t1ch\tbar=0\t" in line and "5 kV" in line


def test_text_says_where_the_bar_came_from(tmp_path):
    fei = runner.invoke(app, ["inspect", str(_files(tmp_path) / "fei.tif")])
    assert "\tbar=20 (metadata)\t" in fei.stdout
    content = np.random.default_rng(2).normal(120, 20, (300, 400)).clip(0, 255).astype(np.uint8)
    img, rows = render_layout(content, "zeiss_white_zone", np.random.default_rng(3))
    tifffile.imwrite(tmp_path / "zeiss.tif", img)
    zeiss = runner.invoke(app, ["inspect", str(tmp_path / "zeiss.tif")])
    assert zeiss.exit_code == 0 and zeiss.stdout.rstrip().endswith(f"\tbar={rows} (image)")


def test_bad_files_reported_batch_goes_on(tmp_path):
    _files(tmp_path)
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "notes.png").write_text("hello")
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 2
    assert "empty.tif: empty file (0 bytes)" in result.stderr
    assert "notes.png: not an image" in result.stderr
    assert "2 images ok, 2 failed" in result.stderr
    missing = runner.invoke(app, ["inspect", str(tmp_path), str(tmp_path / "missing.jpg")])
    assert missing.exit_code == 2 and "missing.jpg does not exist" in missing.stderr  # a usage error
