"""Issue 20: fine-tuning the backbone's last blocks with SEM augmentations (semcat.finetune)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from semcat.backbones import get_backbone  # noqa: E402
from semcat.crossval import METHODS, fit_finetuned, leave_one_group_out  # noqa: E402
from semcat.finetune import (  # noqa: E402
    FinetuneConfig,
    file_activations,
    finetune_tail,
    sem_augment,
    split_backbone,
)
from semcat.synth.instruments import write_instrument_set  # noqa: E402

pytestmark = pytest.mark.slow  # ~60 CPU seconds: the embedded network's prefix through OpenVINO, a few epochs

SPEC = get_backbone("efficientnet_lite0")
CATS = ["Particles", "Nanowires"]
TINY = FinetuneConfig(blocks=1, seconds=600, views=1, max_epochs=2, batch=4)


@pytest.fixture(scope="module")
def acts(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """2 instruments x 2 categories x 3 images of 96 px, one clean and one augmented view each."""
    root = tmp_path_factory.mktemp("ft")
    write_instrument_set(root, instruments=2, per_class=3, size=96, seed=3, categories=CATS)
    paths = sorted(str(p) for p in root.rglob("*.tif"))
    bad = root / "broken.tif"
    bad.write_bytes(b"II*\x00 not a tiff")
    X, errors = file_activations([*paths[:6], str(bad), *paths[6:]], SPEC, views=1, seed=0)
    assert [p for p, _ in errors] == [str(bad)] and "broken.tif" not in errors[0][1].split(":")[0]
    y = np.array([Path(p).parts[-3] for p in paths], dtype=object)
    groups = np.array([Path(p).parts[-2] for p in paths], dtype=object)
    return X, y, groups, CATS


def test_fixed_views_follow_the_clean_one(acts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``fixed``: the scale-mixed head's views (today's crop, the scaled crop's mirror image) sit
    between the clean view and the random ones; the scaled clean view differs from today's crop."""
    X = acts[0]
    write_instrument_set(tmp_path, instruments=2, per_class=3, size=96, seed=3, categories=CATS)
    paths = sorted(str(p) for p in tmp_path.rglob("*.tif"))[:2]
    F, _ = file_activations(paths, SPEC, views=1, seed=0, fixed=("noscale", "aug-flip"))
    assert F.shape == (2, 4, *X.shape[2:])
    assert np.allclose(F[:, 0], X[:2, 0], atol=1e-4) and np.allclose(F[:, 1], F[:, 0], atol=1e-4)  # unscaled: today's
    assert np.allclose(F[:, 3], X[:2, 1], atol=1e-4)  # the random view drawn as before
    assert not np.allclose(F[:, 2], F[:, 0], atol=1e-2)  # the mirror image is another input
    S, _ = file_activations(paths, SPEC, views=0, seed=0, scale_nm=50.0, fixed=("noscale",))
    assert np.allclose(S[:, 1], X[:2, 0], atol=1e-4) and not np.allclose(S[:, 0], S[:, 1], atol=1e-2)


def _params(module) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def test_activations_layout_and_views_drawn_from_the_seed(acts) -> None:  # type: ignore[no-untyped-def]
    X = acts[0]
    assert X.shape == (12, 2, 192, 7, 7) and X.dtype == np.float32 and np.isfinite(X).all()
    assert not np.allclose(X[:, 0], X[:, 1])  # the augmented view is another image than the clean one
    img = np.random.default_rng(0).random((120, 150)).astype(np.float32)
    a = sem_augment(img, 64, "bicubic", np.random.default_rng([4, 1]))
    b = sem_augment(img, 64, "bicubic", np.random.default_rng([4, 1]))
    assert a.shape == (64, 64) and 0 <= a.min() and a.max() <= 1 and np.array_equal(a, b)
    assert not np.array_equal(a, sem_augment(img, 64, "bicubic", np.random.default_rng([4, 2])))


@pytest.mark.parametrize("blocks", [1, 2])
def test_only_the_tail_trains_and_a_seed_repeats_the_run(acts, blocks: int) -> None:  # type: ignore[no-untyped-def]
    X, y, _, classes = acts
    prefix, tail = split_backbone(SPEC)
    before, prefix_before = _params(tail), _params(prefix)
    config = replace(TINY, blocks=blocks)
    r1 = finetune_tail(X, y, classes, tail, config, seed=1)
    r2 = finetune_tail(X, y, classes, tail, config, seed=1)
    assert all(np.array_equal(v, before[k]) for k, v in _params(tail).items())  # the caller's tail untouched
    assert r1.epochs == r2.epochs == 2 and r1.stopped == "max epochs"
    after = _params(r1.tail)
    assert all(np.array_equal(after[k], v) for k, v in _params(r2.tail).items())  # deterministic with a seed
    changed = {k for k, v in before.items() if not np.array_equal(after[k], v)}
    frozen_unit = {k for k in before if k.startswith("0.")} if blocks == 1 else set()
    stats = {k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert changed and not changed & (frozen_unit | stats)  # BN statistics and the frozen unit bit-identical
    assert any(k.startswith("0.") for k in changed) == (blocks == 2)
    assert any(k.startswith(f"{blocks}.") for k in changed)  # conv_head (after the trained units) trains
    assert all(np.array_equal(v, prefix_before[k]) for k, v in _params(prefix).items())


def test_the_cpu_budget_ends_the_run(acts) -> None:  # type: ignore[no-untyped-def]
    X, y, _, classes = acts
    r = finetune_tail(X, y, classes, split_backbone(SPEC)[1], replace(TINY, seconds=0.05, max_epochs=1000), seed=0)
    assert r.stopped == "budget" and r.epochs < 1000 and r.seconds >= 0.05


def test_fine_tuned_method_in_leave_one_group_out(acts) -> None:  # type: ignore[no-untyped-def]
    X, y, groups, classes = acts
    assert METHODS["semcat+ft"].finetune is not None and METHODS["semcat+ft2"].finetune.blocks == 2
    res = leave_one_group_out(X, y, groups, classes, lambda *a, **k: fit_finetuned(*a, **k, config=TINY, spec=SPEC))
    assert set(res["per_group"]) == {"inst0", "inst1"} and 0 <= res["pooled"]["accuracy"] <= 1
    assert res["pooled"]["n"] == 12
