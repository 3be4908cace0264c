"""Features are identical before and after a refactor of the feature path (issue 19).

Set ``SEMCAT_PARITY_SRC`` to the ``src`` folder of another semcat checkout (e.g. ``../main/src``):
the same demo images then go through that tree's feature extraction and this one's, for the
default spec, a tiles5 view without the data-bar crop and an ``a+b`` ensemble, and every vector
must match (cosine 1.0, same cache keys). Without the variable the test is skipped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BASE = os.environ.get("SEMCAT_PARITY_SRC")
SPECS = [("efficientnet_lite0", "center", True), ("efficientnet_lite0", "tiles5", False),
         ("efficientnet_lite0+efficientnet_lite1", "center", True)]

# Runs in either tree: the old API (extract_backbone_features) where it exists, else FeatureSpec.
_SNIPPET = """
import json, sys
import numpy as np
from semcat.features import feature_key
from semcat._io import iter_image_files
backbone, view, crop, folder, out = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4], sys.argv[5]
paths = [str(p) for p in iter_image_files([folder])]
try:
    from semcat.model import extract_backbone_features
    ok, _, X, errors, _ = extract_backbone_features(paths, backbone, view=view, crop_databar=crop, store=None)
except ImportError:
    from semcat.featurespec import FeatureSpec
    res = FeatureSpec.resolve(backbone, view=view, crop_databar=crop).extract(paths, store=None)
    ok, X, errors = res.paths, res.features, res.errors
np.save(out, X)
keys = [feature_key(b, crop_databar=crop, view=view) for b in backbone.split("+")]
print(json.dumps({"paths": ok, "errors": errors, "keys": keys}))
"""


def _extract(src: str, spec: tuple[str, str, bool], folder: Path, out: Path) -> tuple[dict, np.ndarray]:
    env = {**os.environ, "PYTHONPATH": src}
    backbone, view, crop = spec
    done = subprocess.run([sys.executable, "-c", _SNIPPET, backbone, view, "1" if crop else "0", str(folder), str(out)],
                          env=env, capture_output=True, text=True, timeout=900, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(out)


@pytest.mark.slow
@pytest.mark.skipif(not BASE, reason="set SEMCAT_PARITY_SRC to another checkout's src folder to compare features")
@pytest.mark.parametrize("spec", SPECS, ids=["+".join(map(str, s)) for s in SPECS])
def test_features_equal_another_tree(spec: tuple[str, str, bool], tmp_path_factory: pytest.TempPathFactory) -> None:
    from semcat.synth import write_dataset

    folder = tmp_path_factory.getbasetemp() / "parity-images"
    if not folder.exists():
        write_dataset(folder, per_class=1, size=256, seed=0, databar=True)  # the demo's generator: 10 images
    here = str(Path(__file__).resolve().parents[1] / "src")
    tmp = tmp_path_factory.mktemp("parity")
    before, X0 = _extract(str(Path(BASE).resolve()), spec, folder, tmp / "before.npy")
    after, X1 = _extract(here, spec, folder, tmp / "after.npy")
    assert before == after and len(after["paths"]) == 10 and not after["errors"]
    np.testing.assert_array_equal(X0, X1)  # bit for bit, so cosine 1.0
    X0, X1 = X0.astype(np.float64), X1.astype(np.float64)
    cosine = np.sum(X0 * X1, axis=1) / (np.linalg.norm(X0, axis=1) * np.linalg.norm(X1, axis=1))
    assert cosine.min() == pytest.approx(1.0, abs=1e-12)
