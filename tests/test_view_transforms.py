"""Issue 20: the extra views of the centre crop (normalisations, test-time and training augmentations)."""
from __future__ import annotations

import numpy as np
import pytest

from semcat.features import DEFAULT_VIEW, VIEWS, _preprocess_gray, feature_key
from semcat.view_transforms import ALL, AUGMENTATIONS, DIHEDRAL, TRANSFORMS, augmented_view, parse_augment


def _frame(seed: int = 0) -> np.ndarray:
    """A dim, gamma-darkened, noisy gray frame (rows != cols) with some structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:180, 0:240]
    img = 0.5 + 0.4 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 0.05 * rng.normal(size=yy.shape)
    return (0.1 + 0.2 * np.clip(img, 0, 1) ** 1.8).astype(np.float32)


@pytest.mark.parametrize("view", list(TRANSFORMS))
def test_each_view_is_gray_in_range_with_its_own_cache_key(view: str) -> None:
    out = _preprocess_gray(_frame(), 64, "bicubic", view)
    assert out.dtype == np.float32 and out.shape[1:] == (64, 64)
    assert out.shape[0] == {"tta4": 4, "ms3": 3, "tta2": 2}.get(view, 1)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert view in VIEWS and feature_key("efficientnet_lite0", view=view) != feature_key("efficientnet_lite0", view="center")


def test_equalisations_spread_a_dark_frame_and_augmentations_change_it() -> None:
    center = _preprocess_gray(_frame(), 64, "bicubic", "center")[0]
    hist = _preprocess_gray(_frame(), 64, "bicubic", "histeq")[0]
    # global equalisation: intensities uniform over [0, 1] whatever the gamma (quartiles at 1/4, 1/2, 3/4)
    assert np.allclose(np.quantile(hist, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.01)
    assert abs(np.median(center) - 0.5) > 0.05  # the percentile stretch keeps the dark gamma
    clahe = _preprocess_gray(_frame(), 64, "bicubic", "clahe")[0]
    assert clahe.std() > 0.1 and not np.allclose(clahe, center, atol=0.05)
    for aug in AUGMENTATIONS:
        a = _preprocess_gray(_frame(), 64, "bicubic", aug)[0]
        assert not np.allclose(a, center), aug
    # noise is seeded by the image: the same image gives the same view (cacheable), another one not
    flat = _preprocess_gray(np.zeros((50, 70), np.float32), 64, "bicubic", "histeq")
    assert np.all(flat == 0.5)  # a blank frame (the real FEI test files) is not turned into a ramp
    n1, n2 = (_preprocess_gray(_frame(), 64, "bicubic", "aug-noise") for _ in range(2))
    assert np.array_equal(n1, n2)
    assert np.array_equal(_preprocess_gray(_frame(), 64, "bicubic", "aug-flip")[0], center[:, ::-1])


def test_rotation_tta_is_rotation_invariant() -> None:
    sq = _frame()[:160, :160]
    a = _preprocess_gray(sq, 64, "bicubic", "tta4")
    b = _preprocess_gray(np.rot90(sq).copy(), 64, "bicubic", "tta4")
    # the rotated image's views are the original's views in another order
    assert all(any(np.allclose(v, w, atol=1e-5) for w in a) for v in b)


def test_mirror_tta_is_mirror_invariant_at_half_the_views() -> None:
    sq = _frame()[:160, :160]
    a = _preprocess_gray(sq, 64, "bicubic", "tta2")
    b = _preprocess_gray(sq[:, ::-1].copy(), 64, "bicubic", "tta2")
    assert len(a) == 2 and np.allclose(a[0], _preprocess_gray(sq, 64, "bicubic", "center")[0])
    assert np.allclose(a[::-1], b, atol=1e-5)  # the mirrored image's views: the same two, swapped


def test_parse_augment() -> None:
    assert parse_augment("flip, noise") == ("aug-flip", "aug-noise")
    assert parse_augment("all") == ALL and parse_augment(None) == () and parse_augment("") == ()
    assert parse_augment("none") == () and set(ALL) < set(AUGMENTATIONS)  # "all" kept its six views
    assert parse_augment("noscale,dihedral,flip") == ("aug-noscale", *DIHEDRAL)  # repeats dropped
    with pytest.raises(ValueError, match="unknown augmentation 'sharpen'; known: flip, rot90"):
        parse_augment("flip,sharpen")
    # scale augmentations (with --scale) are named too, and are not part of "all"
    assert parse_augment("noscale,scalejitter") == ("aug-noscale", "aug-scalejitter")
    assert "aug-noscale" not in AUGMENTATIONS


def test_dihedral_views_are_the_crops_other_rotations_and_mirrors() -> None:
    """``--augment dihedral``: the 7 other rotations and mirror images of the crop, each once."""
    center = _preprocess_gray(_frame(), 64, "bicubic", "center")[0]
    views = [_preprocess_gray(_frame(), 64, "bicubic", v)[0] for v in DIHEDRAL]
    group = [np.rot90(center, k) for k in range(1, 4)] + [np.rot90(center[:, ::-1], k) for k in range(4)]
    assert all(sum(np.array_equal(v, g) for g in group) == 1 for v in views)  # each a distinct element
    assert len({v.tobytes() for v in views} | {center.tobytes()}) == 8
    # the views of a rotated, mirrored micrograph are the same 8 images: no orientation is preferred
    turned = np.ascontiguousarray(np.rot90(_frame()[:160, :160])[::-1])
    a = [_preprocess_gray(_frame()[:160, :160], 64, "bicubic", x)[0] for x in ("center", *DIHEDRAL)]
    b = [_preprocess_gray(turned, 64, "bicubic", x)[0] for x in ("center", *DIHEDRAL)]
    assert all(sum(np.allclose(v, w, atol=1e-5) for w in a) == 1 for v in b)
    assert np.allclose(_preprocess_gray(_frame(), 64, "bicubic", "aug-invert")[0], 1 - center)


def _scene(seed: int = 0) -> np.ndarray:
    """Bright discs on a dark ground (a micrograph's structure), 160 px."""
    yy, xx = np.mgrid[0:160, 0:160]
    img = np.zeros((160, 160), np.float32)
    for cy, cx in np.random.default_rng(seed).integers(15, 145, (12, 2)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = 1.0
    return 0.2 + 0.6 * img


def test_clean_view_removes_noise_and_uneven_background_but_keeps_structure() -> None:
    """Issue 20: the default view. The same scene under another microscope's noise and shading
    (a brightness ramp across the field) comes out closer to the clean scene than the centre crop
    does, and a real horizontal structure (a film's layers) is kept: no scan direction is assumed."""
    assert DEFAULT_VIEW == "clean"
    scene = _scene()
    rng = np.random.default_rng(1)
    ramp = np.linspace(-0.25, 0.25, 160, dtype=np.float32)[None, :]
    other = (scene + ramp + rng.normal(0, 0.15, scene.shape)).astype(np.float32)
    ref = _preprocess_gray(scene, 224, "bicubic", "clean")[0]
    gap = {v: np.abs(_preprocess_gray(other, 224, "bicubic", v)[0] - _preprocess_gray(scene, 224, "bicubic", v)[0]).mean()
           for v in ("center", "clean")}
    assert gap["clean"] < 0.75 * gap["center"], gap
    assert np.corrcoef(ref.ravel(), _preprocess_gray(scene, 224, "bicubic", "center")[0].ravel())[0, 1] > 0.9
    layers = np.repeat(np.where(np.arange(160) // 20 % 2 == 0, 0.3, 0.7)[:, None], 160, 1).astype(np.float32)
    rows = _preprocess_gray(layers, 224, "bicubic", "clean")[0].mean(1)
    assert rows.max() - rows.min() > 0.4  # the layers' contrast survives
    assert np.all(_preprocess_gray(np.full((50, 60), 0.3, np.float32), 224, "bicubic", "clean") == 0.5)


def test_augmented_views_of_a_clean_model_are_taken_of_the_clean_crop() -> None:
    clean = _preprocess_gray(_frame(), 64, "bicubic", "clean")[0]
    assert augmented_view("clean", "aug-flip") == "clean+aug-flip" and augmented_view("center", "aug-flip") == "aug-flip"
    assert np.array_equal(_preprocess_gray(_frame(), 64, "bicubic", "clean+aug-flip")[0], clean[:, ::-1])
    assert np.allclose(_preprocess_gray(_frame(), 64, "bicubic", "clean+aug-invert")[0], 1 - clean)
    with pytest.raises(ValueError, match="augmentations are views of center or clean"):
        augmented_view("tiles5", "aug-flip")
