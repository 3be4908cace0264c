"""Property-based fuzzing of the image reader and the SEM metadata parser (hypothesis, bounded).

Random bytes and mutated valid TIFF/PNG/JPEG/BMP files go into ``read_image_bytes`` and
``parse_tiff_tags``: only ``ImageReadError`` (reader) or ``None``/``SemMetadata`` (parser) may come
out, never another exception, and no example may take more than a few seconds (no hang).
``SEMCAT_FUZZ_EXAMPLES`` scales the number of examples (default 300 per target).
"""
from __future__ import annotations

import io
import os
import time

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcat.errors import ImageReadError
from semcat.images import read_image_bytes
from semcat.semmeta import SemMetadata, parse_tiff_tags
from semcat.synth import generate_image

EXAMPLES = int(os.environ.get("SEMCAT_FUZZ_EXAMPLES", "300"))
SLOWEST_S = 5.0
_STATS: dict[str, list[float]] = {}
_FAILS: dict[str, int] = {}


def _seeds() -> dict[str, bytes]:
    img = generate_image("Fibres", np.random.default_rng(1), size=48, databar=True)
    fei = "[User]\nDate=01/02/2024\nTime=10:11:12\n[Scan]\nPixelWidth=1e-9\n[Beam]\nHV=5000\n[Image]\nResolutionY=48\n"
    out = {}
    for name, kw in (("tiff", {}), ("tiff16", {}), ("tiff_fei", {"extratags": [(34682, "s", 0, fei, True)]}),
                     ("tiff_zlib", {"compression": "zlib"})):
        buf = io.BytesIO()
        tifffile.imwrite(buf, img.astype(np.uint16) * 257 if name == "tiff16" else img, **kw)
        out[name] = buf.getvalue()
    for ext in (".png", ".jpg", ".bmp"):
        out[ext[1:]] = cv2.imencode(ext, img)[1].tobytes()
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid file with a few byte flips, an insertion, a deletion and/or a truncation."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        i = draw(st.integers(0, len(data) - 1))
        del data[i:i + draw(st.integers(1, 256))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _magic_prefixed() -> st.SearchStrategy[bytes]:
    magics = [b"II*\x00", b"MM\x00*", b"II+\x00", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM"]
    return st.builds(lambda m, rest: m + rest, st.sampled_from(magics), st.binary(max_size=2048))


def _timed(target: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        fn()
    except BaseException:
        _FAILS[target] = _FAILS.get(target, 0) + 1
        raise
    finally:
        dt = time.perf_counter() - t0
        _STATS.setdefault(target, []).append(dt)
        assert dt < SLOWEST_S, f"{target}: one example took {dt:.1f} s (hang?)"


def _read(data: bytes) -> None:
    try:
        img, _ = read_image_bytes(data, "fuzz.bin", max_side=128)
    except ImageReadError as e:
        assert e.problem and "fuzz.bin" in str(e)
        return
    assert img.ndim == 2 and img.dtype == np.float32 and np.isfinite(img).all()


def _parse(data: bytes) -> None:
    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception:  # not a TIFF header at all: the parser is never reached
        return
    with tif:
        meta = parse_tiff_tags(tif)
    assert meta is None or isinstance(meta, SemMetadata)
    if meta is not None:
        meta.to_dict()


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.one_of(st.binary(max_size=4096), _magic_prefixed()))
def test_reader_random_bytes(data: bytes) -> None:
    _timed("read_image_bytes: random bytes", lambda: _read(data))


@FUZZ
@given(mutated())
def test_reader_mutated_files(data: bytes) -> None:
    _timed("read_image_bytes: mutated TIFF/PNG/JPEG/BMP", lambda: _read(data))


@FUZZ
@given(mutated())
def test_metadata_parser_mutated_tiffs(data: bytes) -> None:
    _timed("parse_tiff_tags: mutated TIFFs", lambda: _parse(data))


@pytest.fixture(scope="module", autouse=True)
def _report(figures):
    yield
    for target, times in _STATS.items():
        figures.add(f"fuzz: {target}", inputs=len(times), failures=_FAILS.get(target, 0),
                    p95_ms=1000 * sorted(times)[max(0, int(round(0.95 * len(times))) - 1)],
                    notes=f"hypothesis, derandomized; slowest {1000 * max(times):.0f} ms")
