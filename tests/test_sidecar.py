"""sidecar.py: JEOL/Hitachi ``.txt`` and TESCAN ``-tif.hdr`` files next to an image, written as the
instruments write them, read back through ``read_image`` in SI units; bad sidecars only warn."""
from __future__ import annotations

import os
import warnings
from datetime import datetime

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from semcat.cli import app
from semcat.images import read_image
from semcat.semmeta import SemMetadata, fei_tag_payload, parse_hitachi_text, parse_jeol_text, parse_tescan_text
from semcat.sidecar import SidecarWarning, find_sidecar

ROWS, COLS, SCAN_ROWS = 212, 256, 192  # file height, width, scanned height: a 20-row data bar

# Line layouts of the instruments' own files (JEOL JSM-7800F / InTouchScope, Hitachi S-4800 /
# SU8000, TESCAN MIRA3); CRLF like the Windows PCs that write them.
JEOL_TXT = "\r\n".join([
    "$CM_FORMAT JEOL/SEM", "$CM_VERSION 1.0", "$CM_INSTRUMENT JSM-7800F", "$CM_TITLE wafer_07",
    "$CM_SIGNAL SEI", "$CM_MAG 5000", "$CM_ACCEL_VOLT 15.00", "$CM_DATE 2019/03/12",
    "$CM_TIME 10:21:55", f"$CM_FULL_SIZE {COLS} {SCAN_ROWS}", "$CM_STAGE_POS 12.3 45.6 10.0 0.0 0.0 0",
    "$$SM_SCAN_ROTATION 0.00", "$$SM_MICRON_BAR 128", "$$SM_MICRON_MARKER 2um", "$$SM_WD 10.1", "",
])
HITACHI_TXT = "\r\n".join([
    "[SemImageFile]", "InstructName=S-4800", "SerialNumber=4208-01", "SampleName=Ni \xb5-pillars",
    "Format=tif", "ImageName=sample_01.tif", "Date=04/12/2013", "Time=14:35:23",
    f"DataSize={COLS}x{SCAN_ROWS}", "PixelSize=49.60938", "SignalName=SE(U)",
    "AcceleratingVoltage=15000 Volt", "DecelerationVoltage=0 Volt", "Magnification=1000",
    "WorkingDistance=8100 um", "EmissionCurrent=10000 nA", "LensMode=High", "ScanSpeed=Slow4", "",
])
TESCAN_HDR = "\r\n".join([
    "[MAIN]", "Company=TESCAN", "Date=2016-05-19", "Time=15:35:05", "Device=MIRA3 TESCAN",
    "Magnification=1500.0", "PixelSizeX=1.5e-07", "PixelSizeY=1.5e-07", f"ImageStripSize={ROWS - SCAN_ROWS}",
    "[SEM]", "HV=15000.0", "WD=0.0099", "Detector=SE", "",
])


def _image(path, fmt: str = "tif") -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (ROWS, COLS), dtype=np.uint8)
    img[SCAN_ROWS:] = 90  # a plain grey strip: no text, so only the sidecar can tell it is a bar
    if fmt == "tif":
        tifffile.imwrite(path, img)
    else:
        cv2.imwrite(str(path), img)


@pytest.mark.parametrize("fmt", ["tif", "bmp"])
def test_jeol_round_trip(tmp_path, fmt):
    _image(tmp_path / f"wafer_07.{fmt}", fmt)
    (tmp_path / "wafer_07.txt").write_text(JEOL_TXT, newline="")
    img, info = read_image(tmp_path / f"wafer_07.{fmt}")
    m = info.metadata
    assert m is not None and (m.vendor, m.instrument, m.detector) == ("JEOL", "JSM-7800F", "SEI")
    assert m.pixel_size_m == pytest.approx(2e-6 / 128) and info.pixel_size_m == m.pixel_size_m
    assert m.high_voltage_v == pytest.approx(15_000)
    assert m.working_distance_m == pytest.approx(10.1e-3)
    assert m.magnification == pytest.approx(5000)
    assert m.acquired == datetime(2019, 3, 12, 10, 21, 55)
    assert m.scan_rows == SCAN_ROWS and info.databar_rows == ROWS - SCAN_ROWS
    assert img.shape == (SCAN_ROWS, COLS)
    assert m.sidecar == str(tmp_path / "wafer_07.txt")


def test_hitachi_round_trip_latin1_and_upper_case_name(tmp_path):
    _image(tmp_path / "sample_01.tif")
    (tmp_path / "SAMPLE_01.TXT").write_bytes(HITACHI_TXT.encode("latin-1"))  # µ as Windows writes it
    os.utime(tmp_path, ns=(10**18, 10**18))  # a settled folder: names match in any letter case
    _, info = read_image(tmp_path / "sample_01.tif")
    m = info.metadata
    assert m is not None and (m.vendor, m.instrument, m.detector) == ("Hitachi", "S-4800", "SE(U)")
    assert m.pixel_size_m == pytest.approx(49.60938e-9)
    assert m.high_voltage_v == pytest.approx(15_000)
    assert m.working_distance_m == pytest.approx(8.1e-3)
    assert m.magnification == pytest.approx(1000)
    assert m.acquired == datetime(2013, 4, 12, 14, 35, 23)
    assert m.raw["SampleName"] == "Ni \xb5-pillars"
    assert m.scan_rows == SCAN_ROWS and info.databar_rows == ROWS - SCAN_ROWS


def test_tescan_hdr_round_trip_and_strip_from_the_tag(tmp_path):
    _image(tmp_path / "1500x-1.tif")
    (tmp_path / "1500x-1-tif.hdr").write_text(TESCAN_HDR, newline="")
    _, info = read_image(tmp_path / "1500x-1.tif")
    m = info.metadata
    assert m is not None and (m.vendor, m.instrument, m.detector) == ("TESCAN", "MIRA3 TESCAN", "SE")
    assert (m.pixel_size_m, m.high_voltage_v, m.working_distance_m, m.magnification) == pytest.approx(
        (1.5e-7, 15_000, 9.9e-3, 1500))
    assert m.acquired == datetime(2016, 5, 19, 15, 35, 5)
    assert info.databar_rows == ROWS - SCAN_ROWS and m.sidecar.endswith("1500x-1-tif.hdr")
    # the same text inside the TIFF (tag 50431) gives the same bar, and no sidecar is read
    img = tifffile.imread(tmp_path / "1500x-1.tif")
    tifffile.imwrite(tmp_path / "tagged.tif", img, extratags=[(50431, "s", 0, TESCAN_HDR, True)])
    _, tagged = read_image(tmp_path / "tagged.tif")
    assert tagged.databar_rows == ROWS - SCAN_ROWS and tagged.metadata.sidecar is None


def test_metadata_inside_the_file_wins_and_no_sidecar_means_none(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (ROWS, COLS), dtype=np.uint8)
    fei = fei_tag_payload(pixel_size_m=3e-9, columns=COLS, scan_rows=SCAN_ROWS, high_voltage_v=2000,
                          working_distance_m=4e-3, detector="TLD", acquired=datetime(2020, 1, 2, 3, 4, 5))
    tifffile.imwrite(tmp_path / "fei.tif", img, extratags=[(34682, "s", 0, fei, True)])
    (tmp_path / "fei.txt").write_text(JEOL_TXT)
    _, info = read_image(tmp_path / "fei.tif")
    assert info.metadata.vendor == "FEI/Thermo Fisher" and info.metadata.sidecar is None
    _image(tmp_path / "plain.tif")
    assert find_sidecar(tmp_path / "plain.tif") is None
    assert read_image(tmp_path / "plain.tif")[1].metadata is None


def test_sidecar_written_after_the_folder_was_read_is_found(tmp_path):
    _image(tmp_path / "late.tif")
    assert read_image(tmp_path / "late.tif")[1].metadata is None
    (tmp_path / "late.txt").write_text(JEOL_TXT)
    assert read_image(tmp_path / "late.tif")[1].metadata.vendor == "JEOL"
    # a settled folder's listing is cached, keyed by its modification time
    os.utime(tmp_path, ns=(10**18, 10**18))
    (tmp_path / "late.txt").unlink()
    os.utime(tmp_path, ns=(10**18 + 1, 10**18 + 1))
    assert find_sidecar(tmp_path / "late.tif") is None


@pytest.mark.parametrize("name,content,problem", [
    ("notes.txt", b"meeting notes: re-image sample 4 tomorrow\n", "not a JEOL, Hitachi or TESCAN sidecar"),
    ("binary.txt", bytes(range(256)) * 4, "binary content"),
    ("garbage.txt", b"$CM_FORMAT JEOL/SEM\r\n$CM_MAG banana\r\n$CM_ACCEL_VOLT -\r\n$$SM_WD nan mm\r\n",
     "no readable pixel size"),
    ("huge.hdr", b"[MAIN]\r\n" + b"x" * (1 << 20), "too large"),
])
def test_malformed_sidecar_is_one_warning_never_a_failed_image(tmp_path, name, content, problem):
    stem = name.split(".")[0]
    _image(tmp_path / f"{stem}.tif")
    (tmp_path / (f"{stem}-tif.hdr" if name.endswith(".hdr") else name)).write_bytes(content)
    with pytest.warns(SidecarWarning) as caught:
        img, info = read_image(tmp_path / f"{stem}.tif")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and stem in message and problem in message
    assert info.metadata is None and img.shape == (ROWS, COLS)


def test_fifo_named_like_a_sidecar_does_not_block(tmp_path):
    _image(tmp_path / "pipe.tif")
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.warns(SidecarWarning, match="not a regular file"):
        assert read_image(tmp_path / "pipe.tif")[1].metadata is None


def test_inspect_shows_the_sidecar_and_warns_in_one_line(tmp_path):
    _image(tmp_path / "wafer_07.tif")
    (tmp_path / "wafer_07.txt").write_text(JEOL_TXT)
    _image(tmp_path / "bad.tif")
    (tmp_path / "bad.txt").write_text("$CM_FORMAT JEOL/SEM\n$CM_MAG what\n")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        result = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = {line.split("\t")[0].rsplit("/", 1)[-1]: line for line in result.stdout.splitlines()}
    assert "sidecar=wafer_07.txt" in lines["wafer_07.tif"] and "JEOL" in lines["wafer_07.tif"]
    assert "bar=20" in lines["wafer_07.tif"] and "sidecar=" not in lines["bad.tif"]
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "bad.txt: sidecar ignored" in warned[0]
    assert "2 images ok, 0 failed" in result.stderr


def test_catalog_row_carries_sidecar_metadata(tmp_path):
    from semcat.catalog.ingest import describe

    _image(tmp_path / "wafer_07.tif")
    (tmp_path / "wafer_07.txt").write_text(JEOL_TXT)
    row = describe(tmp_path / "wafer_07.tif")
    assert (row["vendor"], row["instrument"], row["detector"]) == ("JEOL", "JSM-7800F", "SEI")
    assert row["pixel_size_m"] == pytest.approx(2e-6 / 128) and row["high_voltage_v"] == pytest.approx(15_000)
    assert row["meta"]["sidecar"] == str(tmp_path / "wafer_07.txt")


KEYS = ["$CM_FORMAT JEOL/SEM", "$CM_MAG", "$CM_ACCEL_VOLT", "$$SM_WD", "$CM_FULL_SIZE", "$$SM_MICRON_BAR",
        "$$SM_MICRON_MARKER", "[SemImageFile]", "PixelSize=", "AcceleratingVoltage=", "WorkingDistance=",
        "DataSize=", "Date=", "Time=", "ImageStripSize=", "HV=", "WD=", "PixelSizeX=", "Magnification="]
ODD = ["9" * 400, "1e999", "-0", "nan", "1280x0", "0 0", "5um", "8100 um", "15000 Volt", "x", "2019/13/45"]


def _lines(pairs: list[tuple[str, str]]) -> str:
    return "\r\n".join(f"{k}{'' if k.endswith('=') else ' '}{v}" for k, v in pairs)


def _parse_all(text: str) -> list[SemMetadata | None]:
    return [parse_jeol_text(text), parse_hitachi_text(text), parse_tescan_text(text, ROWS)]


def test_absurd_numbers_are_unknown_not_a_crash():
    for key in KEYS:
        for value in ODD:
            for meta in _parse_all(_lines([("$CM_FORMAT JEOL/SEM", ""), ("[SemImageFile]", ""), (key, value)])):
                assert meta is None or isinstance(meta, SemMetadata)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.one_of(st.text(max_size=12), st.sampled_from(ODD))),
                max_size=12))
def test_text_parsers_never_raise(pairs):
    """Whatever the vendor text holds, the parsers give SemMetadata or None (fuzz, bounded)."""
    for meta in _parse_all(_lines(pairs)):
        assert meta is None or isinstance(meta, SemMetadata)
