"""The semcat home, catalogue URL and thread settings come from the environment, with clear errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

from semcat.config import compute_threads, default_db_url, semcat_home


def test_home_and_db_follow_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SEMCAT_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("SEMCAT_DB", raising=False)
    assert semcat_home() == tmp_path / "h" and semcat_home().is_dir()
    assert default_db_url() == f"sqlite:///{tmp_path / 'h' / 'catalog.db'}"
    monkeypatch.setenv("SEMCAT_DB", "postgresql://u@h/db")
    assert default_db_url() == "postgresql://u@h/db"


def test_compute_threads(monkeypatch) -> None:
    monkeypatch.delenv("SEMCAT_THREADS", raising=False)
    assert compute_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("SEMCAT_THREADS", "1")
    assert compute_threads() == 1
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("SEMCAT_THREADS", bad)
        with pytest.raises(ValueError, match="SEMCAT_THREADS must be a positive integer"):
            compute_threads()


def test_runtime_cache_is_keyed_by_threads(monkeypatch) -> None:
    """A process that changes SEMCAT_THREADS (a benchmark, a Spark task) gets a runtime with that many."""
    import torch

    from semcat.backbones import get_backbone
    from semcat.runtime import load_runtime

    spec = get_backbone("efficientnet_lite0")
    batch = np.zeros((1, 3, 224, 224), np.float32)
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SEMCAT_THREADS", "1")
        one = load_runtime(spec, "torch")
        one(batch)
        assert one.threads == 1 and torch.get_num_threads() == 1
        assert load_runtime(spec, "torch") is one
        monkeypatch.setenv("SEMCAT_THREADS", "2")
        two = load_runtime(spec, "torch")
        two(batch)
        assert two is not one and two.threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_openvino_pins_threads_only_when_it_owns_every_core() -> None:
    """Two 1-thread processes (Spark tasks on local[2]) would both be pinned to core 0 and
    share it: measured, two such processes ran at half speed each until pinning was turned off."""
    from semcat.backbones import get_backbone
    from semcat.runtime import OpenVINORuntime

    spec = get_backbone("efficientnet_lite0")
    cores = os.cpu_count() or 1
    one = OpenVINORuntime(spec, threads=1)
    assert one.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert one.compiled.get_property("ENABLE_CPU_PINNING") is (cores == 1)
    every = OpenVINORuntime(spec, threads=cores)
    assert every.compiled.get_property("ENABLE_CPU_PINNING") is True
