"""Issue 18's attacks on the web layer, replayed: each test is the attack, run against the real app.

Swapped files (a catalogued path replaced by another file or a symlink), stale session cookies
(old token, logout, restart), huge and hostile query parameters, a catalogue on a read-only share,
a full disk, and a PNG that is small on disk but huge once decoded. Each records a row in
RELIABILITY.md; ``failures`` counts attacks that got through.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import httpx
import pytest
from test_web_helpers import client, csrf, make_catalog, write_archive

from reliability.conftest import Served, assert_clean, p95
from reliability.corpus import amplifying_picture, amplifying_png

TOKEN, READ_TOKEN, OTHER_TOKEN = "reviewer-token-1", "viewer-token-22", "replaced-token-333"
SECRET_LINE = "root:x:0:0"  # first bytes of /etc/passwd: must never reach a client


def _app(url: str, tmp_path: Path, **settings):
    from semcat.web.app import create_app
    from semcat.web.settings import Settings

    return create_app(Settings(db_url=url, storage_dir=tmp_path / "storage", local_user="rel",
                               secret_file=tmp_path / "web_secret", **settings))


def _one_line_4xx(r: httpx.Response) -> bool:
    detail = str(r.json().get("detail", "")) if r.headers.get("content-type", "").startswith("application/json") else ""
    return 400 <= r.status_code < 500 and bool(detail) and "\n" not in detail and len(detail) < 400


# ---- 1. swapped files ---------------------------------------------------------------------------

def _swap(kind: str, path: Path, other: Path, outside: Path) -> None:
    """Replace the catalogued ``path`` the way an attacker (or a careless copy) would."""
    path.unlink()
    if kind == "symlink to /etc/passwd":
        path.symlink_to("/etc/passwd")
    elif kind == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink out of the archive (same bytes)":
        path.symlink_to(outside)
    elif kind == "FIFO":
        os.mkfifo(path)
    elif kind == "other image":
        shutil.copy(other, path)
    elif kind == "same size, one byte flipped":
        data = bytearray(outside.read_bytes())  # the catalogued bytes, one of them changed
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))


SWAPS = ("symlink to /etc/passwd", "symlink to /dev/zero", "symlink out of the archive (same bytes)", "FIFO",
         "other image", "same size, one byte flipped")


def test_swapped_files_are_not_served(tmp_path, figures) -> None:
    from semcat.catalog.schema import ImagePath

    archive = write_archive(tmp_path / "archive")
    cat = make_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", archive)
    records = sorted(cat.search(limit=100), key=lambda r: r.sha256)
    c = client(_app(cat.url, tmp_path), raise_server_exceptions=False)
    got_through, checked = [], 0
    victims = records[:len(SWAPS)]
    for kind, rec in zip(SWAPS, victims):
        path = Path(rec.path)
        outside = tmp_path / f"outside-{rec.sha256[:8]}{path.suffix}"
        shutil.copy(path, outside)
        _swap(kind, path, Path(records[-1].path), outside)
        for route in (f"/images/{rec.sha256}/file", f"/thumbs/{rec.sha256}.png", f"/images/{rec.sha256}/view.png",
                      f"/tiles/{rec.sha256}/info.json", f"/tiles/{rec.sha256}/0/0_0.png"):
            r = c.get(route)
            checked += 1
            if r.status_code != 404 or SECRET_LINE.encode() in r.content or not _one_line_4xx(r):
                got_through.append(f"{kind} {route}: {r.status_code} {r.content[:80]!r}")
    with cat.db.read() as conn:
        flagged = {p for p, m in conn.execute(ImagePath.__table__.select().with_only_columns(
            ImagePath.path, ImagePath.missing)) if m}
    unflagged = [r.path for r in victims if r.path not in flagged]
    intact = records[len(SWAPS)]
    r = c.get(f"/images/{intact.sha256}/file")
    served_ok = r.status_code == 200 and r.content == Path(intact.path).read_bytes()
    link = Path(intact.path).with_name("alias-inside.tif")  # a symlink inside its own folder is fine
    link.symlink_to(Path(intact.path).name)
    figures.add("attack: swapped catalogued files (web file, thumbnail, view, tiles)", inputs=checked + 1,
                failures=len(got_through) + len(unflagged) + (not served_ok),
                notes="test_swapped_files_are_not_served: "
                      f"{len(SWAPS)} swaps ({', '.join(SWAPS)}): 404 '…none of its files holds that content…', "
                      "path flagged missing; the unchanged file still served byte-exact")
    assert not got_through, got_through
    assert not unflagged, f"not flagged missing: {unflagged}"
    assert served_ok
    cat.close()


# ---- 2. stale sessions ----------------------------------------------------------------------------

def test_sessions_end_with_their_token_and_at_logout(tmp_path, figures) -> None:
    from semcat.web.security import SESSION_COOKIE, SESSION_MAX_AGE, SessionSigner, load_secret, new_session
    from semcat.web.settings import Settings

    archive = write_archive(tmp_path / "archive")
    cat = make_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", archive)
    sha = cat.search(limit=1)[0].sha256

    def browser(**tokens):
        return client(_app(cat.url, tmp_path, host="0.0.0.0", **tokens), follow_redirects=False)

    def whoami(c, cookie: str) -> int | str:
        c.cookies.set(SESSION_COOKIE, cookie)
        r = c.get("/api/whoami")
        return r.json()["role"] if r.status_code == 200 else r.status_code

    first = browser(token=TOKEN, read_token=READ_TOKEN)
    assert first.get(f"/?token={TOKEN}").status_code == 303
    reviewer_cookie = first.cookies[SESSION_COOKIE]
    outcomes = {
        "same tokens after restart": (whoami(browser(token=TOKEN, read_token=READ_TOKEN), reviewer_cookie), "reviewer"),
        "token replaced after restart": (whoami(browser(token=OTHER_TOKEN), reviewer_cookie), 401),
        "reviewer token now the read token": (whoami(browser(token=OTHER_TOKEN, read_token=TOKEN), reviewer_cookie),
                                              "viewer"),
    }
    signer = SessionSigner(load_secret(tmp_path / "web_secret"))
    old = {**new_session(Settings(), "reviewer", "x", signer.fingerprint(TOKEN)),
           "iat": int(time.time()) - SESSION_MAX_AGE - 5}
    outcomes["expired session (signed, token still valid)"] = (whoami(browser(token=TOKEN), signer.dumps(old)), 401)
    c = browser(token=TOKEN)
    c.cookies.set(SESSION_COOKIE, reviewer_cookie)
    c.post("/logout")
    outcomes["replayed after logout"] = (whoami(c, reviewer_cookie), 401)
    outcomes["replayed after logout and restart"] = (whoami(browser(token=TOKEN), reviewer_cookie), 401)
    c = browser(token=TOKEN)
    c.cookies.set(SESSION_COOKIE, reviewer_cookie)
    write = c.post(f"/api/images/{sha}/label", json={"label": "Particles"}, headers={"X-CSRF-Token": "x"})
    outcomes["label write after logout"] = (write.status_code, 401)
    wrong = {k: v for k, v in outcomes.items() if v[0] != v[1]}
    figures.add("attack: stale session cookies (old token, logout, restart, expiry)", inputs=len(outcomes),
                failures=len(wrong), notes="test_sessions_end_with_their_token_and_at_logout: "
                                           f"sessions carry a token fingerprint, start time and id; "
                                           f"lifetime {SESSION_MAX_AGE // 3600} h; logout revoked server-side")
    assert not wrong, wrong
    cat.close()


# ---- 6. huge and hostile query parameters ------------------------------------------------------

HOSTILE_QUERIES = [
    "/api/images?offset=99999999999999999999999", "/api/images?offset=9223372036854775807",
    "/api/images?offset=-1", "/api/images?limit=18446744073709551617", "/api/images?limit=0",
    "/api/images?text=" + "a" * 60_000, "/api/images?text=%00", "/api/images?text=abc%0Adef",
    "/api/images?tag=%00", "/api/images?category=%00", "/api/images?min_score=nan", "/api/images?max_score=inf",
    "/api/images?min_score=1e999", "/api/images?min_score=-0.5", "/api/images?mag_min=nan",
    "/api/images?pixel_size_max=-inf", "/api/images?measurement=coherency:nan:",
    "/api/images?measurement=%00:0:1", "/api/images?date_from=99999-01-01",
    "/api/review?offset=99999999999999999999999", "/api/review?limit=99999999999999999999",
    "/?offset=99999999999999999999999", "/?text=%00", "/thumbs/" + "a" * 64 + ".png?size=99999999999999999999",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("fresh_pg")


def test_huge_and_hostile_parameters_get_a_one_line_4xx(db_url, tmp_path, figures) -> None:
    cat = make_catalog(db_url, write_archive(tmp_path / "archive"))
    c = client(_app(db_url, tmp_path), raise_server_exceptions=False)
    bad = []
    for url in HOSTILE_QUERIES:
        r = c.get(url, headers={"Accept": "application/json"})
        if not _one_line_4xx(r):
            bad.append(f"{url[:60]}: {r.status_code} {r.text[:120]}")
    sha = cat.search(limit=1)[0].sha256
    for field, value in (("tags", {"tag": "a\x00b"}), ("notes", {"text": "x\x00"}), ("tags", {"tag": "t" * 70}),
                         ("notes", {"text": "\ud800"})):
        r = c.post(f"/api/images/{sha}/{field}", content=json.dumps(value).encode(),  # \u-escaped, as a client may
                   headers={**csrf(c), "Content-Type": "application/json"})
        if not _one_line_4xx(r):
            bad.append(f"POST {field} {str(value)[:30]}: {r.status_code} {r.text[:120]}")
    ok = c.get("/api/images", params={"text": "Particles", "min_score": "0.1", "offset": "0"})
    cat.close()
    backend = db_url.split(":", 1)[0]
    figures.add(f"attack: huge/hostile query parameters ({backend})", inputs=len(HOSTILE_QUERIES) + 5,
                failures=len(bad) + (ok.status_code != 200),
                notes="test_huge_and_hostile_parameters_get_a_one_line_4xx: "
                      "offsets/limits past 64-bit, 60,000-char text, NUL/newline, nan/inf, NUL or lone "
                      "surrogate in tags/notes: one-line 400 (bounds in semcat._validation)")
    assert not bad, bad
    assert ok.status_code == 200 and ok.json()["total"] > 0


# ---- 8. read-only share, full disk -------------------------------------------------------------

@pytest.fixture()
def tmpfs(tmp_path: Path):
    """A small tmpfs of our own (needs root); skipped where mounting is not permitted."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): read-only share and full disk not replayed")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_serve_on_a_read_only_share_serves_read_only(tmpfs, tmp_path, figures) -> None:
    archive = write_archive(tmpfs / "archive")
    db = tmpfs / "catalog.db"
    cat = make_catalog(f"sqlite:///{db}", archive)
    swapped = sorted(cat.search(limit=100), key=lambda r: r.sha256)[0]
    cat.close()
    Path(swapped.path).write_bytes(b"not the catalogued bytes")  # cannot even be flagged missing here
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    server = Served("--db", db, "--storage", tmp_path / "storage", log=tmp_path / "serve.log",
                    env={"SEMCAT_HOME": str(tmp_path / "home")})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            listing = c.get("/api/images")
            sha = listing.json()["images"][0]["sha256"]
            pages = [c.get(f"/api/images/{sha}"), c.get(f"/thumbs/{sha}.png"), c.get(f"/images/{sha}/file"),
                     c.get("/api/review"), c.get("/api/stats")]
            gone = c.get(f"/images/{swapped.sha256}/file")
            who = c.get("/api/whoami").json()
            write = c.post(f"/api/images/{sha}/label", json={"label": "Particles"},
                           headers={"X-CSRF-Token": who["csrf_token"]})
    finally:
        server.stop()
    err = server.output()
    failed = [r.request.url.path for r in [listing, *pages] if r.status_code != 200]
    figures.add("attack: serve a SQLite catalogue on a read-only share", inputs=len(pages) + 3,
                failures=len(failed) + (write.status_code != 403) + (who["role"] != "viewer")
                + (gone.status_code != 404),
                notes="test_serve_on_a_read_only_share_serves_read_only: "
                      "opened read-only (mode=ro, else immutable); every session a viewer; writes 403; "
                      "a swapped file 404")
    assert "Traceback" not in err, err[-3000:]
    assert "read-only" in err
    assert not failed, failed
    assert who["role"] == "viewer" and write.status_code == 403 and _one_line_4xx(write)
    assert gone.status_code == 404 and _one_line_4xx(gone)


def test_full_disk_is_a_one_line_507(tmpfs, tmp_path, figures, monkeypatch) -> None:
    archive = write_archive(tmp_path / "archive")
    cat = make_catalog(f"sqlite:///{tmpfs / 'catalog.db'}", archive)
    shas = [r.sha256 for r in cat.search(limit=100)]
    monkeypatch.setenv("SEMCAT_HOME", str(tmpfs / "home"))  # the thumbnail cache is full too
    c = client(_app(cat.url, tmp_path), raise_server_exceptions=False)
    headers = csrf(c)
    with open(tmpfs / "filler", "wb") as f:  # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    writes = [c.post(f"/api/images/{sha}/notes", json={"text": "n" * 4000}, headers=headers) for sha in shas[:20]]
    full = [r for r in writes if r.status_code == 507]
    thumb = c.get(f"/thumbs/{shas[0]}.png")
    bad = [f"{r.status_code} {r.text[:100]}" for r in writes if r.status_code not in (200, 507)
           or (r.status_code == 507 and ("disk is full" not in r.json()["detail"] or "\n" in r.json()["detail"]))]
    figures.add("attack: full disk under the web app (SQLite on a 6 MB tmpfs)", inputs=len(writes) + 1,
                failures=len(bad) + (not full) + (thumb.status_code != 200),
                notes="test_full_disk_is_a_one_line_507: "
                      f"{len(full)}/{len(writes)} note writes answered 507 'the disk is full …', the rest stored; "
                      "thumbnails still shown when their cache cannot be written")
    assert full and not bad, bad
    assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")
    cat.close()


# ---- 10. decompression amplification -----------------------------------------------------------

def _memory_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (``VmHWM``) or current (``VmRSS``) resident memory, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_LIBRARY_PROBE = """
import json, sys, time
import cv2, numpy as np
from semcat.features import extract_features
from semcat.web.thumbs import render_png

def kib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])

big, small = sys.argv[1:3]
budget = 256 * 2**20  # semcat serve's default decode budget
data = open(big, "rb").read()
open("/proc/self/clear_refs", "w").write("5")  # peak memory (VmHWM) restarts from now (imports peak higher)
before = kib("VmRSS")
t0, cpu0 = time.perf_counter(), time.process_time()
big_thumb = render_png(data, "big.png", 256, max_decode_bytes=budget)
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
grown = (kib("VmHWM") - before) / 1024
small_thumb = render_png(open(small, "rb").read(), "small.png", 256, max_decode_bytes=budget)
thumbs = [cv2.imdecode(np.frombuffer(t, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
          for t in (big_thumb, small_thumb)]
feats = extract_features([big, small], "efficientnet_lite0", store=None, progress=False, workers=1)
f = feats.features / np.linalg.norm(feats.features, axis=1, keepdims=True)
print(json.dumps({"grown_mb": grown, "wall_s": wall, "cpu_s": cpu, "errors": [str(e) for e in feats.errors],
                  "shapes": [t.shape for t in thumbs], "thumb_diff": float(np.abs(thumbs[0] - thumbs[1]).mean()),
                  "cosine": float(f[0] @ f[-1]) if len(f) == 2 else None}))
"""


def _with_comment(png: bytes, text: str) -> bytes:
    """The same PNG with a tEXt chunk after IHDR: other bytes (another upload), the same pixels."""
    body = b"Comment\x00" + text.encode()
    chunk = len(body).to_bytes(4, "big") + b"tEXt" + body + zlib.crc32(b"tEXt" + body).to_bytes(4, "big")
    return png[:33] + chunk + png[33:]


@pytest.mark.slow  # ~30 s on 2 free cores: nine 1.5 GB decodes
def test_amplifying_pngs_are_decoded_reduced_in_bounded_memory(tmp_path, figures) -> None:
    """The attack: a 1.8 MB PNG of 14000 x 14000 16-bit RGBA pixels (1.5 GB decoded), thumbnailed
    and featurised by the library, then uploaded eight times at once. Each decode streams in bands:
    the library's peak memory grows by tens of MB, not 1.5 GB, and its thumbnail and features
    match those of a 1400-pixel PNG of the same picture, decoded whole; the server decodes at most ``--max-decodes`` at once."""
    bomb, small = tmp_path / "amplifying.png", tmp_path / "small.png"
    data = amplifying_png()
    bomb.write_bytes(data)
    cv2.imwrite(str(small), amplifying_picture(1400)[..., [2, 1, 0, 3]])  # 1400 px: decoded whole; OpenCV writes BGRA
    probe = subprocess.run([sys.executable, "-c", _LIBRARY_PROBE, str(bomb), str(small)], capture_output=True,
                           text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    lib = json.loads(probe.stdout.strip().splitlines()[-1])

    server = Served("--db", tmp_path / "catalog.db", "--storage", tmp_path / "storage", "--max-decodes", "2",
                    log=tmp_path / "serve.log", env={"SEMCAT_HOME": str(tmp_path / "home")})
    answers: list[tuple[int, dict, float]] = []
    try:
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")  # its peak restarts from now
        before = _memory_mb(server.proc.pid, "VmRSS")
        with httpx.Client(base_url=server.url, timeout=120) as c:
            headers = csrf(c)
            cookies = dict(c.cookies)

        def upload(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=180, cookies=cookies) as c:
                t = time.perf_counter()
                r = c.post("/api/upload", files={"files": (f"big{i}.png", _with_comment(data, str(i)), "image/png")},
                           headers=headers)
                answers.append((r.status_code, r.json()["results"][0], time.perf_counter() - t))

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        grown = _memory_mb(server.proc.pid) - before
    finally:
        server.stop()
    err = server.output()
    read = [a for a in answers if a[0] == 200 and a[1]["error"] is None and a[1]["shape"] == [14000, 14000]]
    # a request that waited DECODE_WAIT_S for a decode slot is told so in one line (a loaded machine)
    busy = [a for a in answers if a[0] == 200 and a[1]["error"] == "busy decoding other images: try again in a moment"]
    close = lib["thumb_diff"] < 0.01 and lib["cosine"] is not None and lib["cosine"] > 0.99
    figures.add("attack: a 1.8 MB PNG that decodes to 1.5 GB: library thumbnail + features, then 8 concurrent uploads",
                inputs=1 + len(answers),
                failures=(8 - len(read) - len(busy)) + (grown > 400) + (lib["grown_mb"] > 150) + (not close),
                p95_ms=1000 * p95([a[2] for a in answers]),
                notes="test_amplifying_pngs_are_decoded_reduced_in_bounded_memory: decoded band by band, reduced "
                      f"(semcat.large_decode): library thumbnail +{lib['grown_mb']:.0f} MB peak, "
                      f"{lib['cpu_s']:.1f} s CPU; against the same picture at 1400 px: thumbnail mean difference "
                      f"{lib['thumb_diff']:.4f}, feature cosine {lib['cosine']:.4f}; server (--max-decodes 2): "
                      f"{len(read)}/8 concurrent uploads analysed, {len(busy)} told to retry after waiting for a "
                      f"decode slot, peak memory +{grown:.0f} MB (was +5.4 GB)")
    assert_clean(subprocess.CompletedProcess([], 0, "", err))
    assert not lib["errors"] and lib["grown_mb"] < 150, lib
    assert close, lib
    assert len(read) + len(busy) == len(answers) == 8 and len(read) >= 2, [(a[0], a[1].get("error")) for a in answers]
    assert grown < 400, f"server peak memory grew {grown:.0f} MB"
