"""Security of the web app: binding, tokens and roles, CSRF, path traversal, escaping, cookies."""
from __future__ import annotations

import re

import socket
from pathlib import Path

import pytest
from test_web_helpers import HOSTILE_NAME, SCRIPT, LiveServer, client, csrf, make_catalog, write_archive

from semcat.web.app import create_app
from semcat.web.security import SESSION_COOKIE
from semcat.web.settings import InsecureBindError, Settings

TOKEN, READ_TOKEN = "reviewer-secret-1", "viewer-secret-22"


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sec")
    c = make_catalog(f"sqlite:///{root / 'c.db'}", write_archive(root / "archive"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def sha(cat) -> str:
    return cat.search(limit=1, decision="suggest")[0].sha256


def _app(cat, **kw):
    return create_app(Settings(db_url=cat.url, local_user="tester", **kw), catalog=cat)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_public_bind_needs_a_token(cat, host: str) -> None:
    with pytest.raises(InsecureBindError, match="without an access token"):
        _app(cat, host=host)
    assert _app(cat, host=host, token=TOKEN) is not None
    with pytest.raises(InsecureBindError, match="at least 8 characters"):
        _app(cat, host=host, token="short")


def test_post_without_csrf_token_is_refused(cat, sha: str) -> None:
    c = client(_app(cat))
    c.get("/")  # starts a session: a SameSite=Strict, HttpOnly cookie
    before = cat.get(sha).label
    for headers in ({}, {"X-CSRF-Token": "guess"}):
        r = c.post(f"/api/images/{sha}/label", json={"label": "Tips"}, headers=headers)
        assert r.status_code == 403 and "CSRF token missing or wrong" in r.json()["detail"]
    r = c.post(f"/images/{sha}/label", data={"label": "Tips", "csrf_token": "guess"})
    assert r.status_code == 403
    cross = c.post(f"/api/images/{sha}/label", json={"label": "Tips"},
                   headers={**csrf(c), "Origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
    assert c.get(f"/images/{sha}/label").status_code == 405  # writes are POST only
    assert cat.get(sha).label == before
    assert c.post(f"/api/images/{sha}/label", json={"label": "Tips"}, headers=csrf(c)).status_code == 200


def test_session_cookie_is_strict_httponly_and_signed(cat) -> None:
    c = client(_app(cat))
    set_cookie = c.get("/").headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    value = c.cookies[SESSION_COOKIE]
    body, sig = value.split(".")
    forged = client(_app(cat, token=TOKEN))
    forged.cookies.set(SESSION_COOKIE, body + "." + "0" * len(sig))
    assert forged.get("/api/stats").status_code == 401


def test_tokens_and_roles(cat, sha: str) -> None:
    app = _app(cat, host="0.0.0.0", token=TOKEN, read_token=READ_TOKEN)
    anon = client(app)
    assert anon.get("/api/images").status_code == 401
    r = anon.get("/review", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert anon.get("/api/images", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert anon.get("/login").status_code == 200 and anon.get("/static/semcat.css").status_code == 200

    viewer = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert anon.get("/api/images", headers=viewer).status_code == 200
    r = anon.post(f"/api/images/{sha}/label", json={"label": "Tips"}, headers=viewer)
    assert r.status_code == 403 and "read-only" in r.json()["detail"]

    reviewer = {"Authorization": f"Bearer {TOKEN}", "X-Semcat-User": "Dr. Ana <b>"}
    r = anon.post(f"/api/images/{sha}/label", json={"label": "Fibres"}, headers=reviewer)
    assert r.status_code == 200 and r.json()["image"]["label_who"] == "Dr. Ana <b>"

    browser = client(app)
    bad = browser.post("/login", data={"token": "nope", "name": "x"})
    assert bad.status_code == 401 and "wrong access token" in bad.text
    r = browser.post("/login", data={"token": TOKEN, "name": "Ben", "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    me = browser.get("/api/whoami").json()
    assert (me["name"], me["role"]) == ("Ben", "reviewer")
    assert browser.post(f"/api/images/{sha}/label", json={"label": "Tips"}, headers=csrf(browser)).status_code == 200
    assert cat.get(sha).label_who == "Ben"

    link = client(app)
    r = link.get(f"/review?token={READ_TOKEN}&name=Cy", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review" and "token" not in r.headers["location"]
    assert link.get("/api/whoami").json()["role"] == "viewer"
    assert link.post(f"/api/images/{sha}/label", json={"label": "Tips"}, headers=csrf(link)).status_code == 403


def test_read_only_server(cat, sha: str) -> None:
    c = client(_app(cat, read_only=True))
    assert c.get("/api/whoami").json()["role"] == "viewer"
    assert c.post(f"/api/images/{sha}/tags", json={"tag": "x"}, headers=csrf(c)).status_code == 403
    assert "Read-only session" in c.get("/review").text and 'action="/upload"' not in c.get("/upload").text


def test_dns_rebinding_host_is_refused(cat) -> None:
    c = client(_app(cat))
    assert c.get("/", headers={"Host": "attacker.example"}).status_code == 400
    assert c.get("/", headers={"Host": "localhost:8000"}).status_code == 200


TRAVERSALS = [
    "/thumbs/..%2F..%2F..%2Fetc%2Fpasswd.png",
    "/thumbs/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png",
    "/images/..%2F..%2Fetc%2Fpasswd/file",
    "/images/%2e%2e/file",
    "/images/....%2F%2F/view.png",
    "/api/images/..%2F..%2Fetc%2Fpasswd",
    "/static/..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/app.py",
    "/static/..%5capp.py",
    "/images/%252e%252e%252fetc%252fpasswd/file",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_attempts_fail_safely(cat, path: str) -> None:
    r = client(_app(cat)).get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert b"root:" not in r.content and b"create_app" not in r.content


def test_traversal_over_raw_http(cat) -> None:
    """Through a real server and socket, with no client-side URL normalisation."""
    server = LiveServer(_app(cat))
    try:
        for path in [*TRAVERSALS, "/thumbs/../../../../etc/passwd", "/static/../app.py", "/images/../../etc/passwd"]:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            status = int(data.split(b" ", 2)[1])
            assert status in (400, 404), (path, status)
            assert b"root:" not in data and b"create_app" not in data
    finally:
        server.stop()


def test_names_tags_and_notes_render_inert(cat) -> None:
    c = client(_app(cat))
    rec = next(r for r in cat.search(limit=100) if r.path and r.path.endswith(HOSTILE_NAME))
    assert c.post(f"/api/images/{rec.sha256}/tags", json={"tag": "<script>alert(1)</script>"}, headers=csrf(c)).status_code == 200
    assert c.post(f"/api/images/{rec.sha256}/notes", json={"text": SCRIPT}, headers=csrf(c)).status_code == 200
    pages = [c.get(f"/images/{rec.sha256}").text, c.get("/", params={"limit": 500}).text,
             c.get("/", params={"tag": "<script>alert(1)</script>"}).text]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
    detail = pages[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "&lt;img src=x onerror=alert(1)&gt;" in detail
    scripts = re.findall(r"<script[^>]*>", detail)  # only the app's own files: semcat.js, the image viewer
    assert scripts == ['<script src="/static/semcat.js" defer>', '<script src="/static/viewer.js" defer>']
    assert detail.count("<script") == 2
    headers = c.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"


def test_upload_cannot_write_outside_storage(cat, tmp_path: Path) -> None:
    storage = tmp_path / "store"
    c = client(_app(cat, storage_dir=storage))
    from test_web_api import _png_bytes

    for name in ("../../../escape.png", "..\\..\\escape.png", "/etc/cron.d/escape.png", ".hidden.png"):
        r = c.post("/api/upload", files=[("files", (name, _png_bytes(), "image/png"))], headers=csrf(c)).json()
        sha = r["results"][0]["sha256"]
        added = c.post(f"/api/upload/{sha}/add", json={"name": name}, headers=csrf(c))
        assert added.status_code == 200, added.text
        stored = Path(added.json()["stored_as"])
        assert stored.is_relative_to(storage.resolve()) and "/" not in stored.name and not stored.name.startswith(".")
    assert not list(tmp_path.glob("escape*")) and not Path("/etc/cron.d/escape.png").exists()
    assert c.post("/api/upload/..%2F..%2Fx/add", json={}, headers=csrf(c)).status_code in (400, 404)
