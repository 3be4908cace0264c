"""The default backbone without torch: weights read by semcat, graph built in OpenVINO, checked here.

The lean install (`pip install semcat`) has no torch, so these tests are where the torch-free
graph is compared with the timm model it replaces, and where the default pipeline is run with
torch, timm and torchvision made unimportable.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semcat.backbones import WeightsError, build_model, embedded_weights_path, get_backbone
from semcat.lite_graph import build_lite_model, read_legacy_state_dict

torch = pytest.importorskip("torch")  # the reference; the torch extra is part of the test install

# Runs semcat's CLI with torch & co. hidden: find_spec gives None and importing them fails, as in a
# venv where they were never installed (distribution metadata stays visible, which is harmless).
HIDE_TORCH = """
import sys
BLOCKED = ("torch", "timm", "torchvision")
class Hide:
    def __init__(self, inner): self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        f = getattr(self.inner, "find_spec", None)
        return f(name, path, target) if f else None
    def __getattr__(self, attr): return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
from semcat.cli import app
try:
    app(sys.argv[1:])
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, f"imported without need: {loaded}"
"""


@pytest.mark.parametrize("level", [0, 1])
def test_lite_graph_matches_the_timm_model(level: int) -> None:
    spec = get_backbone(f"efficientnet_lite{level}")
    path = embedded_weights_path(spec.weights)
    state = read_legacy_state_dict(path)
    ref_state = torch.load(path, map_location="cpu", weights_only=True)
    assert list(state) == list(ref_state)
    assert all(np.array_equal(state[k], ref_state[k].numpy()) for k in state)

    import openvino as ov

    compiled = ov.Core().compile_model(build_lite_model(state, spec.input_size), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(level)
    x = rng.uniform(-1, 1, (3, 3, spec.input_size, spec.input_size)).astype(np.float32)
    got = compiled(x)[0]
    with torch.inference_mode():
        ref = build_model(spec)(torch.from_numpy(x)).numpy()
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert got.shape == (3, 1280)
    assert cos.min() > 0.99999, cos
    assert np.abs(got - ref).max() < 1e-3


class _Boom:
    def __reduce__(self):  # what a hostile weights file would carry
        return (os.system, ("echo pwned",))


def test_a_weights_file_cannot_run_code(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}, {"w": _Boom()}, []):
            pickle.dump(obj, f)
    with pytest.raises(WeightsError, match="refusing posix.system|refusing os.system"):
        read_legacy_state_dict(bad)
    path = embedded_weights_path(get_backbone("efficientnet_lite0").weights)
    data = Path(path).read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])  # storages announced, bytes cut off
    with pytest.raises(WeightsError, match="cut.pth"):
        read_legacy_state_dict(tmp_path / "cut.pth")
    (tmp_path / "short.pth").write_bytes(b"\x80\x02")
    with pytest.raises(WeightsError, match="short.pth"):
        read_legacy_state_dict(tmp_path / "short.pth")


@pytest.mark.slow
def test_default_pipeline_runs_without_torch(small_dataset: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SEMCAT_HOME": str(tmp_path / "home")}  # fresh: the IR is built here, without torch
    model, out = tmp_path / "model.semcat", tmp_path / "labels.tsv"

    def semcat(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", HIDE_TORCH, *args], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    semcat("train", str(small_dataset), "-o", str(model), "--split", "val")
    semcat("calibrate", str(model), str(small_dataset))
    semcat("classify", str(model), str(small_dataset / "Fibres"), "-o", str(out))
    rows = out.read_text().splitlines()
    assert len(rows) >= 12 and sum("Fibres" in r for r in rows) >= 9
    check = next((tmp_path / "home" / "openvino").glob("efficientnet_lite0-*.json")).read_text()
    assert '"builder": "semcat.lite_graph"' in check and '"cosine": null' in check
