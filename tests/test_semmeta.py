"""semmeta.py: vendor TIFF tags written with tifffile, read back and normalised to SI units."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile

from semcat.images import read_image
from semcat.semmeta import SemMetadata, read_sem_metadata

FEI_TEXT = "\r\n".join([
    "[User]", "Date=12/07/2016", "Time=02:35:17 PM",
    "[System]", "Type=SEM", "SystemType=Helios NanoLab 660", "DisplayWidth=0.101",
    "[Beam]", "HV=5000", "Beam=EBeam", "Scan=EScan",
    "[EBeam]", "WD=0.0041",
    "[EScan]", "PixelWidth=2.07e-009", "HorFieldsize=2.02e-006",
    "[Stage]", "WorkingDistance=0.0041",
    "[Image]", "ResolutionX=256", "ResolutionY=200",
    "[Detectors]", "Name=TLD", "Mode=SE", "",
])

ZEISS_TEXT = "\r\n".join([
    "0", "0",
    "AP_PIXEL_SIZE", "Pixel Size = 5.582 nm",
    "AP_MAG", "Mag = 20.00 K X",
    "AP_WD", "WD = 8.5 mm",
    "AP_ACTUALKV", "EHT = 5.00 kV",
    "DP_DETECTOR_CHANNEL", "Signal A = InLens",
    "AP_DATE", "Date :12 Mar 2015",
    "AP_TIME", "Time :14:22:33",
    "SV_SERIAL_NUMBER", "Serial No. = 4142-52-13", "",
])

TESCAN_TEXT = "\r\n".join([
    "[MAIN]", "Device=MIRA3 TESCAN", "Magnification=1500.0", "PixelSizeX=1.5e-07",
    "PixelSizeY=1.5e-07", "HV=15000.0", "WD=0.0099", "Detector=SE", "Date=2016-05-19",
    "Time=15:35:05", "",
])


def _write(path: Path, tag: int, payload: str | bytes, *, rows: int = 220, dtype: str = "s") -> Path:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (rows, 256), dtype=np.uint8)
    img[200:] = 90  # a plain grey strip: no text, so only metadata can tell it is a bar
    count = len(payload) if dtype == "B" else 0
    tifffile.imwrite(path, img, extratags=[(tag, dtype, count, payload, True)])
    return path


def test_fei_round_trip(tmp_path):
    meta = read_sem_metadata(_write(tmp_path / "fei.tif", 34682, FEI_TEXT))
    assert meta is not None and meta.vendor == "FEI/Thermo Fisher"
    assert meta.instrument == "Helios NanoLab 660"
    assert meta.pixel_size_m == pytest.approx(2.07e-9)
    assert meta.high_voltage_v == pytest.approx(5000)
    assert meta.working_distance_m == pytest.approx(4.1e-3)
    assert meta.magnification == pytest.approx(0.101 / 2.02e-6)
    assert meta.detector == "TLD SE"
    assert meta.acquired == datetime(2016, 12, 7, 14, 35, 17)
    assert meta.scan_rows == 200
    assert meta.raw["Beam"]["HV"] == 5000


def test_fei_scan_height_gives_exact_databar(tmp_path):
    path = _write(tmp_path / "fei.tif", 34680, FEI_TEXT)
    img, info = read_image(path)
    assert info.databar_rows == 20 and img.shape == (200, 256)
    assert info.pixel_size_m == pytest.approx(2.07e-9)
    small, info_small = read_image(path, max_side=128)
    assert info_small.databar_rows == 20 and small.shape == (100, 128)


def test_zeiss_round_trip(tmp_path):
    meta = read_sem_metadata(_write(tmp_path / "zeiss.tif", 34118, ZEISS_TEXT))
    assert meta is not None and meta.vendor == "Zeiss"
    assert meta.pixel_size_m == pytest.approx(5.582e-9)
    assert meta.magnification == pytest.approx(20_000)
    assert meta.working_distance_m == pytest.approx(8.5e-3)
    assert meta.high_voltage_v == pytest.approx(5000)
    assert meta.detector == "InLens"
    assert meta.instrument == "4142-52-13"
    assert meta.acquired == datetime(2015, 3, 12, 14, 22, 33)


@pytest.mark.parametrize("dtype", ["s", "B"])
def test_tescan_round_trip(tmp_path, dtype):
    payload = TESCAN_TEXT.encode() if dtype == "B" else TESCAN_TEXT
    meta = read_sem_metadata(_write(tmp_path / "tescan.tif", 50431, payload, dtype=dtype))
    assert meta is not None and meta.vendor == "TESCAN"
    assert (meta.instrument, meta.detector) == ("MIRA3 TESCAN", "SE")
    assert meta.magnification == pytest.approx(1500)
    assert meta.pixel_size_m == pytest.approx(1.5e-7)
    assert meta.high_voltage_v == pytest.approx(15000)
    assert meta.working_distance_m == pytest.approx(9.9e-3)
    assert meta.acquired == datetime(2016, 5, 19, 15, 35, 5)


def test_to_dict_is_json_safe(tmp_path):
    for tag, text in ((34682, FEI_TEXT), (34118, ZEISS_TEXT), (50431, TESCAN_TEXT)):
        meta = read_sem_metadata(_write(tmp_path / f"{tag}.tif", tag, text))
        d = json.loads(json.dumps(meta.to_dict()))
        assert d["vendor"] == meta.vendor and d["acquired"] == meta.acquired.isoformat()


def test_no_metadata_and_garbage(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((16, 16), np.uint8))
    assert read_sem_metadata(tmp_path / "plain.tif") is None
    (tmp_path / "text.tif").write_text("not a tiff")
    assert read_sem_metadata(tmp_path / "text.tif") is None
    # A malformed vendor payload: the image still reads, nothing is invented.
    meta = read_sem_metadata(_write(tmp_path / "bad.tif", 34682, "[Beam]\r\nHV=abc\r\nnonsense"))
    assert meta is None or (meta.high_voltage_v is None and meta.pixel_size_m is None)
    img, info = read_image(tmp_path / "bad.tif")
    assert info.pixel_size_m is None and img.ndim == 2


def test_dataclass_defaults():
    assert SemMetadata().to_dict()["raw"] == {}
