"""Screenshots of the web app for the README, taken from a real model's predictions.

Why: pictures in the README should show what a user gets, so they come from ``semcat demo``
output (a trained model and a catalogue of unseen images), not from hand-made fixtures.
Starts ``semcat serve`` on a free loopback port in a subprocess, opens the review queue and the
catalogue grid in headless Chromium at 1280x800, saves PNGs, and always
stops the server.

Usage (after ``semcat demo demo-output``)::

    .venv/bin/python docs/screenshots.py demo-output            # writes docs/img/{review,catalog}.png
    .venv/bin/python docs/screenshots.py demo-output --out /tmp/shots --chromium /usr/bin/chromium
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
# Every image in the visible part of the page has arrived (thumbnails are lazy-loaded).
VISIBLE_IMAGES_LOADED = """() => [...document.images]
    .filter(i => i.getBoundingClientRect().top < innerHeight)
    .every(i => i.complete && i.naturalWidth > 0)"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, model: Path, port: int, home: Path) -> subprocess.Popen:
    """``semcat serve`` in a subprocess; returns once /healthz answers (or raises with its output)."""
    cmd = [sys.executable, "-c", "from semcat.cli import app; app()", "serve", "--db", db_url,
           "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "SEMCAT_HOME": str(home)}  # session secret and storage stay out of ~/.semcat
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"semcat serve exited with code {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("semcat serve did not answer on /healthz within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def take_screenshots(base: str, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    # (file, path, zoom); the image page and /docs are taken by tests/test_web_apidocs.py
    pages = [("review.png", "/review", 1.0), ("catalog.png", "/", 1.0)]
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            for name, path, zoom in pages:
                page.goto(base + path, wait_until="networkidle")
                page.evaluate(f"document.body.style.zoom = '{zoom}'")
                page.wait_for_function(VISIBLE_IMAGES_LOADED, timeout=60_000)
                page.screenshot(path=str(out / name))
                written.append(out / name)
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("demo", type=Path, help="Output folder of `semcat demo` (holds catalog.db and model.semcat).")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img",
                    help="Folder for the PNGs (default: docs/img).")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable (Debian's by default).")
    args = ap.parse_args(argv)
    db, model = args.demo / "catalog.db", args.demo / "model.semcat"
    missing = [str(p) for p in (db, model) if not p.is_file()]
    if missing:
        print(f"error: expected the output of `semcat demo {args.demo}`; missing {', '.join(missing)}. "
              f"Run `semcat demo {args.demo}` first.", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="semcat-shots-") as home:
        server = start_server(f"sqlite:///{db.resolve()}", model, port, Path(home))
        try:
            for path in take_screenshots(f"http://127.0.0.1:{port}", args.out, args.chromium):
                print(path)
        finally:
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
