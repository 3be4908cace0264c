"""Structure-tensor orientation on analytic images, and both alignment scores on synthetic nanowires."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semcat.alignment import (
    coherency_map,
    orientation_map,
    spearman,
    structure_tensor_orientation,
)


def grating(theta_deg: float, size: int = 128, period: float = 10.0) -> np.ndarray:
    """Sinusoidal stripes running at ``theta_deg`` on screen (0 = horizontal, + = counter-clockwise)."""
    r, c = np.mgrid[0:size, 0:size].astype(np.float64)
    t = np.radians(theta_deg)
    # stripe direction (cos t, sin t) in screen axes x = col, y = -row; phase varies along the normal
    return 0.5 + 0.5 * np.sin(2 * np.pi * (-np.sin(t) * c - np.cos(t) * r) / period)


def angle_diff(a: float, b: float) -> float:
    """Smallest difference between two orientations (180-degree periodic)."""
    d = (a - b) % 180.0
    return min(d, 180.0 - d)


@pytest.mark.parametrize("theta", [0.0, 17.0, 30.0, 45.0, 63.0, 90.0, -20.0, -45.0, -71.0])
def test_grating_gives_coherency_one_at_its_angle(theta: float) -> None:
    res = structure_tensor_orientation(grating(theta))
    assert res.coherency > 0.99
    assert res.local_coherency > 0.99
    assert angle_diff(res.orientation_deg, theta) <= 1.0
    assert -90.0 < res.orientation_deg <= 90.0
    # the histogram peaks at the same angle (1-degree bins)
    peak = -90.0 + np.argmax(res.histogram) + 0.5
    assert angle_diff(peak, theta) <= 1.5
    assert res.histogram.sum() == pytest.approx(1.0)


def test_vertical_and_horizontal_by_hand() -> None:
    """Stripes along rows (constant per row) are horizontal = 0; constant per column = vertical = 90."""
    rows = np.repeat(np.sin(np.arange(64) / 2.0)[:, None], 64, axis=1)
    assert structure_tensor_orientation(rows).orientation_deg == pytest.approx(0.0, abs=1e-6)
    assert structure_tensor_orientation(rows.T).orientation_deg == pytest.approx(90.0, abs=1e-6)


def test_isotropic_noise_has_coherency_near_zero() -> None:
    rng = np.random.default_rng(1234)
    res = structure_tensor_orientation(rng.random((256, 256)))
    assert res.coherency < 0.05
    # local windows of noise are only weakly oriented, never coherent
    assert res.local_coherency < 0.4
    # no preferred orientation: the histogram is roughly flat
    assert res.histogram.max() < 3.0 / res.histogram.size


def test_two_crossed_gratings_are_locally_coherent_but_globally_not() -> None:
    """Left half horizontal, right half vertical: local order high, global order low."""
    img = np.hstack([grating(0.0, size=128)[:, :64], grating(90.0, size=128)[:, 64:]])
    res = structure_tensor_orientation(img)
    assert res.local_coherency > 0.8
    assert res.coherency < 0.2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_dtypes_give_the_same_answer(dtype: type) -> None:
    g = grating(30.0, size=96)
    if np.issubdtype(dtype, np.integer):
        img = np.round(g * np.iinfo(dtype).max).astype(dtype)
    else:
        img = g.astype(dtype)
    res = structure_tensor_orientation(img)
    assert res.coherency > 0.99
    assert angle_diff(res.orientation_deg, 30.0) <= 1.0
    cmap = coherency_map(img)
    assert cmap.shape == img.shape
    assert cmap.dtype == (np.float32 if dtype is np.float32 else np.float64)
    assert 0.0 <= cmap.min() and cmap.max() <= 1.0


def test_flat_image_is_zero_not_nan() -> None:
    res = structure_tensor_orientation(np.full((40, 40), 7, dtype=np.uint8))
    assert res.coherency == 0.0 and res.energy == 0.0 and res.local_coherency == 0.0
    assert not np.any(np.isnan(res.histogram))
    assert not np.any(np.isnan(coherency_map(np.zeros((10, 10)))))


def test_orientation_map_matches_global_on_a_grating() -> None:
    omap = orientation_map(grating(-45.0, size=64))
    inner = omap[10:-10, 10:-10]
    assert np.all([angle_diff(v, -45.0) < 1.0 for v in inner.ravel()[::97]])


@pytest.mark.parametrize(
    ("img", "message"),
    [
        (np.zeros((8, 8, 3)), "2-D grayscale"),
        (np.zeros(10), "2-D grayscale"),
        (np.zeros((2, 40)), "at least 3x3"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.zeros((8, 8), dtype=bool), "numeric"),
    ],
)
def test_bad_input_says_what_is_wrong(img: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        structure_tensor_orientation(img)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="sigma must be > 0"):
        coherency_map(np.zeros((8, 8)), sigma=0)
    with pytest.raises(ValueError, match="bins"):
        structure_tensor_orientation(np.zeros((8, 8)), bins=0)


def test_spearman_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: ranks (1.5, 1.5, 3) vs (1, 2, 3) -> rho = 0.866...
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(np.sqrt(3) / 2)


# --------------------------------------------------------------------------- synthetic nanowires


@pytest.fixture(scope="module")
def alignment_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 nanowire images (192 px) whose true order parameter spans 0..1, with truth.csv."""
    from semcat.synth import write_alignment_set

    root = tmp_path_factory.mktemp("alignment_set")
    write_alignment_set(root, n=100, size=192, seed=0)
    return root


def write_extremes(root: Path, n: int = 16, size: int = 192) -> tuple[Path, Path]:
    """``n`` perfectly aligned and ``n`` random nanowire images (other seeds than the test set)."""
    import tifffile

    from semcat.synth import generate_nanowires

    dirs = (root / "aligned", root / "not_aligned")
    for order, folder in zip((1.0, 0.0), dirs):
        folder.mkdir(parents=True)
        for i in range(n):
            img, _ = generate_nanowires(order, np.random.default_rng([7, int(order), i]), size)
            tifffile.imwrite(folder / f"w{i:02d}.tif", img)
    return dirs


def test_coherency_tracks_the_true_order_parameter(alignment_set: Path) -> None:
    from semcat.alignment import evaluate_alignment

    ev = evaluate_alignment(alignment_set)
    assert len(ev.scores) == 100 and not any(s.error for s in ev.scores)
    assert min(ev.truth) < 0.15 and max(ev.truth) > 0.95  # the set spans the full range
    assert ev.rho_coherency >= 0.9
    assert np.isnan(ev.rho_learned)  # no model given


def test_dominant_orientation_matches_the_wires(alignment_set: Path) -> None:
    import csv

    from semcat.images import read_image

    with open(alignment_set / "truth.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if float(r["order"]) > 0.8]
    assert len(rows) >= 10
    errors = []
    for r in rows:
        img, _ = read_image(alignment_set / r["file"])
        errors.append(angle_diff(structure_tensor_orientation(img).orientation_deg, float(r["angle_deg"])))
    assert np.mean(errors) < 4.0
    assert max(errors) < 10.0


@pytest.mark.slow
def test_learned_score_trained_on_extremes_tracks_order(alignment_set: Path, tmp_path: Path) -> None:
    """The paper's experiment: train on the two extremes only, score the whole range."""
    from semcat.alignment import (
        ALIGNMENT_CLASSES,
        evaluate_alignment,
        plot_evaluation,
        train_alignment_model,
    )
    from semcat.model import load_model

    aligned, random_ = write_extremes(tmp_path)
    model, errors = train_alignment_model([aligned], [random_])
    assert errors == []
    assert model.classes == list(ALIGNMENT_CLASSES)
    model.save(tmp_path / "align.semcat")
    model = load_model(tmp_path / "align.semcat")
    ev = evaluate_alignment(alignment_set, model)
    assert ev.rho_coherency >= 0.9
    assert ev.rho_learned >= 0.8
    scores = [s.p_aligned for s in ev.scores]
    assert all(0.0 <= p <= 1.0 for p in scores)
    out = plot_evaluation(ev, tmp_path / "eval.png")
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
