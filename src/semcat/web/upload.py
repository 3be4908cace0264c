"""Upload: drop images, see top-k classes, decision and metadata at once, optionally catalogue them.

Uploaded bytes are size-limited, their type is sniffed from the content (the name is not trusted),
and they are only ever written inside the catalog's storage folder: first to ``.staging/<sha>``,
then, on "add to catalog", moved to ``uploads/<sha[:16]>_<cleaned name>`` and ingested. Names
of files on disk never come from the client except as a cleaned basename.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from semcat._io import atomic_write_bytes, sha256_bytes
from semcat.errors import ImageReadError
from semcat.web.browse import DECODE_WAIT_S
from semcat.web.context import check_hash, is_api, payload, render, state
from semcat.web.security import User, require_reviewer

MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"II*\x00", "TIFF", ".tif"), (b"MM\x00*", "TIFF", ".tif"),
    (b"II+\x00", "TIFF", ".tif"), (b"MM\x00+", "TIFF", ".tif"),  # BigTIFF
    (b"\x89PNG\r\n\x1a\n", "PNG", ".png"), (b"\xff\xd8\xff", "JPEG", ".jpg"), (b"BM", "BMP", ".bmp"),
)
STAGING = ".staging"
UPLOADS = "uploads"
_STAGE_MAX_AGE_S = 24 * 3600


def sniff(data: bytes) -> tuple[str, str] | None:
    """(format, canonical suffix) from the first bytes, or None when it is not an image semcat reads."""
    return next(((fmt, ext) for magic, fmt, ext in MAGIC if data.startswith(magic)), None)


def clean_filename(name: str, suffix: str) -> str:
    """A safe basename: no folders, no leading dots, only ``[A-Za-z0-9._-]``, the sniffed suffix."""
    base = PurePosixPath(name.replace("\\", "/")).name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(base).stem).strip("._")[:80] or "image"
    return f"{stem}{suffix}"


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, refusing anything that would land outside ``root`` (defence in depth)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise HTTPException(400, f"refusing to write outside the storage folder: {path.name!r}")
    return resolved


def _staged(storage: Path, sha: str) -> Path | None:
    return next(iter(sorted((storage / STAGING).glob(f"{sha}.*"))), None)


def _sweep(storage: Path) -> None:
    """Forget staged uploads nobody added within a day."""
    cutoff = time.time() - _STAGE_MAX_AGE_S
    for p in (storage / STAGING).glob("*"):
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            continue


def _analyse(request: Request, name: str, data: bytes) -> dict[str, Any]:
    """Stage one upload and describe it: format, size, metadata, prediction, catalog status."""
    from semcat.images import read_image_bytes

    st = state(request)
    limit = st.settings.max_upload_bytes
    result: dict[str, Any] = {"name": name, "size": len(data), "sha256": None, "error": None}
    if len(data) > limit:
        return {**result, "error": f"too large: {len(data) / 1e6:.1f} MB, the limit is {limit / 1e6:.0f} MB"}
    kind = sniff(data)
    if kind is None:
        return {**result, "error": "not an image: expected TIFF, PNG, JPEG or BMP content "
                                   "(judged from the first bytes; the file name is not trusted)"}
    sha = sha256_bytes(data)
    storage = st.settings.storage
    staged = inside(storage, storage / STAGING / f"{sha}{kind[1]}")
    atomic_write_bytes(staged, data)
    result.update(sha256=sha, format=kind[0])
    if not st.decodes.acquire(timeout=DECODE_WAIT_S):
        staged.unlink(missing_ok=True)
        return {**result, "sha256": None, "error": "busy decoding other images: try again in a moment"}
    try:
        try:
            _, info = read_image_bytes(data, name, max_side=64, max_decode_bytes=st.settings.max_decode_bytes)
        except ImageReadError as exc:
            staged.unlink(missing_ok=True)
            return {**result, "sha256": None, "error": exc.problem}
        meta = info.metadata.to_dict() if info.metadata is not None else {}
        result.update(shape=list(info.shape), bit_depth=info.bit_depth, channels=info.channels,
                      databar_rows=info.databar_rows, pixel_size_m=info.pixel_size_m, metadata=meta)
        model = st.model()
        if model is not None:  # the front door of `semcat classify`: its precision, preprocessing and cache
            from semcat.engines.local import classify

            pred = next(classify(model, [staged], top_k=3))
            result.update(prediction=pred.to_dict())
            if pred.error:
                result["error"] = pred.error
    finally:
        st.decodes.release()
    result["in_catalog"] = st.catalog.get(sha) is not None
    return result


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    await upload.close()
    return data


def upload_page(request: Request) -> Response:
    """The drop zone (GET); results appear on the same page after a POST."""
    return render(request, "upload.html", {"results": [], "limit_mb": state(request).settings.max_upload_bytes / 1e6})


async def upload(request: Request, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Analyse uploaded images (multipart field ``files``): top-k, decision, metadata. Nothing is catalogued yet."""
    st = state(request)
    form = await request.form(max_files=st.settings.max_upload_files)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files or len(files) > st.settings.max_upload_files:
        raise HTTPException(400, f"files: expected 1 to {st.settings.max_upload_files} image files in the "
                                 f"multipart field 'files'; got {len(files)}")
    await run_in_threadpool(_sweep, st.settings.storage)
    results = []
    for f in files:
        data = await _read_limited(f, st.settings.max_upload_bytes)
        results.append(await run_in_threadpool(_analyse, request, f.filename or "upload", data))
    return render(request, "upload.html", {"results": results, "limit_mb": st.settings.max_upload_bytes / 1e6})


def _add(request: Request, sha256: str, name: str) -> dict[str, Any]:
    st = state(request)
    storage = st.settings.storage
    staged = _staged(storage, sha256)
    if staged is None:
        raise HTTPException(404, f"no staged upload with hash {sha256[:12]}…: upload the file again")
    dest = inside(storage, storage / UPLOADS / f"{sha256[:16]}_{clean_filename(name, staged.suffix)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, dest)
    summary = st.catalog.ingest([dest], st.model(), progress=False)
    if summary.failed:
        raise HTTPException(422, f"could not catalogue {dest.name}: {summary.errors[0][1]}")
    return {"image": st.catalog.get(sha256).to_dict(), "stored_as": str(dest)}


async def add_to_catalog(request: Request, sha256: str, user: Annotated[User, Depends(require_reviewer)]) -> Response:
    """Move a staged upload into the storage folder and ingest it (optional field ``name``)."""
    sha = check_hash(sha256)
    data = await payload(request)
    name = data["name"] if isinstance(data.get("name"), str) else "upload"
    result = await run_in_threadpool(_add, request, sha, name)
    if is_api(request):
        return render(request, "upload.html", result)
    return RedirectResponse(f"/images/{sha}", 303)
