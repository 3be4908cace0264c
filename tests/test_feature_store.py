"""FeatureStore: atomic shard appends, sharing between instances, corruption and foreign files."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from semcat.errors import CacheError
from semcat.features import FeatureStore

KEY = "testnet-center-0123456789abcdef"
OTHER = "testnet-full-fedcba9876543210"


def _hashes(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def _feats(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _shards(root: Path, key: str = KEY) -> list[Path]:
    return sorted((root / key).glob("*.fshard"))


def test_put_get_roundtrip_and_sharing_between_instances(tmp_path: Path) -> None:
    a = FeatureStore(tmp_path)
    hs, fs = _hashes(5), _feats(5)
    a.put(KEY, hs, fs, info={"signature": "testnet"})
    b = FeatureStore(tmp_path)  # another process would see the same files
    got = b.get(KEY, [*hs, "0" * 64])
    assert set(got) == set(hs)
    for h, f in zip(hs, fs):
        np.testing.assert_array_equal(got[h], f)
    a.put(KEY, _hashes(3, "x"), _feats(3, seed=1))
    assert b.count(KEY) == 8  # new shards are picked up
    assert b.contains(KEY, hs[:2] + ["f" * 64]) == set(hs[:2])
    assert b.get(OTHER, hs) == {}
    assert b.describe(KEY)["signature"] == "testnet"
    assert b.keys() == [KEY]


def test_compaction_merges_and_deduplicates(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    hs, fs = _hashes(9), _feats(9)
    for i in range(0, 9, 3):
        store.put(KEY, hs[i: i + 3], fs[i: i + 3])
    store.put(KEY, hs[:2], fs[:2])  # duplicates (two processes computed the same images)
    assert len(_shards(tmp_path)) == 4
    assert store.compact(KEY, min_shards=10) == 0
    assert store.compact(KEY) == 4
    assert len(_shards(tmp_path)) == 1
    fresh = FeatureStore(tmp_path)
    assert fresh.count(KEY) == 9
    np.testing.assert_array_equal(np.stack([fresh.get(KEY, hs)[h] for h in hs]), fs)


def test_corrupted_shard_raises_cache_error_naming_file_and_fix(tmp_path: Path) -> None:
    FeatureStore(tmp_path).put(KEY, _hashes(4), _feats(4))
    shard = _shards(tmp_path)[0]
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0xFF  # one flipped bit in a feature value
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="checksum") as e:
        FeatureStore(tmp_path).get(KEY, _hashes(4))
    assert str(shard) in str(e.value) and "--rebuild" in str(e.value)


def test_truncated_and_garbage_shards_raise(tmp_path: Path) -> None:
    FeatureStore(tmp_path).put(KEY, _hashes(4), _feats(4))
    shard = _shards(tmp_path)[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CacheError, match="truncated"):
        FeatureStore(tmp_path).count(KEY)
    shard.write_bytes(b"PK\x03\x04 definitely not a shard")
    with pytest.raises(CacheError, match="bad magic"):
        FeatureStore(tmp_path).count(KEY)


def test_foreign_shard_raises(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    store.put(OTHER, _hashes(2), _feats(2))
    (tmp_path / KEY).mkdir()
    shutil.copy(_shards(tmp_path, OTHER)[0], tmp_path / KEY / "copied.fshard")
    with pytest.raises(CacheError, match="foreign"):
        FeatureStore(tmp_path).get(KEY, _hashes(2))


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    store.put(KEY, _hashes(2), _feats(2, dim=16))
    with pytest.raises(CacheError, match="16-wide"):
        store.put(KEY, _hashes(2, "y"), _feats(2, dim=8))
    with pytest.raises(ValueError, match="SHA-256"):
        store.put(KEY, ["abc"], _feats(1))
    with pytest.raises(ValueError, match="shape"):
        store.put(KEY, _hashes(3), _feats(2))
    store.clear(KEY)
    assert store.count(KEY) == 0
