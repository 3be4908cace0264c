"""Export the catalog as JSON or CSV, and per-image JSON sidecars; originals are never touched."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from semcat._io import atomic_write_text
from semcat.catalog.records import ImageRecord

SIDECAR_SUFFIX = ".semcat.json"

CSV_COLUMNS = [
    "sha256", "path", "category", "label", "label_source", "top1", "score", "decision", "candidates",
    "model_id", "format", "width", "height", "bit_depth", "file_size", "magnification", "pixel_size_m",
    "high_voltage_v", "working_distance_m", "detector", "instrument", "acquired", "ingested", "tags",
    "measurements", "paths",
]


def csv_row(rec: ImageRecord) -> dict[str, Any]:
    """Flat row: lists joined with '|', measurements as ``name=value`` pairs."""
    d = rec.to_dict()
    row = {c: d.get(c) for c in CSV_COLUMNS}
    row.update(
        top1=rec.top[0][0] if rec.top else None, score=rec.score,
        candidates="|".join(rec.candidates), tags="|".join(rec.tags), paths="|".join(rec.paths),
        measurements="|".join(f"{k}={v:g}" for k, v in sorted(rec.measurements.items())),
    )
    return {k: "" if v is None else v for k, v in row.items()}


def write_records(records: Iterable[ImageRecord], out: IO[str], fmt: str = "json") -> int:
    """Stream records to ``out`` as a JSON array, JSON Lines or CSV (header included); returns how many."""
    n = 0
    if fmt == "csv":
        w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for rec in records:
            w.writerow(csv_row(rec))
            n += 1
    elif fmt == "json":
        out.write("[")
        for rec in records:
            out.write(("," if n else "") + "\n" + json.dumps(rec.to_dict(), ensure_ascii=False))
            n += 1
        out.write("\n]\n" if n else "]\n")
    elif fmt == "jsonl":
        for rec in records:
            out.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    else:
        raise ValueError(f"export format must be 'json', 'jsonl' or 'csv'; got {fmt!r}")
    return n


def sidecar_document(rec: ImageRecord) -> str:
    """The sidecar text for one image (the catalog record plus a format marker)."""
    return json.dumps({"semcat_sidecar": 1, **rec.to_dict()}, indent=2, ensure_ascii=False) + "\n"


def write_sidecars(records: Iterable[ImageRecord], *, out_dir: Path | None = None,
                   next_to_images: bool = False) -> list[Path]:
    """Write one JSON sidecar per image; returns the files written.

    ``next_to_images``: ``IMAGE.tif.semcat.json`` beside every existing copy of the image.
    ``out_dir``: ``NAME.semcat.json`` in one folder (``NAME.<hash12>.semcat.json`` when two
    different images share a file name).
    """
    if (out_dir is None) == (not next_to_images):
        raise ValueError("give exactly one of out_dir or next_to_images=True")
    written: list[Path] = []
    used: dict[str, str] = {}
    for rec in records:
        text = sidecar_document(rec)
        if next_to_images:
            for p in rec.paths:
                if Path(p).exists():
                    target = Path(p + SIDECAR_SUFFIX)
                    atomic_write_text(target, text)
                    written.append(target)
            continue
        name = Path(rec.path or (rec.paths[0] if rec.paths else rec.sha256)).name
        if used.setdefault(name, rec.sha256) != rec.sha256:
            name = f"{name}.{rec.sha256[:12]}"
        target = out_dir / f"{name}{SIDECAR_SUFFIX}"
        atomic_write_text(target, text)
        written.append(target)
    return written
