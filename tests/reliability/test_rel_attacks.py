"""Attacks on the command line, model files and ingest (issue 18): each test is the attack.

Markup and control characters in names and file bytes, a model file naming code to import,
tampered models, huge and NaN numbers, device files, a full disk and a read-only catalog (small
tmpfs mounts, skipped where mounting is not permitted), directory symlinks out of the archive,
and concurrent ingests whose summaries must add up.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile

from reliability.conftest import SEMCAT, assert_clean, run_cli
from semcat.synth import generate_image

HOSTILE_NAMES = {
    "markup": "[/]:x:[red].tif",  # in a folder named "[" so the path holds "[/]"
    "newline": "line\nerror: forged.tif",
    "escape": "x\x1b[31mred.tif",
    "bidi": "abc\u202egpj.tif",
}


def _tiff(path: Path, seed: int = 0, size: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, generate_image("Particles", np.random.default_rng(seed), size=size, databar=False))
    return path


def _hostile_folder(root: Path) -> dict[str, Path]:
    """One good image under a markup name, junk under control-character names, markup as bytes."""
    files = {"markup": _tiff(root / "[" / HOSTILE_NAMES["markup"][2:])}
    for key in ("newline", "escape", "bidi"):
        files[key] = root / HOSTILE_NAMES[key]
        files[key].write_bytes(b"junk [/] :x: [bold]")
    files["bytes"] = root / "bytes.tif"
    files["bytes"].write_bytes(b"[/][red]x :x: \x1b[2J\n")
    return files


def _no_forgery(stderr: str) -> list[str]:
    """Problems in the output: forged lines, interpreted emoji, raw escape or bidi characters."""
    problems = []
    if any(ln.startswith("error: forged") for ln in stderr.splitlines()):
        problems.append("a file name forged an error line")
    if "\u274c" in stderr:
        problems.append(":x: became an emoji")
    if "\x1b[31m" in stderr or "\x1b[2J" in stderr or "\u202e" in stderr:
        problems.append("a control or bidi character reached the terminal raw")
    return problems


@pytest.mark.parametrize("command", ["inspect", "classify", "features", "ingest"])
def test_markup_and_control_characters_are_printed_as_data(command, tiny_model, tmp_path, figures) -> None:
    root = tmp_path / "hostile"
    files = _hostile_folder(root)
    args = {"inspect": ["inspect", root], "classify": ["classify", tiny_model, root],
            "features": ["features", root, "--out", tmp_path / "f.npz"],
            "ingest": ["ingest", root, "--db", f"sqlite:///{tmp_path / 'cat.db'}"]}[command]
    proc = run_cli(*args, timeout=180)
    assert_clean(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    problems = _no_forgery(proc.stderr)
    for key, shown in (("newline", "line\\nerror: forged.tif"), ("escape", "x\\x1b[31mred.tif"),
                       ("bidi", "abc\\u202egpj.tif"), ("bytes", "bytes.tif")):
        if sum(shown in ln for ln in errors) != 1:
            problems.append(f"{key}: not named once in an error line")
    if "[/]" not in proc.stderr or ":x:" not in proc.stderr:
        problems.append("markup text was not printed as it is")
    figures.add(f"attack: markup and control characters in names and bytes (semcat {command})",
                inputs=len(files), failures=len(problems) + int("summary" not in proc.stderr),
                notes="[/], :x:, newline, ESC and U+202E in names; markup in file bytes; shown escaped")
    assert not problems, (problems, proc.stderr[-3000:])
    assert proc.returncode == 1 and "summary" in proc.stderr


def test_watch_survives_markup_names_and_restarts(tmp_path, figures) -> None:
    """The attack that crash-looped ``watch``: start it twice on a folder holding hostile names."""
    root = tmp_path / "watched"
    _hostile_folder(root)
    runs = []
    for _ in range(2):  # the second start meets the same files again
        proc = subprocess.Popen([*SEMCAT, "watch", str(root), "--db", f"sqlite:///{tmp_path / 'cat.db'}",
                                 "--settle", "0.2"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                errors="replace", env={**os.environ, "COLUMNS": "200"})
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(ln.startswith("ingested:") for ln in lines):
            assert proc.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.2)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        runs.append(("".join(lines), alive))
    failures = [err for err, alive in runs if not alive or "Traceback" in err or _no_forgery(err)
                or not any(ln.startswith("ingested:") for ln in err.splitlines())]
    figures.add("attack: markup and control characters in names (semcat watch, started twice)", inputs=2,
                failures=len(failures), notes="still watching after each initial ingest; errors shown escaped")
    assert not failures, failures[0][-3000:]


# --- model files ------------------------------------------------------------------------------

def _meta_and_tensors(path: Path) -> tuple[dict, dict]:
    from safetensors.numpy import load

    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(json.loads(data[8:8 + n])["__metadata__"]["semcat"]), load(data)


def _write_model(path: Path, meta: dict, tensors: dict, *, digest: bool = True) -> Path:
    """A model file with edited fields; ``digest=True`` re-signs it, so only the field checks can catch it."""
    from safetensors.numpy import save

    from semcat.model_check import content_digest

    meta = {k: v for k, v in meta.items() if k != "digest"}
    if digest:
        meta["digest"] = content_digest(meta, tensors)
    path.write_bytes(save(tensors, metadata={"semcat": json.dumps(meta)}))
    return path


def test_model_file_cannot_import_code(tiny_model, tmp_path, figures) -> None:
    """``weights: "embedded:<module>"`` naming a module in the current folder must not import it."""
    marker = tmp_path / "imported"
    (tmp_path / "evil_weights.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    meta, tensors = _meta_and_tensors(tiny_model)
    meta["backbones"][0]["weights"] = "embedded:evil-weights"
    bad = _write_model(tmp_path / "evil.semcat", meta, tensors)
    api = subprocess.run([sys.executable, "-c", "from semcat.model import load_model; load_model('evil.semcat')"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    cli = run_cli("classify", bad, tiny_model.parent, cwd=tmp_path, timeout=120)
    assert_clean(cli)
    failures = int(marker.exists()) + int("ModelFileError" not in api.stderr) + int(cli.returncode == 0)
    figures.add("attack: model file naming a module to import (API and semcat classify)", inputs=2,
                failures=failures, notes="refused: only registered weight packages, located without import")
    assert not marker.exists(), "the model file made semcat import code"
    assert "unknown embedded weights" in api.stderr and "unknown embedded weights" in cli.stderr


def _tampered(tiny_model: Path, tmp_path: Path) -> dict[str, Path]:
    meta, tensors = _meta_and_tensors(tiny_model)
    out = {}
    data = bytearray(tiny_model.read_bytes())
    data[-5] ^= 0x40  # one flipped bit in the last tensor's bytes
    out["flipped tensor byte"] = tmp_path / "flipped.semcat"
    out["flipped tensor byte"].write_bytes(bytes(data))
    edits = {
        "temperature 0": lambda m, t: m["calibration"].update(temperature=0),
        "temperature nan": lambda m, t: m["calibration"].update(temperature=float("nan")),
        "temperature 1e9": lambda m, t: m["calibration"].update(temperature=1e9),
        "t_auto 'high'": lambda m, t: m["calibration"].update(t_auto="high"),
        "bad view": lambda m, t: m.update(view="../../etc"),
        "duplicate classes": lambda m, t: m["classes"].__setitem__(1, m["classes"][0]),
        "NaN weight": lambda m, t: t["head.coef"].__setitem__((0, 0), np.nan),
        "zero scale": lambda m, t: t["head.scale"].__setitem__(0, 0.0),
        "crop_databar 'yes'": lambda m, t: m.update(crop_databar="yes"),
    }
    for i, (what, edit) in enumerate(edits.items()):
        m, t = json.loads(json.dumps(meta)), {k: v.copy() for k, v in tensors.items()}
        m["calibration"] = m.get("calibration") or {"temperature": 1.0, "t_auto": 0.8, "t_suggest": 0.35}
        edit(m, t)
        out[what] = _write_model(tmp_path / f"tampered{i}.semcat", m, t)
    m = json.loads(json.dumps(meta))
    m["format_version"] = 2
    out["edited without re-signing"] = _write_model(tmp_path / "unsigned.semcat", {**m, "view": "center"}, tensors,
                                                    digest=False)
    return out


def test_tampered_models_are_refused(tiny_model, tmp_path, figures) -> None:
    from semcat.errors import ModelFileError
    from semcat.model import load_model

    accepted = []
    for what, path in _tampered(tiny_model, tmp_path).items():
        try:
            load_model(path)
            accepted.append(what)
        except ModelFileError:
            pass
    cli = run_cli("classify", tmp_path / "tampered1.semcat", tiny_model.parent)  # temperature nan
    assert_clean(cli)
    figures.add("attack: tampered model files (load_model)", inputs=len(_tampered(tiny_model, tmp_path)),
                failures=len(accepted) + int(cli.returncode == 0),
                notes="flipped byte, temperature 0/nan/1e9, bad view/classes/threshold, NaN weight: all refused")
    assert not accepted, accepted
    assert cli.returncode != 0 and "temperature" in cli.stderr


def test_version1_model_still_loads_with_checks(tiny_model, tmp_path) -> None:
    """Files written before the digest (format 1) load when every field is valid, and only then."""
    from semcat.errors import ModelFileError
    from semcat.model import load_model

    meta, tensors = _meta_and_tensors(tiny_model)
    old = _write_model(tmp_path / "v1.semcat", {**meta, "format_version": 1}, tensors, digest=False)
    model = load_model(old)
    assert model.classes == load_model(tiny_model).classes and model.format_version == 1
    cal = {**(meta.get("calibration") or {"t_auto": 0.8, "t_suggest": 0.35}), "temperature": float("nan")}
    bad = _write_model(tmp_path / "v1nan.semcat", {**meta, "format_version": 1, "calibration": cal}, tensors,
                       digest=False)
    with pytest.raises(ModelFileError, match="temperature"):
        load_model(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_a_corrupt_model_at_start(tiny_model, tmp_path, figures) -> None:
    bad = _tampered(tiny_model, tmp_path)["flipped tensor byte"]
    proc = run_cli("serve", "--model", bad, "--db", f"sqlite:///{tmp_path / 'cat.db'}", "--port", str(_free_port()),
                   timeout=60)
    assert_clean(proc)
    figures.add("attack: semcat serve --model with a corrupt model", inputs=1,
                failures=int(proc.returncode != 1), notes="refuses to start, one error line, exit 1 (failed work)")
    assert proc.returncode == 1 and "content digest" in proc.stderr


# --- numbers, devices, symlinks ---------------------------------------------------------------

HUGE_ARGS = [
    ("search", "--limit", str(2**70)), ("search", "--min-score", "nan"), ("search", "--max-score", "inf"),
    ("search", "--mag-min", "-inf"), ("search", "--text", "a%_" * 20_000), ("similar", "x", "-k", str(10**30)),
    ("watch", ".", "--settle", "nan"), ("classify", "cat.db", ".", "--top-k", str(2**64)),
    ("ingest", ".", "--batch-size", str(2**63)),
]


def test_huge_and_nan_numbers_are_usage_errors(tmp_path, figures) -> None:
    (tmp_path / "cat.db").touch()
    bad = []
    for args in HUGE_ARGS:
        proc = run_cli(*args, cwd=tmp_path, timeout=60, env={"SEMCAT_DB": f"sqlite:///{tmp_path / 'cat.db'}"})
        assert_clean(proc)
        if proc.returncode != 2 or "Invalid value" not in proc.stderr:
            bad.append((args[:3], proc.returncode, proc.stderr[-300:]))
    figures.add("attack: huge, NaN and infinite numbers and a 60,000-character text (CLI)", inputs=len(HUGE_ARGS),
                failures=len(bad), notes="usage error naming the option, exit 2")
    assert not bad, bad


def test_device_files_are_refused_at_once(tiny_model, tmp_path, figures) -> None:
    """``/dev/zero`` and a ``.tif`` symlink to it, and a FIFO named ``.tif``, given on the command line."""
    (tmp_path / "zero.tif").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.tif")
    paths = ["/dev/zero", tmp_path / "zero.tif", tmp_path / "pipe.tif"]
    db = f"sqlite:///{tmp_path / 'cat.db'}"
    failures = []
    for cmd in (["ingest", *paths, "--db", db], ["inspect", *paths], ["classify", tiny_model, *paths]):
        t0 = time.monotonic()
        proc = run_cli(*cmd, timeout=120)
        assert_clean(proc)
        named = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:") and "regular file" in ln]
        if proc.returncode != 1 or len(named) != len(paths):
            failures.append((cmd[0], proc.returncode, proc.stderr[-500:]))
        failures += [(cmd[0], "slow", time.monotonic() - t0)] if time.monotonic() - t0 > 100 else []
    figures.add("attack: device files and FIFOs named on the command line (ingest, inspect, classify)",
                inputs=3 * len(paths), failures=len(failures), notes="refused from stat before reading a byte")
    assert not failures, failures


def test_directory_symlinks_do_not_leave_the_archive(tmp_path, figures) -> None:
    from semcat.catalog import open_catalog

    archive, outside = tmp_path / "archive", tmp_path / "outside"
    inside = [_tiff(archive / "a.tif", 1), _tiff(archive / "sub" / "b.tif", 2)]
    _tiff(outside / "secret.tif", 3)
    (archive / "loop").symlink_to("..")            # the attack: the parent tree
    (archive / "self").symlink_to(".")             # a loop
    (archive / "sub" / "up").symlink_to("../..")   # out, two levels
    (archive / "out.tif").symlink_to(outside / "secret.tif")
    (archive / "sub" / "again").symlink_to("..")   # inside the archive: followed, visited once
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    proc = run_cli("ingest", archive, "--db", url, timeout=120)
    assert_clean(proc)
    with open_catalog(url) as cat:
        paths = {p for r in cat.search(limit=100) for p in r.paths}
    escaped = [p for p in paths if not p.startswith(str(archive) + os.sep) or "secret" in p]
    followed = run_cli("ingest", archive, "--db", f"sqlite:///{tmp_path / 'all.db'}", "--follow-links", timeout=120)
    assert_clean(followed)
    with open_catalog(f"sqlite:///{tmp_path / 'all.db'}") as cat:
        followed_n = cat.count()
    figures.add("attack: directory and file symlinks out of the archive, symlink loops (semcat ingest)",
                inputs=5, failures=len(escaped) + int(len(paths) != len(inside)),
                notes="links out of the given folders skipped (--follow-links follows them); loops end")
    assert not escaped, escaped
    assert len(paths) == len(inside) and proc.returncode == 0
    assert followed_n == 3 and followed.returncode == 0


# --- disk full, read-only catalog ---------------------------------------------------------------

@contextmanager
def _mount(target: Path, *options: str, source: str = "tmpfs", fstype: str | None = "tmpfs"):
    target.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", *(["-t", fstype] if fstype else []), *options, source, str(target)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(cmd)}): needs root and mount permission")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _mount_read_only(source: Path, target: Path):
    """A read-only view of ``source`` (a bind mount remounted read-only; root ignores file modes)."""
    @contextmanager
    def view():
        with _mount(target, "--bind", source=str(source), fstype=None):
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True).returncode:
                pytest.skip("cannot remount read-only here")
            yield target
    return view()


def _serve_read_only(url: str) -> str:
    """Start ``semcat serve`` on ``url``; '' when it lists the image and refuses a label, else the problem."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen([*SEMCAT, "serve", "--db", url, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                listed = httpx.get(f"{base}/api/images", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            return f"did not start: {proc.stderr.read()[-1000:] if proc.poll() is not None else 'timeout'}"
        items = listed.json().get("images", listed.json()) if listed.status_code == 200 else []
        if listed.status_code != 200 or len(items) != 1:
            return f"GET /api/images: {listed.status_code} {listed.text[:300]}"
        sha = items[0]["sha256"]
        posted = httpx.post(f"{base}/api/images/{sha}/label", json={"label": "Powder"}, timeout=10)
        return "" if posted.status_code in (401, 403) else f"label POST answered {posted.status_code}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def catalog_dir(tmp_path: Path) -> Path:
    """A small catalog on the ordinary disk (one image), made once per test."""
    db = tmp_path / "ok" / "cat.db"
    if not db.exists():
        db.parent.mkdir()
        assert run_cli("ingest", next((tmp_path / "images").rglob("*.tif")), "--db", f"sqlite:///{db}").returncode == 0
    return db


def test_full_disk_and_read_only_catalog_give_one_line_errors(tmp_path, figures) -> None:
    from semcat.synth import write_dataset

    images = tmp_path / "images"
    write_dataset(images, per_class=6, size=64, seed=5, databar=False)
    checks = []
    first = next(images.rglob("*.tif"))
    with _mount(tmp_path / "full", "-o", "size=512k") as full:
        db = f"sqlite:///{full / 'cat.db'}"
        assert run_cli("ingest", first, "--db", db, timeout=120).returncode == 0  # the catalog exists...
        fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)  # ...then the disk fills up
        try:
            while os.write(fd, bytes(4096)):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        checks.append(run_cli("ingest", images, "--db", db, timeout=120))
        checks.append(run_cli("export", "--db", f"sqlite:///{catalog_dir(tmp_path)}", "--out", full / "out.json"))
    catalog = catalog_dir(tmp_path).parent
    with _mount_read_only(catalog, tmp_path / "ro"):
        ro_db = f"sqlite:///{tmp_path / 'ro' / 'cat.db'}"
        checks.append(run_cli("ingest", images, "--db", ro_db, timeout=120))
        searched = run_cli("search", "--db", ro_db, "--format", "json")
        served = _serve_read_only(ro_db)
    bad = [f"search on a read-only catalog: {searched.stderr[-500:]}"] if searched.returncode or \
        len(json.loads(searched.stdout)) != 1 else []
    bad += [f"serve on a read-only catalog: {served}"] if served else []
    for proc in checks:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        if "Traceback" in proc.stderr or proc.returncode == 0 or len(errors) != 1:
            bad.append(proc.stderr[-2000:])
    figures.add("attack: full disk (512 kB tmpfs) and read-only catalog (CLI)", inputs=len(checks) + 2,
                failures=len(bad), notes="ingest and export on a full disk, ingest on a read-only mount: one error "
                "line; search and serve on the read-only mount work (served read-only)")
    assert not bad, bad


# --- concurrent ingests -------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_ingest_summaries_add_up(backend, tmp_path, figures, request) -> None:
    """Three ingests of the same folder at once: "new" adds up to the number of images, nothing moved."""
    from semcat.catalog import open_catalog
    from semcat.synth import write_dataset

    images = tmp_path / "images"
    write_dataset(images, per_class=6, size=48, seed=9, databar=False)
    n = sum(1 for _ in images.rglob("*.tif"))
    url = f"sqlite:///{tmp_path / 'cat.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg")
    open_catalog(url).close()  # schema first, so the race is over the rows
    summaries, barrier = [], threading.Barrier(3)

    def one() -> None:
        with open_catalog(url) as cat:
            barrier.wait()
            summaries.append(cat.ingest([images], batch_size=3, progress=False))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    with open_catalog(url) as cat:
        stored = cat.count()
    new = sum(s.new for s in summaries)
    moved = sum(s.moved + s.copies for s in summaries)
    accounted = all(s.new + s.known + s.moved + s.copies + s.failed == s.seen == n for s in summaries)
    figures.add(f"concurrency: 3 ingests of the same {n} images, summaries ({backend})", inputs=3 * n,
                failures=abs(new - n) + moved + int(not accounted), lost=n - stored,
                notes=f"new adds up to {new} for {n} images; {moved} moved or copies reported")
    assert len(summaries) == 3 and stored == n
    assert new == n and moved == 0 and accounted, [s.line() for s in summaries]
