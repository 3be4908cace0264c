"""Deep-zoom tile pyramids of catalogued images: the image page's zoom to full resolution.

Level 0 is the whole image in one tile; each level doubles the resolution and the last is the
image's own pixels. A level is made in one pass over the file: its bands of rows
(:func:`semcat.images.image_bands`) are block-averaged by the level's factor as they arrive
(:func:`semcat.large_decode.reduced_bands`) and cut into PNG tiles a row of tiles at a time, so a
pass holds one band and one row of tiles whatever the image's size, and no tile request decodes
the file again once its level is cached. All tiles of an image share one contrast stretch (that
of the first level made whose longer side is ≤ ``STRETCH_SIDE``), so 16-bit images look right
and levels match when zooming. The data bar is kept: it is part of the image operators know.

Tiles live next to the thumbnails: ``<thumbs>/<sha[:2]>/<sha>-tiles/<level>/<x>_<y>.png`` with
``pyramid.json`` (size, levels, stretch) written last; every path is built from the content hash
and integers only. Files are written atomically (not fsynced: a tile cut short by a power loss is
seen by its missing PNG trailer and made again) and never edited; a full disk still serves.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from semcat._io import atomic_write_bytes
from semcat._storage import storage_problem
from semcat.web.thumbs import default_thumb_dir, encode_png, stretch_limits, stretched

__all__ = ["TILE", "Pyramid", "cached_tile", "load_pyramid", "make_pyramid", "render_level", "tile_path"]

TILE = 256
"""Side of a tile in pixels of its level (edge tiles are smaller)."""
STRETCH_SIDE = 1024
"""Longer side of the level the contrast stretch is taken from (and made with the pyramid)."""
INFO_NAME = "pyramid.json"
PNG_END = b"IEND\xaeB`\x82"
"""Last bytes of every PNG: a tile without them was cut short."""


@dataclass(frozen=True)
class Pyramid:
    """The levels of one image: ``width`` x ``height`` pixels, tiles of ``tile`` pixels, and the
    stretch ``lo``..``hi`` (in the samples' own units) every tile is drawn with."""

    width: int
    height: int
    lo: float
    hi: float
    tile: int = TILE

    @property
    def levels(self) -> int:
        """Number of levels: the last one is the image's own pixels, level 0 fits in one tile."""
        n = 1
        while self.tile << (n - 1) < max(self.width, self.height):
            n += 1
        return n

    def factor(self, level: int) -> int:
        """Image pixels per level pixel along each side: 1 at the last level, doubling down to 0."""
        return 1 << (self.levels - 1 - level)

    def size(self, level: int) -> tuple[int, int]:
        """(width, height) of ``level`` in its own pixels."""
        k = self.factor(level)
        return -(-self.width // k), -(-self.height // k)

    def grid(self, level: int) -> tuple[int, int]:
        """(columns, rows) of tiles of ``level``."""
        w, h = self.size(level)
        return -(-w // self.tile), -(-h // self.tile)

    def has(self, level: int, x: int, y: int) -> bool:
        """True for a tile that exists: anything else is a 404, never a file name."""
        if not 0 <= level < self.levels:
            return False
        nx, ny = self.grid(level)
        return 0 <= x < nx and 0 <= y < ny

    def stretch_level(self) -> int:
        """The finest level whose longer side is ≤ ``STRETCH_SIDE`` (the stretch is taken there)."""
        return max(lv for lv in range(self.levels) if max(self.size(lv)) <= STRETCH_SIDE)

    def public(self) -> dict[str, int]:
        """What the viewer needs (the stretch stays on the server)."""
        return {"width": self.width, "height": self.height, "tile": self.tile, "levels": self.levels}


def tile_dir(sha256: str, root: Path | None = None) -> Path:
    return (root or default_thumb_dir()) / sha256[:2] / f"{sha256}-tiles"


def tile_path(sha256: str, level: int, x: int, y: int, root: Path | None = None) -> Path:
    """Where a tile is cached (``sha256`` already checked to be 64 hex digits by the caller)."""
    return tile_dir(sha256, root) / str(int(level)) / f"{int(x)}_{int(y)}.png"


def load_pyramid(sha256: str, root: Path | None = None) -> Pyramid | None:
    """The pyramid made earlier for this image, or None (not made yet, or unreadable: make it again)."""
    try:
        data = json.loads((tile_dir(sha256, root) / INFO_NAME).read_text())
        return Pyramid(**{k: data[k] for k in ("width", "height", "lo", "hi", "tile")})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_pyramid(data: bytes, name: str | Path, sha256: str, *, max_decode_bytes: int,
                 root: Path | None = None) -> Pyramid:
    """Decode the stretch level, take the stretch from it, write its tiles and every coarser
    level's, then ``pyramid.json``. Raises ``semcat.errors.ImageReadError``."""
    from semcat.images import image_bands
    from semcat.large_decode import reduced_bands

    (rows, cols), bands = image_bands(data, name, max_decode_bytes=max_decode_bytes)
    shape = Pyramid(cols, rows, 0.0, 0.0)
    level = shape.stretch_level()
    img = np.concatenate(list(reduced_bands(bands, rows, cols, shape.factor(level), name)))
    pyramid = Pyramid(cols, rows, *stretch_limits(img))
    while True:
        for y, strip in _strips([img], pyramid.tile):
            _write_row(pyramid, sha256, level, y, strip, root)
        if level == 0:
            break
        img = np.concatenate(list(reduced_bands([img], *img.shape, 2, name)))
        level -= 1
    _save(tile_dir(sha256, root) / INFO_NAME, json.dumps(asdict(pyramid)).encode())
    return pyramid


def render_level(data: bytes, name: str | Path, sha256: str, pyramid: Pyramid, level: int, *,
                 max_decode_bytes: int, want: tuple[int, int], root: Path | None = None) -> bytes:
    """Write every tile of ``level`` in one pass over the file; the PNG of tile ``want`` (x, y).
    Raises ``semcat.errors.ImageReadError``."""
    from semcat.images import image_bands
    from semcat.large_decode import reduced_bands

    (rows, cols), bands = image_bands(data, name, max_decode_bytes=max_decode_bytes)
    wanted = b""
    for y, strip in _strips(reduced_bands(bands, rows, cols, pyramid.factor(level), name), pyramid.tile):
        row = _write_row(pyramid, sha256, level, y, strip, root)
        if y == want[1]:
            wanted = row[want[0]]
    return wanted


def _strips(parts: Iterable[np.ndarray], tile: int) -> Iterator[tuple[int, np.ndarray]]:
    """(tile row, its ``tile`` rows of pixels) from bands of rows of any height, in order; views of
    the bands where a strip lies in one, so a pass holds about one band."""
    held: np.ndarray | None = None  # fewer than ``tile`` rows, waiting for the next band
    y = 0
    for part in parts:
        start = 0
        if held is not None:
            start = tile - len(held)
            held = np.concatenate([held, part[:start]])
            if len(held) < tile:
                continue
            yield y, held
            y, held = y + 1, None
        for top in range(start, len(part) - tile + 1, tile):
            yield y, part[top:top + tile]
            y += 1
        rest = part[start + (len(part) - start) // tile * tile:]
        if len(rest):
            held = rest
    if held is not None:
        yield y, held


def _write_row(pyramid: Pyramid, sha256: str, level: int, y: int, strip: np.ndarray,
               root: Path | None) -> list[bytes]:
    """Encode and cache one row of tiles; their PNGs."""
    gray8 = stretched(strip, pyramid.lo, pyramid.hi)
    t = pyramid.tile
    pngs = [encode_png(gray8[:, x:x + t]) for x in range(0, gray8.shape[1], t)]
    for x, png in enumerate(pngs):
        _save(tile_path(sha256, level, x, y, root), png)
    return pngs


def cached_tile(path: Path) -> bytes | None:
    """A cached tile's PNG, or None when absent or cut short (tiles are written without fsync)."""
    try:
        png = path.read_bytes()
    except FileNotFoundError:
        return None
    return png if png.endswith(PNG_END) else None


def _save(path: Path, data: bytes) -> None:
    """Cache a file; a full or read-only cache folder only costs the next request a render.
    Not fsynced: a level is hundreds of tiles, and a tile lost to a power cut is made again."""
    try:
        atomic_write_bytes(path, data, durable=False)
    except OSError as exc:
        if storage_problem(exc) is None:
            raise
