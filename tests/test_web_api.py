"""The web app's pages and JSON API on a real catalog (SQLite and PostgreSQL), via FastAPI's TestClient."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from test_web_helpers import SCRIPT, client, csrf, fresh_pg_url, free_port, make_catalog, write_archive
from typer.testing import CliRunner

from semcat import CATEGORIES
from semcat.cli import app as cli_app
from semcat.web.app import create_app
from semcat.web.settings import Settings


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("web_archive"))


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, archive: Path, tmp_path: Path):
    """(app, catalog) on a fresh catalog of each backend, with predictions."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        gen = fresh_pg_url(request)
        url = next(gen)
        request.addfinalizer(lambda: next(gen, None))
    cat = make_catalog(url, archive)
    app = create_app(Settings(db_url=url, local_user="tester", storage_dir=tmp_path / "storage"), catalog=cat)
    yield app, cat
    cat.close()


def test_grid_and_filters_match_the_catalog(site) -> None:
    app, cat = site
    c = client(app)
    data = c.get("/api/images", params={"limit": 500}).json()
    assert data["total"] == cat.count() == 21
    assert {r["sha256"] for r in data["images"]} == {r.sha256 for r in cat.search(limit=500)}
    manual = c.get("/api/images", params={"decision": "manual", "min_score": "", "confirmed": ""}).json()
    assert manual["total"] == cat.count(decision="manual") > 0
    assert all(r["decision"] == "manual" for r in manual["images"])
    lo = c.get("/api/images", params={"min_score": 0.3, "max_score": 0.6}).json()
    assert all(0.3 <= r["top"][0][1] <= 0.6 for r in lo["images"])
    assert lo["total"] == cat.count(min_score=0.3, max_score=0.6)
    page = c.get("/api/images", params={"limit": 5, "offset": 5}).json()
    assert len(page["images"]) == 5 and page["prev_offset"] == 0 and page["next_offset"] == 10
    html = c.get("/", params={"decision": "manual"}).text
    assert html.count('class="card"') == manual["total"]
    assert data["total_is_lower_bound"] is False and "21 images" in c.get("/").text


def test_broad_search_counts_up_to_a_cap(site, monkeypatch) -> None:
    """A page of a million matches says "10,000+" instead of counting them all."""
    from semcat.web import browse

    monkeypatch.setattr(browse, "COUNT_CAP", 6)
    c = client(site[0])
    first = c.get("/api/images", params={"limit": 4}).json()
    assert first["total"] == 6 and first["total_is_lower_bound"] and first["next_offset"] == 4
    last = c.get("/api/images", params={"limit": 4, "offset": 17}).json()  # 21 images: 17..20
    assert last["total"] == 21 and not last["total_is_lower_bound"] and last["next_offset"] is None
    assert "6+ images" in c.get("/", params={"limit": 4}).text


@pytest.mark.parametrize("query, problem", [
    ({"min_score": "high"}, "min_score: expected a finite number"),
    ({"decision": "maybe"}, "decision: expected one of auto"),
    ({"date_from": "31/12/2024"}, "date_from: expected a date"),
    ({"measurement": "coherency"}, "measurement: expected NAME:MIN:MAX"),
    ({"order": "random"}, "order: expected one of"),
])
def test_bad_filters_say_what_is_expected(site, query: dict, problem: str) -> None:
    r = client(site[0]).get("/api/images", params=query)
    assert r.status_code == 400 and problem in r.json()["detail"]


def test_image_detail_and_files(site) -> None:
    app, cat = site
    c = client(app)
    rec = cat.search(limit=1, decision="suggest")[0]
    data = c.get(f"/api/images/{rec.sha256[:10]}").json()
    assert data["image"]["sha256"] == rec.sha256 and data["image"]["top"][0][0] == rec.top[0][0]
    assert [e["kind"] for e in data["history"]] == ["prediction"]
    assert "has no stored features" in data["similar_error"]
    page = c.get(f"/images/{rec.sha256}")
    assert page.status_code == 200 and rec.top[0][0] in page.text and "<meter" in page.text
    assert c.get(f"/images/{rec.sha256[:10]}", follow_redirects=False).headers["location"] == f"/images/{rec.sha256}"
    original = c.get(f"/images/{rec.sha256}/file")
    assert original.content == Path(rec.path).read_bytes()
    assert c.get("/api/images/" + "0" * 64).status_code == 404


def test_thumbnails_are_cropped_cached_and_keyed_by_hash(site, semcat_home: Path) -> None:
    app, cat = site
    c = client(app)
    from semcat.images import read_image

    rec = next(r for r in cat.search(limit=50) if read_image(r.path)[1].databar_rows > 0)
    rows, bar = read_image(rec.path)[1].shape[0], read_image(rec.path)[1].databar_rows
    thumb = c.get(f"/thumbs/{rec.sha256}.png", params={"size": 200})
    view = c.get(f"/images/{rec.sha256}/view.png")
    assert thumb.headers["content-type"] == "image/png"
    t = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_UNCHANGED)
    v = cv2.imdecode(np.frombuffer(view.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert t.shape == (rows - bar, 96), "thumbnail: the 96-px image without its data bar"
    assert v.shape == (rows, 96), "full view keeps the data bar"
    cached = semcat_home / "thumbs" / rec.sha256[:2] / f"{rec.sha256}-256.png"
    assert cached.read_bytes() == thumb.content
    mtime = cached.stat().st_mtime_ns
    assert c.get(f"/thumbs/{rec.sha256}.png", params={"size": 256}).content == thumb.content
    assert cached.stat().st_mtime_ns == mtime
    assert c.get("/thumbs/" + "ab" * 32 + ".png").status_code == 404
    assert c.get("/thumbs/nothex.png").status_code == 400


def test_review_queue_confirm_tag_note(site) -> None:
    app, cat = site
    c = client(app)
    q = c.get("/api/review", params={"limit": 100}).json()
    scores = [r["top"][0][1] for r in q["queue"]]
    assert q["remaining"] == len(q["queue"]) == len(cat.review_queue(limit=100)) >= 5
    assert scores == sorted(scores) and {r["decision"] for r in q["queue"]} <= {"suggest", "manual", "unknown"}
    first = q["current"]
    assert {ch["label"]: ch["key"] for ch in q["choices"]} == dict(zip(CATEGORIES, "1234567890"))  # fixed per class
    if first["candidates"]:
        assert [ch["label"] for ch in q["choices"][: len(first["candidates"])]] == first["candidates"]
    label = q["choices"][1]["label"]
    r = c.post(f"/api/images/{first['sha256']}/label", json={"label": label}, headers=csrf(c))
    assert r.status_code == 200, r.text
    img = r.json()["image"]
    assert (img["label"], img["label_who"], img["label_source"]) == (label, "tester", "human")
    assert img["label_time"]
    assert cat.get(first["sha256"]).label == label
    assert (first["path"], first["sha256"], label) in cat.confirmed_labels()
    after = c.get("/api/review", params={"limit": 100}).json()
    assert after["remaining"] == q["remaining"] - 1 and first["sha256"] not in [x["sha256"] for x in after["queue"]]
    history = c.get(f"/api/images/{first['sha256']}").json()["history"]
    assert history[-1]["kind"] == "label" and history[-1]["who"] == "tester"

    bad = c.post(f"/api/images/{first['sha256']}/label", json={"label": "Cats"}, headers=csrf(c))
    assert bad.status_code == 400 and "expected one of Porous_Sponge" in bad.json()["detail"]
    assert c.post(f"/api/images/{first['sha256']}/tags", json={"tag": "batch-7"}, headers=csrf(c)).status_code == 200
    assert c.post(f"/api/images/{first['sha256']}/notes", json={"text": SCRIPT}, headers=csrf(c)).status_code == 200
    rec = cat.get(first["sha256"])
    assert rec.tags == ["batch-7"] and rec.notes[0]["text"] == SCRIPT.strip() and rec.notes[0]["who"] == "tester"
    assert c.get("/api/images", params={"tag": "batch-7"}).json()["total"] == 1
    assert c.get("/api/images", params={"confirmed": "yes"}).json()["total"] == 1


def test_html_review_flow_with_forms(site) -> None:
    """Without JavaScript: the queue page's buttons are forms; a click confirms and shows the next image."""
    app, cat = site
    c = client(app)
    page = c.get("/review").text
    token = csrf(c)["X-CSRF-Token"]
    assert f'value="{token}"' in page and 'data-key="1"' in page
    current = c.get("/api/review").json()["current"]
    choice = c.get("/api/review").json()["choices"][0]["label"]
    r = c.post(f"/images/{current['sha256']}/label", data={"label": choice, "next": "/review?offset=0",
                                                           "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review?offset=0"
    assert cat.get(current["sha256"]).label == choice
    assert c.get("/api/review").json()["current"]["sha256"] != current["sha256"]


def test_dashboard_counts_and_reviewed_plots(site) -> None:
    app, cat = site
    c = client(app)
    stats = c.get("/api/stats").json()
    assert stats["stats"] == cat.stats() and stats["plots"]["model"] == [] and stats["reviewed_n"] == 0
    assert c.get("/dashboard/plots/reviewed/p_correct.png").status_code == 404
    for rec in cat.search(limit=6):
        c.post(f"/api/images/{rec.sha256}/label", json={"label": rec.top[0][0]}, headers=csrf(c))
    stats = c.get("/api/stats").json()
    assert stats["reviewed_n"] == 6 and stats["stats"]["confirmed"] == 6
    png = c.get(stats["plots"]["reviewed"][2])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert c.get("/dashboard/plots/model/p_correct.png").status_code == 404
    assert c.get("/dashboard/plots/reviewed/other.png").status_code == 404
    html = c.get("/dashboard").text
    assert "Per category" in html and str(stats["stats"]["images"]) in html


def _png_bytes() -> bytes:
    from semcat.synth import generate_image

    ok, buf = cv2.imencode(".png", generate_image("Fibres", np.random.default_rng(5), size=80))
    return buf.tobytes()


def test_upload_analyse_then_add_to_catalog(site, tmp_path: Path) -> None:
    app, cat = site
    c = client(app)
    data = _png_bytes()
    r = c.post("/api/upload", files=[("files", ("../../outside me.png", data, "image/png")),
                                     ("files", ("fake.tif", b"MZ\x90\x00 not an image", "image/tiff"))],
               headers=csrf(c))
    assert r.status_code == 200, r.text
    good, bad = r.json()["results"]
    assert good["error"] is None and good["format"] == "PNG" and good["shape"] == [80, 80]
    assert good["in_catalog"] is False and "prediction" not in good  # served without --model
    assert bad["sha256"] is None and "not an image" in bad["error"]
    before = cat.count()
    added = c.post(f"/api/upload/{good['sha256']}/add", json={"name": good["name"]}, headers=csrf(c)).json()
    stored = Path(added["stored_as"])
    storage = (tmp_path / "storage").resolve()
    assert stored.is_relative_to(storage) and stored.name.endswith("_outside_me.png")
    assert stored.read_bytes() == data and cat.count() == before + 1
    assert cat.get(good["sha256"]).path == str(stored)
    assert c.post(f"/api/upload/{good['sha256']}/add", json={}, headers=csrf(c)).status_code == 404
    assert not (tmp_path / "outside me.png").exists()


def test_upload_size_limit(archive: Path, tmp_path: Path) -> None:
    from semcat.catalog import open_catalog

    cat = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    app = create_app(Settings(db_url=cat.url, max_upload_bytes=2000, storage_dir=tmp_path / "s"), catalog=cat)
    c = client(app)
    r = c.post("/api/upload", files=[("files", ("big.png", _png_bytes() + b"\0" * 4000, "image/png"))], headers=csrf(c))
    assert r.status_code == 413 and "limit is" in r.json()["detail"]
    assert not list((tmp_path / "s").rglob("*.png"))


def test_an_upload_is_classified_as_semcat_classify_classifies_it(demo_output: Path, tmp_path: Path) -> None:
    """Upload and `semcat classify` share one front door (engines.local.classify): the same file
    gets the same prediction, to the last rounded digit."""
    import json

    from semcat.catalog import open_catalog

    image, model = sorted((demo_output / "incoming").rglob("*.tif"))[0], demo_output / "model.semcat"
    result = CliRunner().invoke(cli_app, ["classify", str(model), str(image), "--format", "json"])
    assert result.exit_code == 0, result.output
    (want,) = json.loads(result.stdout)
    cat = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    app = create_app(Settings(db_url=cat.url, model_path=model, local_user="tester", storage_dir=tmp_path / "s"),
                     catalog=cat)
    c = client(app)
    r = c.post("/api/upload", files=[("files", (image.name, image.read_bytes(), "image/tiff"))], headers=csrf(c))
    assert r.status_code == 200, r.text
    got = r.json()["results"][0]["prediction"]
    assert len(want["top"]) == 3 and want["error"] is None
    assert {k: v for k, v in got.items() if k != "path"} == {k: v for k, v in want.items() if k != "path"}
    cat.close()


def test_openapi_lists_the_json_twins(site) -> None:
    paths = client(site[0]).get("/openapi.json").json()["paths"]
    for p in ("/api/images", "/api/images/{sha256}", "/api/review", "/api/stats", "/api/upload",
              "/api/images/{sha256}/label", "/thumbs/{sha256}.png"):
        assert p in paths
    assert "/review" not in paths


# ---- CLI ---------------------------------------------------------------------------------------

def test_serve_help() -> None:
    r = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert r.exit_code == 0 and "--read-only" in r.output and "--token" in r.output


def test_serve_refuses_public_host_without_token() -> None:
    r = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--db", "sqlite:///:memory:"])
    assert r.exit_code == 2 and "refusing to serve on '0.0.0.0' without an access token" in r.output


@pytest.mark.slow
def test_serve_runs_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    db = f"sqlite:///{tmp_path / 'c.db'}"
    semcat = Path(sys.executable).with_name("semcat")
    proc = subprocess.Popen([str(semcat), "serve", "--db", db, "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
                time.sleep(0.3)
        assert r.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/api/stats").json()["stats"]["images"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "serving" in proc.stderr.read()


def test_a_category_made_by_another_process_is_accepted_at_once(site, tmp_path: Path) -> None:
    """The category list is cached per process (a transaction less per page); a label write whose
    category another server process (here: another Catalog on the same database) just created
    re-reads it instead of refusing."""
    from semcat.catalog import open_catalog

    app, cat = site
    c = client(app)
    sha = cat.search(limit=1)[0].sha256
    assert "Nanotubes" not in c.get("/api/images", params={"limit": 1}).json()["classes"]  # now cached
    with open_catalog(cat.url) as other:
        other.add_category("Nanotubes", who="elsewhere")
    r = c.post(f"/api/images/{sha}/label", json={"label": "Nanotubes"}, headers=csrf(c))
    assert r.status_code == 200 and r.json()["image"]["label"] == "Nanotubes", r.text
    assert c.post(f"/api/images/{sha}/label", json={"label": "Nanotubez"}, headers=csrf(c)).status_code == 400
    assert c.post(f"/api/images/{'0' * 64}/label", json={"label": "Nanotubes"}, headers=csrf(c)).status_code == 404
