"""semmeta.py: vendor TIFF tags written with tifffile, read back and normalised to SI units."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile

from semcat.images import read_image
from semcat.semmeta import DISPLAY_WIDTH_M, SemMetadata, fei_tag_payload, read_sem_metadata, zeiss_tag_payload

FEI_ACQUIRED = datetime(2016, 12, 7, 14, 35, 17)
FEI_TEXT = fei_tag_payload(
    pixel_size_m=2.07e-9, columns=256, scan_rows=200, high_voltage_v=5000, working_distance_m=4.1e-3,
    detector="TLD", mode="SE", acquired=FEI_ACQUIRED, system_type="Helios NanoLab 660",
)
ZEISS_ACQUIRED = datetime(2015, 3, 12, 14, 22, 33)
ZEISS_TEXT = zeiss_tag_payload(
    pixel_size_m=5.582e-9, magnification=20_000, high_voltage_v=5000, working_distance_m=8.5e-3,
    detector="InLens", acquired=ZEISS_ACQUIRED, serial_number="4142-52-13",
)

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
    assert meta.magnification == pytest.approx(DISPLAY_WIDTH_M / (2.07e-9 * 256))
    assert meta.detector == "TLD SE"
    assert meta.acquired == FEI_ACQUIRED
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
    assert meta.acquired == ZEISS_ACQUIRED


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


def test_payloads_use_the_vendor_text_formats() -> None:
    """The builders write what the instruments write (lines copied from real files' tags)."""
    for line in ("AP_MAG", "Mag = 20.00 K X", "Pixel Size = 5.582 nm", "EHT = 5.00 kV", "Date :12 Mar 2015"):
        assert line in ZEISS_TEXT.split("\r\n")
    for line in ("[EScan]", "PixelWidth=2.07e-09", "Date=12/07/2016", "Time=02:35:17 PM", "ResolutionY=200"):
        assert line in FEI_TEXT.split("\r\n")
    low = zeiss_tag_payload(pixel_size_m=1e-6, magnification=150, high_voltage_v=20e3, working_distance_m=0.01,
                            detector="SE2", acquired=ZEISS_ACQUIRED)
    assert "Mag = 150 X" in low and "SV_SERIAL_NUMBER" not in low


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


REAL = Path(__file__).resolve().parents[2] / "shared" / "real-vendor-files"


def test_pixels_only_reads_skip_zeiss_tags_and_keep_the_crop(tmp_path):
    """``read_image_bytes(metadata=False)`` (what feature extraction asks for, issue 21) gives the
    same pixels and data-bar crop as a full read: FEI's scan height and TESCAN's strip still decide
    the crop; Zeiss's tag, which never does, is left unparsed (the vendor alone is named)."""
    from semcat.images import read_image_bytes

    files = [_write(tmp_path / "fei.tif", 34680, FEI_TEXT), _write(tmp_path / "zeiss.tif", 34118, ZEISS_TEXT),
             _write(tmp_path / "tescan.tif", 50431, TESCAN_TEXT + "ImageStripSize=20\r\n")]
    files += sorted(REAL.glob("*.tif")) if REAL.is_dir() else []  # real vendor files where present
    for path in files:
        data = path.read_bytes()
        full, info = read_image_bytes(data, path, max_side=448)
        lean, lean_info = read_image_bytes(data, path, max_side=448, metadata=False)
        assert np.array_equal(full, lean), path.name
        assert (lean_info.databar_rows, lean_info.databar_source) == (info.databar_rows, info.databar_source), path.name
        if info.metadata is not None and info.metadata.vendor == "Zeiss":
            assert lean_info.metadata == SemMetadata(vendor="Zeiss") and info.pixel_size_m
        else:
            assert lean_info.metadata == info.metadata, path.name
    assert read_image_bytes(files[0].read_bytes(), files[0], metadata=False)[1].databar_source == "metadata"


def test_cropped_and_whole_from_one_decode_match_two_reads(tmp_path):
    """``read_cropped_and_whole`` (the perceptual hashes' one decode) gives exactly the pixels of
    ``read_image_bytes`` with and without the data-bar crop: metadata crops (FEI, TESCAN), a
    detected bar (a synthetic Zeiss-style bar), and the real vendor files where present."""
    from semcat.images import read_cropped_and_whole, read_image_bytes
    from semcat.synth import write_dataset

    files = [_write(tmp_path / "fei.tif", 34680, FEI_TEXT),
             _write(tmp_path / "tescan.tif", 50431, TESCAN_TEXT + "ImageStripSize=20\r\n")]
    write_dataset(tmp_path / "bars", per_class=1, size=160, seed=3, databar=True, categories=["Particles"])
    files += sorted((tmp_path / "bars").rglob("*.tif"))
    files += sorted(REAL.glob("*.tif")) if REAL.is_dir() else []
    cropped_somewhere = 0
    for path in files:
        data = path.read_bytes()
        cropped, whole = read_cropped_and_whole(data, path, max_side=256)
        ref_cropped, info = read_image_bytes(data, path, max_side=256, metadata=False)
        ref_whole, _ = read_image_bytes(data, path, crop_databar=False, max_side=256, metadata=False)
        assert np.array_equal(cropped, ref_cropped) and np.array_equal(whole, ref_whole), path.name
        cropped_somewhere += cropped.shape[0] < whole.shape[0]
    assert cropped_somewhere >= 3  # FEI and TESCAN by metadata, the synthetic bar by detection
