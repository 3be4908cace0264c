"""Dataset scanning and hash splits: counts, stability, duplicates, groups, bad files, warnings."""
from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from semcat import CATEGORIES
from semcat.dataset import SPLITS, assign_split, scan_dataset
from semcat.synth import write_dataset

SAMPLE_RE = r"^([^_]+_[^_]+)_"


def test_scan_counts_every_class(small_dataset: Path) -> None:
    ds = scan_dataset(small_dataset)
    assert ds.classes == sorted(CATEGORIES) and not ds.errors
    counts = ds.counts()
    assert all(row["total"] == 12 and sum(row[s] for s in SPLITS) == 12 for row in counts.values())
    assert len(ds.split("train")) + len(ds.split("val")) + len(ds.split("test")) == 120
    assert all(len(s.sha256) == 64 and s.group is None and s.subcategory is None for s in ds.samples)
    with pytest.raises(ValueError, match="split must be one of"):
        ds.split("validation")


def test_assign_split_follows_fractions_and_depends_on_the_key_only() -> None:
    keys = [f"{i:x}" for i in range(20000)]
    splits = [assign_split(k, (0.7, 0.2, 0.1)) for k in keys]
    share = {s: splits.count(s) / len(keys) for s in SPLITS}
    assert abs(share["train"] - 0.7) < 0.015 and abs(share["val"] - 0.2) < 0.015
    assert splits == [assign_split(k, (0.7, 0.2, 0.1)) for k in keys]
    assert assign_split("x", (1, 0, 0)) == "train" and assign_split("x", (0, 0, 1)) == "test"
    for bad in [(0.8, 0.1), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1), ("a", 0, 1)]:
        with pytest.raises(ValueError, match="fractions must be three numbers"):
            assign_split("x", bad)


def test_adding_and_renaming_images_changes_no_existing_split(small_dataset_copy: Path) -> None:
    before = {s.sha256: s.split for s in scan_dataset(small_dataset_copy).samples}
    write_dataset(small_dataset_copy, per_class=20, size=160, seed=0, databar=True, categories=["Tips"])
    first = next(iter(sorted((small_dataset_copy / "Powder").iterdir())))
    first.rename(first.with_name("renamed_by_someone.tif"))
    after = scan_dataset(small_dataset_copy)
    assert len(after.samples) == 128
    assert all(before[s.sha256] == s.split for s in after.samples if s.sha256 in before)


def test_exact_duplicates_share_a_split_even_across_groups(small_dataset_copy: Path) -> None:
    src = sorted((small_dataset_copy / "Fibres").iterdir())
    for i, f in enumerate(src[:6]):  # copies under another sample name (another group)
        shutil.copy(f, f.with_name(f"other_dup{i}_{i:03d}.tif"))
    for group_by in (None, SAMPLE_RE):
        ds = scan_dataset(small_dataset_copy, group_by=group_by)
        by_hash = defaultdict(set)
        for s in ds.samples:
            by_hash[s.sha256].add(s.split)
        assert all(len(v) == 1 for v in by_hash.values())
        assert any("exact duplicates" in w for w in ds.warnings)


def test_group_by_regex_keeps_a_sample_in_one_split(small_dataset: Path) -> None:
    ds = scan_dataset(small_dataset, group_by=SAMPLE_RE)
    splits_of = defaultdict(set)
    for s in ds.samples:
        assert s.group is not None and s.path.name.startswith(s.group + "_")
        splits_of[s.group].add(s.split)
    assert all(len(v) == 1 for v in splits_of.values())
    assert 20 <= len(splits_of) <= 60
    assert all(row["groups"] >= 2 for row in ds.counts().values())


def test_a_group_keeps_its_split_when_its_files_bytes_change(small_dataset_copy: Path) -> None:
    """The split follows the group's name: editing a file's metadata (new bytes) moves nothing."""
    before = scan_dataset(small_dataset_copy, group_by=SAMPLE_RE)
    assert all(s.split == assign_split(s.group, before.fractions) for s in before.samples)
    for f in sorted((small_dataset_copy / "Fibres").iterdir())[:8]:
        with open(f, "ab") as fh:  # trailing bytes: a TIFF reader ignores them, the content hash changes
            fh.write(b"edited")
    after = scan_dataset(small_dataset_copy, group_by=SAMPLE_RE)
    assert {s.sha256 for s in after.samples} != {s.sha256 for s in before.samples}
    assert {s.path: s.split for s in after.samples} == {s.path: s.split for s in before.samples}


def test_group_by_folder_and_nested_subcategories(tmp_path: Path) -> None:
    for sample in ("waferA", "waferB", "waferC/day2"):
        write_dataset(tmp_path / "tmp" / sample, per_class=3, size=48, seed=len(sample), categories=["Particles"])
        shutil.copytree(tmp_path / "tmp" / sample / "Particles", tmp_path / "data" / "Particles" / sample)
    loose = tmp_path / "data" / "Particles" / "loose.tif"
    shutil.copy(next((tmp_path / "data" / "Particles" / "waferA").iterdir()), loose)
    ds = scan_dataset(tmp_path / "data", group_by="folder")
    assert {s.subcategory for s in ds.samples} == {"waferA", "waferB", "waferC/day2", None}
    splits_of = defaultdict(set)
    for s in ds.samples:
        splits_of[s.group].add(s.split)
    assert all(len(v) == 1 for v in splits_of.values())
    loose_sample = next(s for s in ds.samples if s.path == loose)
    assert loose_sample.group is None  # but it is a duplicate of a waferA file, so it follows waferA
    assert loose_sample.split == next(iter(splits_of["waferA"]))
    assert any("directly in their class folder" in w for w in ds.warnings)


def test_group_warnings_missing_and_too_few_groups(small_dataset: Path) -> None:
    ds = scan_dataset(small_dataset, group_by=r"^(nomatch)_")
    assert any("120 of 120 images match no group" in w for w in ds.warnings)
    ds = scan_dataset(small_dataset, group_by=r"^([^_]+)_")  # the user name alone: few groups
    counts = ds.counts()
    few = [c for c, row in counts.items() if row["groups"] < 3]
    assert all(any(f"class {c!r} has only" in w for w in ds.warnings) for c in few)


def test_lopsided_split_is_warned(tmp_path: Path) -> None:
    write_dataset(tmp_path, per_class=12, size=48, categories=["Tips"])
    ds = scan_dataset(tmp_path, group_by=r"^([a-z]+)_")  # everything in very few groups
    row = ds.counts()["Tips"]
    lopsided = max(abs(row[s] - f * 12) - 3 * np.sqrt(12 * f * (1 - f)) - 1 for s, f in zip(SPLITS, ds.fractions)) > 0
    assert lopsided == any("lopsided" in w for w in ds.warnings)
    assert not any("lopsided" in w for w in scan_dataset(tmp_path, fractions=(1, 0, 0)).warnings)


def test_bad_files_are_listed_with_reasons_and_the_rest_goes_on(small_dataset_copy: Path) -> None:
    cls = small_dataset_copy / "Particles"
    good = sorted(cls.iterdir())[0]
    (cls / "empty.tif").write_bytes(b"")
    (cls / "notes.tif").write_text("this is not an image")
    (cls / "truncated.tif").write_bytes(good.read_bytes()[:300])
    (cls / ".hidden.tif").write_text("ignored")
    (cls / "readme.txt").write_text("not an image extension: ignored")
    (small_dataset_copy / "stray.png").write_bytes(good.read_bytes())
    (small_dataset_copy / ".thumbs").mkdir()
    quick = scan_dataset(small_dataset_copy)
    assert dict(quick.errors)[str(cls / "empty.tif")] == "empty file (0 bytes)"
    assert "not inside a category folder" in dict(quick.errors)[str(small_dataset_copy / "stray.png")]
    ds = scan_dataset(small_dataset_copy, check_images=True)
    problems = dict(ds.errors)
    assert set(problems) == {str(cls / n) for n in ("empty.tif", "notes.tif", "truncated.tif")} | {
        str(small_dataset_copy / "stray.png")}
    assert "not an image" in problems[str(cls / "notes.tif")]
    assert len(ds.samples) == 120 and ".thumbs" not in ds.classes


def test_unreadable_file_is_listed(small_dataset_copy: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    f = sorted((small_dataset_copy / "Tips").iterdir())[0]
    f.chmod(0)
    ds = scan_dataset(small_dataset_copy)
    assert "permission denied" in dict(ds.errors)[str(f)]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        scan_dataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="no category sub-folders"):
        scan_dataset(tmp_path)
    (tmp_path / "A").mkdir()
    with pytest.raises(ValueError, match="one capture group"):
        scan_dataset(tmp_path, group_by=r"^\w+_")
    with pytest.raises(ValueError, match="regular expression"):
        scan_dataset(tmp_path, group_by=r"^([")


def test_to_dict_is_json_safe(small_dataset: Path) -> None:
    import json

    d = json.loads(json.dumps(scan_dataset(small_dataset, group_by=SAMPLE_RE).to_dict()))
    assert d["total"]["total"] == 120 and d["group_by"] == SAMPLE_RE
    assert set(d["classes"]) == set(CATEGORIES) and isinstance(d["classes"]["Tips"]["train"], int)


def test_a_rescan_reads_perceptual_hashes_from_the_cache_and_splits_alike(
        small_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import semcat.duplicates

    monkeypatch.setenv("SEMCAT_HOME", str(tmp_path / "home"))
    first = scan_dataset(small_dataset)
    assert (tmp_path / "home" / "phash.sqlite").is_file()

    def no_decode(*_a, **_k):
        raise AssertionError("a cached image was decoded again")

    monkeypatch.setattr(semcat.duplicates, "phash_bytes", no_decode)
    again = scan_dataset(small_dataset)
    assert [(s.sha256, s.split) for s in again.samples] == [(s.sha256, s.split) for s in first.samples]
    assert again.near_links == first.near_links and again.near_groups == first.near_groups
