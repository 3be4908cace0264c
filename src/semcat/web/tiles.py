"""The viewer's tiles: ``/tiles/<sha>/info.json`` (size and levels) and ``/tiles/<sha>/<level>/<x>_<y>.png``.

A tile is rendered only from bytes whose hash matched the catalogue (``browse.verified_source``,
so a swapped file is refused as the file and thumbnail routes refuse it), inside one of the
server's decode slots (``serve --max-decodes``), and a whole level at a time
(:mod:`semcat.web.pyramid`): the other tiles of the level are then cache hits. One lock per
(image, level) makes the dozen tiles a browser asks for at once wait for one render instead of
starting a dozen. Levels and tiles outside the image are 404 before any file name is made.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi import HTTPException, Request
from fastapi.responses import Response

from semcat.errors import ImageReadError
from semcat.scalebar import MAX_BAR_PX, steps
from semcat.web.browse import DECODE_WAIT_S, verified_source
from semcat.web.context import FastJSONResponse, check_hash, state
from semcat.web.pyramid import Pyramid, cached_tile, load_pyramid, make_pyramid, render_level, tile_path

MAX_LEVEL = 40
MAX_INDEX = 1 << 24
"""Bounds checked before the cache is looked at: a 2**40-pixel image has fewer levels and tiles."""
_LOCKS = tuple(threading.Lock() for _ in range(64))
_INFO = -1  # the lock "level" of making the pyramid itself
T = TypeVar("T")


@contextmanager
def _held(lock: threading.Lock | threading.BoundedSemaphore, busy: str) -> Iterator[None]:
    """``lock`` held, or 503 after ``DECODE_WAIT_S``: a client waits for a render, not forever."""
    if not lock.acquire(timeout=DECODE_WAIT_S):
        raise HTTPException(503, f"busy {busy}: try again in a moment")
    try:
        yield
    finally:
        lock.release()


def _lock(sha: str, level: int) -> threading.Lock:
    return _LOCKS[hash((sha, level)) % len(_LOCKS)]


def _catalogued(request: Request, sha256: str) -> str:
    sha = check_hash(sha256)
    if state(request).catalog.file_candidates(sha)[0] is None:
        raise HTTPException(404, f"no catalogued image has the hash {sha}")
    return sha


def _rendered(request: Request, sha: str, render: Callable[[bytes, str, int], T]) -> T:
    """``render(bytes, file name, decode budget)`` of the verified file, in a decode slot; 422 when
    the bytes cannot be decoded."""
    st = state(request)
    path, f = verified_source(request, sha)
    with f:
        data = f.read()
    with _held(st.decodes, "decoding other images"):
        try:
            return render(data, path.name, st.settings.max_decode_bytes)
        except ImageReadError as exc:
            raise HTTPException(422, f"cannot render the image: {exc.problem}") from None


def _pyramid(request: Request, sha: str) -> Pyramid:
    pyramid = load_pyramid(sha)
    if pyramid is None:
        with _held(_lock(sha, _INFO), "preparing this image"):
            pyramid = load_pyramid(sha) or _rendered(
                request, sha, lambda data, name, budget: make_pyramid(data, name, sha, max_decode_bytes=budget))
    return pyramid


def tile_info(request: Request, sha256: str) -> Response:
    """Size, tile side and number of levels of an image's tile pyramid (level 0: one tile; the
    last: full resolution), made on first use; and the scale bar's round lengths (``semcat.scalebar``)."""
    sha = _catalogued(request, sha256)
    body = {**_pyramid(request, sha).public(), "scale_bar": {"max_px": MAX_BAR_PX, "steps": steps()}}
    return FastJSONResponse(body, headers={"Cache-Control": "private, max-age=86400"})


def tile(request: Request, sha256: str, level: int, x: int, y: int) -> Response:
    """One PNG tile of a level of the image (data bar kept, one contrast stretch for all tiles),
    rendered with the rest of its level on first use and cached by content hash."""
    sha = _catalogued(request, sha256)
    if not (level <= MAX_LEVEL and x < MAX_INDEX and y < MAX_INDEX):
        raise HTTPException(404, f"no tile {level}/{x}_{y}: past the largest possible image")
    path = tile_path(sha, level, x, y)
    png = cached_tile(path)
    if png is None:
        pyramid = _pyramid(request, sha)
        if not pyramid.has(level, x, y):
            detail = f"no tile {level}/{x}_{y}: the image has levels 0 to {pyramid.levels - 1}"
            if 0 <= level < pyramid.levels:
                nx, ny = pyramid.grid(level)
                detail += f" and level {level} has tiles 0_0 to {nx - 1}_{ny - 1}"
            raise HTTPException(404, detail) from None
        with _held(_lock(sha, level), "rendering this level"):
            png = cached_tile(path) or _rendered(  # another request may have rendered it meanwhile
                request, sha, lambda data, name, budget: render_level(
                    data, name, sha, pyramid, level, max_decode_bytes=budget, want=(x, y)))
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=86400", "ETag": f'"{sha}-{level}-{x}-{y}"'})
