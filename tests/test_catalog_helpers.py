"""Fixtures and helpers shared by the catalog tests (imported by ``tests/test_catalog*.py``).

``catalog_url`` runs a test on SQLite and on the real PostgreSQL server; each PostgreSQL test
gets its own schema (dropped afterwards), so tests never see each other's rows.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_web_helpers import fresh_pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalog URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    yield from fresh_pg_url(request)


FEI_TEMPLATE = """[User]
Date={date:%m/%d/%Y}
Time={date:%H:%M:%S}
[Beam]
HV=5000
Beam=EBeam
Scan=EScan
[EScan]
PixelWidth={pixel:.6e}
[Image]
Magnification={mag:g}
[System]
SystemType=Quanta 650
"""


def write_fei_tiff(path: Path, *, mag: float, pixel_m: float, acquired: datetime, seed: int, size: int = 64) -> Path:
    """A TIFF carrying FEI/Thermo metadata (tag 34680) as a real microscope writes it."""
    from semcat.synth import generate_image

    img = generate_image("Particles", np.random.default_rng(seed), size=size)
    text = FEI_TEMPLATE.format(date=acquired, pixel=pixel_m, mag=mag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img, extratags=[(34680, "s", 0, text, True)])
    return path


METADATA_SET = [  # (name, magnification, pixel size m, acquired)
    ("low_a.tif", 1_000, 100e-9, datetime(2023, 1, 10, 9, 0)),
    ("low_b.tif", 2_000, 50e-9, datetime(2023, 6, 1, 12, 30)),
    ("mid_a.tif", 20_000, 5e-9, datetime(2024, 2, 29, 8, 15)),
    ("mid_b.tif", 50_000, 2e-9, datetime(2024, 5, 31, 23, 59)),
    ("high.tif", 200_000, 0.5e-9, datetime(2025, 1, 1, 0, 0)),
]


def write_metadata_set(folder: Path, seed: int = 0) -> list[Path]:
    """Five FEI TIFFs with known magnification, pixel size and acquisition date."""
    return [write_fei_tiff(folder / name, mag=mag, pixel_m=px, acquired=when, seed=seed + i)
            for i, (name, mag, px, when) in enumerate(METADATA_SET)]


def table_counts(catalog) -> dict[str, int]:
    """Row counts of every catalog table (to prove that a re-ingest changed nothing)."""
    import sqlalchemy as sa

    from semcat.catalog.schema import Base

    with catalog.db.read() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in Base.metadata.sorted_tables}
