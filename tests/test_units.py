"""Operators' units: SI metadata as an SEM shows it, on the image page and in inspect; JSON stays SI."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_web_helpers import add_predictions, client, csrf

from semcat import units
from semcat.web.app import create_app
from semcat.web.settings import Settings

# The values the issue saw printed raw on the image page.
LONG_MODEL_ID = "efficientnet_lite0-" + "0123456789abcdef" * 4  # as long as a real one
PIXEL, WD, MAG, HV = 1.8200000000000002e-07, 0.0076100000000000004, 13189.988386627412, 5000.0


@pytest.mark.parametrize(("fn", "value", "text"), [
    (units.pixel_size, PIXEL, "182 nm"),
    (units.pixel_size, 2.5e-6, "2.5 µm"),
    (units.pixel_size, 8.5e-10, "0.85 nm"),
    (units.pixel_size, 3.37e-5, "33.7 µm"),
    (units.voltage, HV, "5 kV"),
    (units.voltage, 30000.0, "30 kV"),
    (units.voltage, 500.0, "500 V"),
    (units.working_distance, WD, "7.61 mm"),
    (units.magnification, MAG, "×13.2 k"),
    (units.magnification, 250_000.0, "×250 k"),
    (units.magnification, 850.0, "×850"),
    (units.file_size, 1_834_567, "1.83 MB"),
    (units.file_size, 900, "900 B"),
    (units.timestamp, "2026-11-29T21:58:33.123456", "2026-11-29 21:58:33"),
    (units.timestamp, datetime(2016, 6, 13, 17, 6, 40, 999, tzinfo=timezone.utc), "2016-06-13 17:06:40 UTC"),
    (units.timestamp, "yesterday", "yesterday"),
])
def test_operator_units(fn, value, text) -> None:
    assert fn(value) == text


def test_display_value_keeps_unknown_keys_and_bad_values_as_text() -> None:
    assert units.display_value("detector", "ETD SE") == "ETD SE"
    assert units.display_value("magnification", "banana") == "banana"
    assert units.display_value("pixel_size_m", None) == ""
    assert units.display_label("pixel_size_m") == "pixel size" and units.display_label("bit_depth") == "bit depth"
    assert units.short_id("a" * 64) == "a" * 12 + "…" and units.short_id("abc") == "abc"


def _fei_tiff(path: Path, img: np.ndarray | None = None) -> Path:
    text = (f"[User]\nDate=06/13/2016\nTime=17:06:40\n[Beam]\nHV={HV}\nBeam=EBeam\nScan=EScan\n"
            f"[EBeam]\nWD={WD!r}\n[EScan]\nPixelWidth={PIXEL!r}\n[Image]\nMagnification={MAG!r}\n"
            "[System]\nSystemType=Quanta 650\n")
    if img is None:
        img = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    tifffile.imwrite(path, img, extratags=[(34680, "s", 0, text, True)])
    return path


def test_image_page_shows_operator_units_and_short_ids_while_json_stays_si(tmp_path: Path) -> None:
    from semcat.catalog import open_catalog

    (tmp_path / "a").mkdir()
    _fei_tiff(tmp_path / "a" / "fei.tif")
    cat = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert cat.ingest([tmp_path / "a"], progress=False).failed == 0
        add_predictions(cat, model_id=LONG_MODEL_ID)
        rec = cat.search(limit=1)[0]
        c = client(create_app(Settings(db_url=cat.url, local_user="t", storage_dir=tmp_path / "s"), catalog=cat))
        page = c.get(f"/images/{rec.sha256}").text
        for shown in ("182 nm", "5 kV", "7.61 mm", "×13.2 k", "2016-06-13 17:06:40"):
            assert shown in page, shown
        for raw in ("1.8200000000000002e-07", "0.0076100000000000004", "13189.988386627412"):
            assert f">{raw}<" not in page  # only in the cell's title (hover), never as the shown text
        assert f'data-copy="{rec.sha256}"' in page and f">{rec.sha256[:12]}…<" in page
        assert rec.model_id and f">{rec.model_id}<" not in page and f'data-copy="{rec.model_id}"' in page
        image = c.get(f"/api/images/{rec.sha256}").json()["image"]
        assert image["pixel_size_m"] == pytest.approx(PIXEL) and image["magnification"] == pytest.approx(MAG)
        upload = c.post("/upload", files=[("files", ("u.tif", (tmp_path / "a" / "fei.tif").read_bytes()))],
                        headers={**csrf(c), "Accept": "text/html"})
        assert upload.status_code == 200 and "182 nm" in upload.text and "×13.2 k" in upload.text
    finally:
        cat.close()


def test_inspect_table_in_operator_units_and_json_in_si(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from semcat.cli import app

    path = _fei_tiff(tmp_path / "fei.tif")
    runner = CliRunner()
    line = runner.invoke(app, ["inspect", "--no-crop", str(path)]).stdout
    assert "pixel=182 nm" in line and "×13.2 k" in line and "5 kV" in line and "WD 7.61 mm" in line
    data = json.loads(runner.invoke(app, ["inspect", "--json", "--no-crop", str(path)]).stdout)
    assert data["pixel_size_m"] == pytest.approx(PIXEL) and data["metadata"]["working_distance_m"] == pytest.approx(WD)
