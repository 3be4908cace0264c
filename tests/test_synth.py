"""The synthetic SEM generator: determinism, shapes/dtypes, class separability, alignment truth."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from semcat import CATEGORIES
from semcat.synth import (
    blend,
    generate_image,
    generate_nanowires,
    render_databar,
    write_alignment_set,
    write_blend_set,
    write_dataset,
)


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_renders_a_varied_uint8_image(category: str) -> None:
    img = generate_image(category, np.random.default_rng(0), 96)
    assert img.shape == (96, 96) and img.dtype == np.uint8
    assert img.std() > 10  # not blank
    other = generate_image(category, np.random.default_rng(1), 96)
    assert not np.array_equal(img, other)


def test_same_seed_gives_identical_images() -> None:
    for cat in CATEGORIES:
        a = generate_image(cat, np.random.default_rng([3, 1]), 64)
        b = generate_image(cat, np.random.default_rng([3, 1]), 64)
        np.testing.assert_array_equal(a, b)


def test_non_square_shape_databar_and_16_bit() -> None:
    img = generate_image("Particles", np.random.default_rng(0), shape=(60, 100), databar=True, bit_depth=16)
    bar_rows = max(10, round(60 * 0.08))
    assert img.shape == (60 + bar_rows, 100) and img.dtype == np.uint16
    assert len(np.unique(img[:60])) > 256  # real 16-bit depth, not 8-bit scaled up


@pytest.mark.parametrize("style", ["zeiss", "fei", "white"])
def test_databar_styles_are_uniform_bands_with_text(style: str) -> None:
    bar = render_databar(400, 32, np.random.default_rng(0), style=style)
    assert bar.shape == (32, 400) and bar.dtype == np.float32
    background = np.median(bar)
    assert (background < 0.1) if style != "white" else (background > 0.8)
    assert np.mean(np.abs(bar - background) > 0.5) > 0.02  # there is text / a scale bar


def test_read_image_crops_the_generated_databar(tmp_path: Path) -> None:
    """The bars look enough like a real instrument's that semcat.images finds them."""
    import tifffile

    from semcat.images import read_image

    found = []
    for i in range(6):
        img = generate_image(CATEGORIES[i], np.random.default_rng(i), 160, databar=True)
        tifffile.imwrite(tmp_path / f"{i}.tif", img)
        arr, info = read_image(tmp_path / f"{i}.tif")
        found.append(abs(arr.shape[0] - 160) <= 2)
    assert sum(found) >= 5, found


def test_bad_arguments_say_what_is_expected() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="did you mean Particles"):
        generate_image("Particle", rng)
    with pytest.raises(ValueError, match="at least 32x32"):
        generate_image("Tips", rng, 8)
    with pytest.raises(ValueError, match="bit_depth must be 8 or 16"):
        generate_image("Tips", rng, 64, bit_depth=12)
    with pytest.raises(ValueError, match="order must be in"):
        generate_nanowires(1.5, rng, 64)
    with pytest.raises(ValueError, match="JPEG cannot hold 16-bit"):
        write_dataset("/nonexistent", fmt="jpg", bit_depth=16)


def _texture_features(img: np.ndarray) -> np.ndarray:
    """Generic statistics (intensity, gradients, orientation, spectrum) — nothing class-specific."""
    import cv2

    f = img.astype(np.float32) / 255.0
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1)
    mag = np.hypot(gx, gy)
    jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
    coherency = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-9)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(f - f.mean()))) ** 2
    r = np.hypot(*np.meshgrid(np.arange(-48, 48), np.arange(-48, 48)))
    radial = [np.log(spec[(r >= a) & (r < b)].mean() + 1e-9) for a, b in ((1, 3), (3, 6), (6, 12), (12, 24), (24, 48))]
    hist = np.histogram(f, bins=8, range=(0, 1))[0] / f.size
    return np.array([f.mean(), f.std(), mag.mean(), mag.std(), coherency, *radial, *hist])


@pytest.mark.slow
def test_classes_are_statistically_separable_but_varied() -> None:
    """Simple texture statistics tell the classes apart far above chance (0.1), not perfectly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = [], []
    for ci, cat in enumerate(CATEGORIES):
        for i in range(12):
            X.append(_texture_features(generate_image(cat, np.random.default_rng([11, ci, i]), 96)))
            y.append(ci)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    acc = cross_val_score(clf, np.array(X), np.array(y), cv=4).mean()
    assert acc > 0.3, acc  # chance is 0.1; CNN features do far better
    per_class_spread = [np.std(np.array(X)[np.array(y) == c][:, 1]) for c in range(10)]
    assert min(per_class_spread) > 0.005  # images within a class differ in contrast


def test_write_dataset_is_deterministic_and_adding_images_keeps_existing(tmp_path: Path) -> None:
    cats = CATEGORIES[:3]
    a, b = tmp_path / "a", tmp_path / "b"
    assert write_dataset(a, per_class=3, size=64, categories=cats) == {c: 3 for c in cats}
    write_dataset(b, per_class=5, size=64, categories=cats)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.tif"))
    assert len(files_a) == 9
    for rel in files_a:  # the first 3 of 5 are byte-identical to a 3-image run
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert write_dataset(a, per_class=5, size=64, categories=cats) == {c: 2 for c in cats}
    assert write_dataset(a, per_class=5, size=64, categories=cats) == {c: 0 for c in cats}  # resumes


def test_file_names_form_sample_groups(tmp_path: Path) -> None:
    import re

    write_dataset(tmp_path, per_class=12, size=48, categories=["Powder"], fmt="png")
    names = sorted(p.name for p in (tmp_path / "Powder").iterdir())
    assert len(names) == 12 and all(re.fullmatch(r"[a-z]+_[A-Za-z0-9]+_\d{3}\.png", n) for n in names)
    groups = {re.match(r"^([^_]+_[^_]+)_", n).group(1) for n in names}
    assert 2 <= len(groups) <= 6  # a few shots per sample


def test_16_bit_tiff_and_jpeg_formats(tmp_path: Path) -> None:
    import cv2
    import tifffile

    write_dataset(tmp_path / "t", per_class=1, size=48, categories=["Tips"], bit_depth=16)
    (tif,) = (tmp_path / "t" / "Tips").iterdir()
    assert tifffile.imread(tif).dtype == np.uint16
    write_dataset(tmp_path / "j", per_class=1, size=48, categories=["Tips"], fmt="jpg")
    (jpg,) = (tmp_path / "j" / "Tips").iterdir()
    assert jpg.suffix == ".jpg" and cv2.imread(str(jpg), cv2.IMREAD_UNCHANGED).shape == (48, 48)


def test_nanowire_order_parameter_rises_with_order() -> None:
    means = []
    for order in (0.0, 0.4, 0.8, 1.0):
        s = [generate_nanowires(order, np.random.default_rng([5, i]), 96)[1] for i in range(6)]
        means.append(np.mean(s))
    assert all(a < b for a, b in zip(means, means[1:])), means
    assert means[0] < 0.3 and means[-1] > 0.95


def test_aligned_wires_point_along_the_reported_angle(tmp_path: Path) -> None:
    """The truth angle matches the image's own gradient structure (wires run across gradients)."""
    from semcat.images import read_image

    truth = write_alignment_set(tmp_path, n=12, size=96, seed=1)
    rows = list(csv.DictReader(truth.open()))
    assert [r["file"] for r in rows] == [f"nanowires_{i:04d}.tif" for i in range(12)]
    order = np.array([float(r["order"]) for r in rows])
    assert np.corrcoef(order, np.arange(12))[0, 1] > 0.8
    r = rows[-1]
    img, _ = read_image(tmp_path / r["file"], crop_databar=False)
    gy, gx = np.gradient(img.astype(np.float64))
    gyu = -gy  # rows grow downwards; the truth angle is counter-clockwise on screen
    grad_angle = 0.5 * np.degrees(np.arctan2(2 * (gx * gyu).sum(), (gx * gx - gyu * gyu).sum()))
    wire_angle = grad_angle + 90
    diff = (wire_angle - float(r["angle_deg"]) + 90) % 180 - 90
    assert abs(diff) < 10, (wire_angle, r["angle_deg"])


def test_blend_and_blend_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for mode in ("region", "mix"):
        img = blend("Particles", "Patterned_surface", 0.5, rng, 64, mode=mode)
        assert img.shape == (64, 64) and img.dtype == np.uint8 and img.std() > 5
    with pytest.raises(ValueError, match="weight must be in"):
        blend("Particles", "Tips", 2.0, rng, 64)
    truth = write_blend_set(tmp_path, n=4, size=48, pairs=[("Particles", "Powder")])
    rows = list(csv.DictReader(truth.open()))
    assert len(rows) == 4 and {r["class_a"] for r in rows} == {"Particles"}
    assert all(0.2 <= float(r["weight"]) <= 0.8 and (tmp_path / r["file"]).is_file() for r in rows)


def test_tiffs_carry_vendor_metadata_consistent_with_the_image(tmp_path: Path) -> None:
    import re

    from semcat.images import read_image
    from semcat.semmeta import DISPLAY_WIDTH_M, read_sem_metadata

    cats = ["Particles", "MEMS_devices_and_electrodes"]
    write_dataset(tmp_path / "a", per_class=6, size=64, categories=cats, databar=True)
    by_sample: dict[str, set] = {}
    vendors = set()
    for path in sorted((tmp_path / "a").rglob("*.tif")):
        meta = read_sem_metadata(path)
        assert meta is not None, path
        vendors.add(meta.vendor)
        field = meta.pixel_size_m * 64  # pixel size = field width / columns
        assert meta.magnification == pytest.approx(DISPLAY_WIDTH_M / field, rel=0.01)
        assert 1e3 <= meta.high_voltage_v <= 30e3 and 1e-3 <= meta.working_distance_m <= 20e-3
        assert meta.detector and meta.instrument and 2000 < meta.acquired.year < 2030
        if meta.vendor.startswith("FEI"):  # the scan height marks the data bar exactly
            img, info = read_image(path)
            assert meta.scan_rows == 64 and info.databar_rows == 10 and img.shape == (64, 64)
        sample = re.match(r"^([^_]+_[^_]+)_", path.name).group(1)
        by_sample.setdefault(sample, set()).add((meta.vendor, meta.magnification, meta.detector))
    assert vendors == {"Zeiss", "FEI/Thermo Fisher"}
    assert all(len(v) == 1 for v in by_sample.values()), by_sample  # shots of a sample share settings
    mags = {c: np.median([read_sem_metadata(p).magnification for p in (tmp_path / "a" / c).iterdir()]) for c in cats}
    assert mags["Particles"] > 10 * mags["MEMS_devices_and_electrodes"]  # each kind at its usual scale

    write_dataset(tmp_path / "plain", per_class=2, size=64, categories=cats, metadata=False)
    assert all(read_sem_metadata(p) is None for p in (tmp_path / "plain").rglob("*.tif"))
    truth = write_blend_set(tmp_path / "blends", n=2, size=48)
    assert {read_sem_metadata(p).vendor for p in truth.parent.glob("*.tif")} == vendors


def test_catalog_magnification_filters_on_synthetic_data(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from semcat.cli import app
    from semcat.semmeta import read_sem_metadata

    run = CliRunner().invoke
    data, db = tmp_path / "data", f"sqlite:///{tmp_path / 'c.db'}"
    assert run(app, ["synth", str(data), "--per-class", "4", "--size", "48"]).exit_code == 0
    mags = {str(p): read_sem_metadata(p).magnification for p in data.rglob("*.tif")}
    assert run(app, ["ingest", str(data), "--db", db]).exit_code == 0
    lo, hi = sorted(mags.values())[len(mags) // 4], sorted(mags.values())[3 * len(mags) // 4]
    result = run(app, ["search", "--db", db, "--mag-min", str(lo), "--mag-max", str(hi), "--format", "json",
                       "--limit", "100"])
    assert result.exit_code == 0, result.output
    found = {r["path"] for r in json.loads(result.stdout)}
    assert found == {p for p, m in mags.items() if lo <= m <= hi} and 0 < len(found) < len(mags)

    plain = tmp_path / "plain"
    result = run(app, ["synth", str(plain), "--per-class", "1", "--size", "48", "--no-metadata"])
    assert result.exit_code == 0 and all(read_sem_metadata(p) is None for p in plain.rglob("*.tif"))
