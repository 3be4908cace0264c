"""Bad inputs: the malformed-file corpus through the reader, features, classify, ingest and the web.

Every bad file must give one clear error naming it, every good (valid but odd) file must be
processed, folder scans must skip special entries without hanging, and nothing may crash.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from reliability.conftest import assert_clean, run_cli
from reliability.corpus import NON_UTF8_DIR, Case
from semcat.errors import ImageReadError
from semcat.images import read_image


def _tag(case: Case) -> str:
    """The printable part of a case's file name, to find it in decoded (replaced) output."""
    name = case.path.name
    return name.split("\udcff")[0] if "\udcff" in name else name


def _named(case: Case, line: str) -> bool:
    """Does an ``error: PATH: problem`` line name this case's file?"""
    tag = _tag(case)
    return f"/{tag}:" in line if tag == case.path.name else f"/{tag}" in line


def _utf8(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.path.parent.name != NON_UTF8_DIR]


def _files(cases: list[Case], expect: str) -> list[Case]:
    return [c for c in cases if c.expect == expect]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def _check_named_once(cases: list[Case], stderr: str) -> list[str]:
    """Problems: bad files not named in exactly one error line, good/ignored files named at all."""
    lines = _error_lines(stderr)
    problems = []
    for c in cases:
        if c.path.is_dir() and not c.path.is_symlink():
            continue
        n = sum(_named(c, ln) for ln in lines)
        if c.expect == "bad" and n != 1:
            problems.append(f"{c.path.name!r} ({c.what}) named in {n} error lines")
        if c.expect != "bad" and n:
            problems.append(f"{c.path.name!r} ({c.what}) should not fail; got {n} error lines")
    return problems


def test_reader_on_corpus(corpus_dir, figures) -> None:
    _, cases = corpus_dir
    problems = []
    tried = [c for c in cases if c.expect != "ignored"]
    for c in tried:
        try:
            img, info = read_image(c.path)
        except ImageReadError as e:
            if c.expect == "good":
                problems.append(f"{c.what}: rejected ({e.problem})")
            elif c.path.name not in str(e) or not e.problem:
                problems.append(f"{c.what}: message does not name the file: {e}")
            continue
        if c.expect == "bad":
            problems.append(f"{c.what}: accepted")
            continue
        if img.ndim != 2 or img.dtype != np.float32 or not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            problems.append(f"{c.what}: bad array {img.dtype} {img.shape} [{img.min()}, {img.max()}]")
    figures.add("bad inputs: read_image", inputs=len(tried), failures=len(problems),
                notes=f"{len(_files(cases, 'bad'))} bad, {len(_files(cases, 'good'))} valid-but-odd")
    assert not problems, problems


def test_folder_scan_skips_special_entries(corpus_dir) -> None:
    from semcat._io import iter_image_files

    root, cases = corpus_dir
    found = {p.name for p in iter_image_files([root, root / NON_UTF8_DIR])}
    for c in cases:
        assert (c.path.name in found) == (c.expect != "ignored"), c.what


def test_explicit_fifo_and_loop_do_not_hang(corpus_dir) -> None:
    """Special files named on the command line get an error line instead of blocking on a read."""
    root, cases = corpus_dir
    special = [c for c in cases if c.what in ("FIFO named .tif", "symlink loop (points to itself)",
                                               "symlink out of the folder to an unreadable file (EIO even for root)")]
    proc = run_cli("inspect", *[c.path for c in special], timeout=60)
    assert_clean(proc)
    assert proc.returncode == 1
    for c in special:
        assert any(c.path.name in ln for ln in _error_lines(proc.stderr)), (c.what, proc.stderr)


def test_features_api_on_corpus(corpus_dir, figures) -> None:
    from semcat.features import extract_features

    root, cases = corpus_dir
    res = extract_features([root, root / NON_UTF8_DIR], "efficientnet_lite0", store="default",
                           progress=False, batch_size=16)
    ok = {Path(p).name for p in res.paths}
    failed = {Path(p).name: msg for p, msg in res.errors}
    problems = [c.what for c in _files(cases, "good") if c.path.name not in ok]
    problems += [c.what for c in _files(cases, "bad") if c.path.name not in failed or not failed[c.path.name]]
    problems += [f"non-finite features for {n}" for n, f in zip(ok, res.features) if not np.isfinite(f).all()]
    figures.add("bad inputs: extract_features (API)", inputs=len(ok) + len(failed), failures=len(problems),
                lost=sum(c.path.name not in ok for c in _files(cases, "good")))
    assert not problems, problems
    assert res.features.shape[0] == len(res.paths)


def test_features_cli_on_corpus(corpus_dir, figures, tmp_path) -> None:
    root, cases = corpus_dir
    proc = run_cli("features", root, root / NON_UTF8_DIR, "--out", tmp_path / "f.npz")
    assert_clean(proc)
    problems = _check_named_once(cases, proc.stderr)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    stored = {os.path.basename(p) for p in np.load(tmp_path / "f.npz", allow_pickle=False)["paths"]}
    lost = [c.what for c in _files(cases, "good") if c.path.name not in stored]
    figures.add("bad inputs: semcat features", inputs=summary["images"] + summary["failed"],
                failures=len(problems), lost=len(lost))
    assert not problems, problems
    assert not lost, lost
    assert summary["failed"] == len(_files(cases, "bad"))
    assert proc.returncode == 1 and "summary:" in proc.stderr


def test_classify_cli_on_corpus(corpus_dir, tiny_model, figures) -> None:
    root, cases = corpus_dir
    proc = run_cli("classify", tiny_model, root, root / NON_UTF8_DIR, "--json")
    assert_clean(proc)
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip()]
    by_name = {os.path.basename(r["path"]): r for r in rows}
    problems = _check_named_once(cases, proc.stderr)
    for c in _files(cases, "good"):
        r = by_name.get(c.path.name)
        if r is None or r.get("error") or not r.get("top"):
            problems.append(f"{c.what}: not classified ({r and r.get('error')})")
    figures.add("bad inputs: semcat classify", inputs=len(rows), failures=len(problems),
                lost=sum(c.path.name not in by_name for c in _files(cases, "good")))
    assert not problems, problems
    assert proc.returncode == 1
    assert "summary:" in proc.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ingest_cli_on_corpus(backend, corpus_dir, tiny_model, figures, tmp_path, request) -> None:
    from semcat.catalog import open_catalog

    root, cases = corpus_dir
    cases = _utf8(cases)  # non-UTF-8 names: see test_ingest_non_utf8_names
    url = f"sqlite:///{tmp_path / 'cat.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg")
    proc = run_cli("ingest", root, "--db", url, "--model", tiny_model)
    assert_clean(proc)
    problems = _check_named_once(cases, proc.stderr)
    with open_catalog(url) as cat:
        stored = {os.path.basename(p) for r in cat.search(limit=1000) for p in r.paths}
        classified = sum(1 for r in cat.search(limit=1000) if r.top)
        n = cat.count()
    good = _files(cases, "good")
    lost = [c.what for c in good if c.path.name not in stored]
    figures.add(f"bad inputs: semcat ingest ({backend})", inputs=len(good) + len(_files(cases, "bad")),
                failures=len(problems), lost=len(lost), notes=f"{n} images catalogued, {classified} classified")
    assert not problems, problems
    assert not lost, lost
    assert classified == n
    assert proc.returncode == 1 and "summary:" in proc.stderr
    again = run_cli("ingest", root, "--db", url, "--model", tiny_model)  # idempotent re-run
    assert_clean(again)
    with open_catalog(url) as cat:
        assert cat.count() == n


def test_ingest_non_utf8_names(corpus_dir, tmp_path, figures) -> None:
    """A name the database cannot store is one error line naming the file; the batch goes on."""
    from semcat.catalog import open_catalog

    root, cases = corpus_dir
    odd = [c for c in cases if c.path.parent.name == NON_UTF8_DIR]
    plain = next(c for c in cases if c.path.name == "plain.tif")
    with open_catalog(f"sqlite:///{tmp_path / 'cat.db'}") as cat:
        summary = cat.ingest([root / NON_UTF8_DIR, plain.path], progress=False)
        catalogued = cat.count()
    named = [p for p, _ in summary.errors]
    figures.add("bad inputs: non-UTF-8 names through ingest (API)", inputs=len(odd) + 1,
                failures=int(summary.seen != len(odd) + 1 or catalogued != 1),
                notes="refused with 'rename the file' (the database stores UTF-8 paths only)")
    assert summary.seen == len(odd) + 1 and summary.failed == len(odd)
    assert sorted(named) == sorted(str(c.path) for c in odd)
    assert catalogued == 1 and summary.new == 1


def test_web_upload_on_corpus(corpus_dir, tiny_model, figures, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from semcat.web.app import create_app
    from semcat.web.settings import Settings

    root, cases = corpus_dir
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'web.db'}", model_path=tiny_model,
                        storage_dir=tmp_path / "storage", local_user="rel")
    app = create_app(settings)
    problems, tried = [], 0
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        csrf = {"X-CSRF-Token": c.get("/api/whoami").json()["csrf_token"]}
        for case in cases:
            if case.expect == "ignored" or not os.access(case.path, os.R_OK):
                continue
            try:
                data = case.path.read_bytes()
            except OSError:
                continue  # unreadable here means the browser could not send it either
            tried += 1
            r = c.post("/api/upload", files={"files": (_tag(case), data)}, headers=csrf)
            if r.status_code != 200:
                problems.append(f"{case.what}: HTTP {r.status_code} {r.text[:200]}")
                continue
            res = r.json()["results"][0]
            if case.expect == "bad" and not res.get("error"):
                problems.append(f"{case.what}: upload accepted")
            if case.expect == "good":
                if res.get("error"):
                    problems.append(f"{case.what}: upload rejected ({res['error']})")
                    continue
                add = c.post(f"/api/upload/{res['sha256']}/add", json={"name": _tag(case)}, headers=csrf)
                thumb = c.get(f"/thumbs/{res['sha256']}.png")
                if add.status_code != 200 or thumb.status_code != 200:
                    problems.append(f"{case.what}: add {add.status_code}, thumbnail {thumb.status_code}")
        served = c.get("/api/images", params={"limit": 500}).json()["total"]
    figures.add("bad inputs: web upload + serve", inputs=tried, failures=len(problems),
                notes=f"{served} uploads catalogued and served as thumbnails")
    assert not problems, problems
