"""Issue 20: physically consistent synthetic instruments and scale normalisation with the pixel size."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from semcat.backbones import get_backbone
from semcat.cli import app
from semcat.features import _file_views
from semcat.featurespec import FeatureSpec
from semcat.images import read_image
from semcat.physical_scale import BAND, scale_crop, survey
from semcat.semmeta import fei_tag_payload
from semcat.synth.categories import _GENERATORS
from semcat.synth.instruments import _image_look, draw_instruments, pixel_size_nm, write_instrument_set
from semcat.synth.metadata import reference_field_m
from semcat.synth.writers import _encode

runner = CliRunner()
SPEC = get_backbone("efficientnet_lite0")


def _period_px(profile: np.ndarray) -> float:
    """Mean period (px) of a roughly periodic 1-D profile, from its mean-crossings."""
    p = profile - profile.mean()
    crossings = np.flatnonzero(np.diff(np.sign(p)) != 0)
    return 2 * (crossings[-1] - crossings[0]) / (len(crossings) - 1)


def _lattice_pitch_px(h: np.ndarray) -> float:
    """The dominant period (px) of a height map, from its 2-D spectrum's strongest peak."""
    f = np.abs(np.fft.fft2(h - h.mean()))
    f[0, 0] = 0
    ky, kx = np.unravel_index(int(np.argmax(f)), f.shape)
    ky, kx = min(ky, h.shape[0] - ky) / h.shape[0], min(kx, h.shape[1] - kx) / h.shape[1]
    return 1 / float(np.hypot(ky, kx))


def test_a_structure_measures_the_same_in_nm_on_two_instruments() -> None:
    """The same specimen (a grating) shot on a training instrument and on the held-out one: its pitch
    in pixels differs with the magnification, its pitch in nm (pixels x recorded pixel size) does not."""
    insts = draw_instruments(3, seed=1)
    size, measured, pixels = 256, [], []
    for inst in (insts[0], insts[-1]):
        look = replace(_image_look(inst, np.random.default_rng(11)), variant=0.6)  # variant 0.6: lines
        h, _ = _GENERATORS["Patterned_surface"](np.random.default_rng(4), look, (size, size))
        px = pixel_size_nm("Patterned_surface", look.zoom, (size, size))
        assert px * size * look.zoom == pytest.approx(reference_field_m("Patterned_surface") * 1e9)
        measured.append(_lattice_pitch_px(h) * px)
        pixels.append(px)
    assert max(pixels) / min(pixels) > 1.3  # the magnifications really differ
    assert measured[0] == pytest.approx(measured[1], rel=0.08)


def test_instrument_files_record_their_pixel_size(tmp_path: Path) -> None:
    write_instrument_set(tmp_path, instruments=2, per_class=2, size=64, seed=3, categories=["Particles", "Powder"],
                         databar=True)
    rows = list(csv.DictReader((tmp_path / "images.csv").open()))
    for r in rows:  # Zeiss (4 digits) and FEI tags, read back where semcat reads them
        img, info = read_image(tmp_path / r["path"])
        assert info.pixel_size_m * 1e9 == pytest.approx(float(r["pixel_nm"]), rel=1e-3)
        if info.metadata.vendor.startswith("FEI"):  # FEI records the scan height: the bar is cut by metadata
            assert img.shape == (64, 64) and info.databar_source == "metadata"
    assert {read_image(tmp_path / r["path"])[1].metadata.vendor[:3] for r in rows} == {"Zei", "FEI"}
    # a category's physical size is the sample's: powders are shot at ~60x larger pixels than particles
    by_cat = {c: np.median([float(r["pixel_nm"]) for r in rows if r["category"] == c]) for c in ("Particles", "Powder")}
    assert 20 < by_cat["Powder"] / by_cat["Particles"] < 200


def _stripes_tiff(path: Path, cols: int, period_px: float, pixel_nm: float | None) -> None:
    x = np.arange(cols)
    img = np.tile((127 + 100 * np.sin(2 * np.pi * x / period_px)).astype(np.uint8), (cols, 1))
    tag = None if pixel_nm is None else (34682, fei_tag_payload(
        pixel_size_m=pixel_nm * 1e-9, columns=cols, scan_rows=cols, high_voltage_v=5e3, working_distance_m=5e-3,
        detector="ETD", mode="SE", acquired=datetime(2024, 5, 6, 7)))
    path.write_bytes(_encode(img, "tif", tag))


@pytest.mark.parametrize("cols", [400, 900])  # 900: decoded at 448 px, the pixel size follows the reduction
def test_scale_normalisation_resamples_to_the_target_pixel_size(tmp_path: Path, cols: int) -> None:
    pixel_nm, period_px, target = 10.0 * 400 / cols, 20.0 * cols / 400, 15.0  # a 200 nm period either way
    f = tmp_path / "stripes.tif"
    _stripes_tiff(f, cols, period_px, pixel_nm)
    views, scaled = _file_views(f.read_bytes(), f, SPEC, crop_databar=False, view="center", scale_nm=target)
    assert scaled and views.shape == (1, 224, 224)
    assert _period_px(views[0, 112]) == pytest.approx(200 / target, rel=0.03)  # 13.3 px: the target's scale
    plain, _ = _file_views(f.read_bytes(), f, SPEC, crop_databar=False, view="center")
    assert _period_px(plain[0, 112]) == pytest.approx(200 / (pixel_nm * cols / 224), rel=0.03)


def test_scale_crop_band_mirrors_and_clamps() -> None:
    img = np.random.default_rng(0).random((100, 120)).astype(np.float32)
    assert scale_crop(img, 1.0, 0.25, 224).shape == (56, 56)  # inside the image: a centred crop
    wide = scale_crop(img, 1.0, 0.6, 224)  # 134 px > 100 rows: the field is mirrored, not stretched
    assert wide.shape == (134, 134) and np.allclose(wide[17:117, 7:127], img)
    assert scale_crop(img, 1.0, 100.0, 224).shape[0] == round(BAND[1] * 100)  # clamped
    assert scale_crop(img, 1.0, 0.01, 224).shape[0] == round(BAND[0] * 100)
    with pytest.raises(ValueError, match="must be > 0"):
        scale_crop(img, 0.0, 1.0, 224)


def test_the_scale_is_in_the_cache_key_and_a_file_without_pixel_size_falls_back(tmp_path: Path) -> None:
    plain, scaled = FeatureSpec.resolve("efficientnet_lite0"), FeatureSpec.resolve("efficientnet_lite0", scale_nm=20)
    assert scaled.key != plain.key and "scale=20nm" in scaled.signature and "scale=" not in plain.signature
    assert FeatureSpec.resolve("efficientnet_lite0", scale_nm=30).key != scaled.key
    with pytest.raises(ValueError, match="positive pixel size"):
        FeatureSpec.resolve("efficientnet_lite0", scale_nm=-1)
    png = tmp_path / "no_pixel_size.png"
    cv2.imwrite(str(png), (np.random.default_rng(1).random((120, 150)) * 255).astype(np.uint8))
    views, was_scaled = _file_views(png.read_bytes(), png, SPEC, crop_databar=False, view="center", scale_nm=20)
    today, _ = _file_views(png.read_bytes(), png, SPEC, crop_databar=False, view="center")
    assert not was_scaled and np.array_equal(views, today)  # today's centre crop, bit for bit
    tif = tmp_path / "stripes.tif"
    _stripes_tiff(tif, 200, 10, 5.0)
    assert survey([png, tif, tmp_path / "missing.tif"], 224, crop_databar=False) == (pytest.approx(5.0 * 200 / 224),
                                                                                    [str(png)])


@pytest.mark.slow
def test_train_records_the_scale_and_commands_count_the_fallback(tmp_path: Path) -> None:
    from semcat.model import load_model

    data = tmp_path / "inst"
    write_instrument_set(data, instruments=2, per_class=3, size=96, seed=5, categories=["Particles", "Nanowires"])
    model = tmp_path / "m.semcat"
    # --folds 2: the penalty folds keep file-name series together, and this set has only 2 (inst0_*, inst1_*)
    result = runner.invoke(app, ["train", str(data), "--out", str(model), "--scale", "auto", "--folds", "2"])
    assert result.exit_code == 0, result.output
    pixel = [float(r["pixel_nm"]) for r in csv.DictReader((data / "images.csv").open())]
    loaded = load_model(model)
    assert loaded.spec.scale_nm == pytest.approx(np.median(pixel) * 96 / 224, rel=1e-3)  # auto: the median
    assert "0 of 12 images record no pixel size" in " ".join(result.stderr.split())  # the console wraps lines
    cv2.imwrite(str(data / "Particles" / "extra.png"), cv2.imread(str(next(data.rglob("*.tif"))), cv2.IMREAD_GRAYSCALE))
    result = runner.invoke(app, ["classify", str(model), str(data), "--format", "csv"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "1 of 13 images record no pixel size and keep the centre crop" in said and "classified less reliably" in said
    result = runner.invoke(app, ["features", str(data), "--scale", "40"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["scale_nm"] == 40 and summary["unscaled"] == 1 and summary["images"] == 13
    result = runner.invoke(app, ["features", str(data / "Particles" / "extra.png"), "--scale", "auto"])
    assert result.exit_code == 1 and "none of the images records a pixel size" in " ".join(result.stderr.split())
    result = runner.invoke(app, ["train", str(data), "--scale", "-3"])
    assert result.exit_code == 1 and "positive pixel size" in " ".join(result.stderr.split())


def test_scale_augmentations_have_their_own_cache_keys_and_need_a_scale() -> None:
    from semcat.physical_scale import JITTER, scale_variants
    from semcat.training import _augment_specs

    scaled = FeatureSpec.resolve("efficientnet_lite0", scale_nm=20)
    assert scale_variants("aug-noscale", 20.0) == [None]
    assert scale_variants("aug-scalejitter", 20.0) == [pytest.approx(20 / JITTER), pytest.approx(20 * JITTER)]
    specs = _augment_specs(scaled, ["aug-noscale", "aug-scalejitter", "aug-flip"])
    # noscale shares today's crop's cache (a default model's features); jitter and flip have their own
    assert specs[0].key == FeatureSpec.resolve("efficientnet_lite0").key
    assert len({s.key for s in [scaled, *specs]}) == 5 and specs[3].view == "clean+aug-flip" and specs[3].scale_nm == 20
    assert _augment_specs(replace(scaled, view="tta2"), ["aug-noscale"])[0].view == "tta2"  # any view
    with pytest.raises(ValueError, match="noscale needs scale normalisation"):
        _augment_specs(FeatureSpec.resolve("efficientnet_lite0"), ["aug-noscale"])
    with pytest.raises(ValueError, match="with view 'center' or 'clean'"):
        _augment_specs(replace(scaled, view="tta2"), ["aug-flip"])


def test_size_spread_varies_the_structures_not_the_pixel_size(tmp_path: Path) -> None:
    kw = {"instruments": 2, "per_class": 4, "size": 64, "seed": 3, "categories": ["Particles"]}
    write_instrument_set(tmp_path / "one", **kw)
    write_instrument_set(tmp_path / "spread", size_spread=4.0, **kw)
    one = list(csv.DictReader((tmp_path / "one" / "images.csv").open()))
    spread = list(csv.DictReader((tmp_path / "spread" / "images.csv").open()))
    assert "size_factor" not in one[0] and [r["pixel_nm"] for r in one] == [r["pixel_nm"] for r in spread]
    factors = [float(r["size_factor"]) for r in spread]
    assert all(0.5 <= f <= 2 for f in factors) and max(factors) / min(factors) > 1.5
    differ = [not np.array_equal(cv2.imread(str(tmp_path / "one" / a["path"])), cv2.imread(str(tmp_path / "spread" / b["path"])))
              for a, b in zip(one, spread)]
    assert all(differ)
    with pytest.raises(ValueError, match="size_spread must be >= 1"):
        write_instrument_set(tmp_path / "bad", size_spread=0.5, **kw)


@pytest.mark.slow
def test_scale_mixed_training_from_the_cli(tmp_path: Path) -> None:
    """`train --scale auto --augment noscale`: the head also sees today's crops, so classify does not
    warn about files without a pixel size; `synth --size-spread` and `compare` run the variant."""
    from semcat.model import load_model

    data = tmp_path / "inst"
    result = runner.invoke(app, ["synth", str(data), "--instruments", "2", "--per-class", "3", "--size", "96",
                                 "--seed", "5", "--size-spread", "4", "--categories", "Particles,Nanowires"])
    assert result.exit_code == 0, result.output
    assert "size_factor" in (data / "images.csv").read_text().splitlines()[0]
    model = tmp_path / "m.semcat"
    result = runner.invoke(app, ["train", str(data), "--out", str(model), "--scale", "auto", "--augment", "noscale",
                                 "--folds", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "m.semcat.report" / "report.json").read_text())
    assert report["augment"] == ["aug-noscale"] and report["training_rows"] == 2 * sum(report["counts"]["train"].values())
    assert load_model(model).spec.scale_nm is not None
    cv2.imwrite(str(data / "Particles" / "extra.png"), cv2.imread(str(next(data.rglob("*.tif"))), cv2.IMREAD_GRAYSCALE))
    result = runner.invoke(app, ["classify", str(model), str(data), "--format", "csv"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 0 and "1 of 13 images record no pixel size" in said and "less reliably" not in said
    result = runner.invoke(app, ["train", str(data), "--out", str(model), "--augment", "noscale"])  # no --scale
    assert result.exit_code == 1 and "noscale needs scale normalisation (--scale)" in " ".join(result.stderr.split())
    result = runner.invoke(app, ["compare", str(data), "--cv", "groups", "--group-by", "folder", "--methods",
                                 "semcat+scale-mix,semcat+scale-mix/test-nopx"])
    assert result.exit_code == 0, result.output
    assert "| semcat+scale-mix |" in result.stdout and "| semcat+scale-mix/test-nopx |" in result.stdout
