"""The catalog: a searchable SQLite/PostgreSQL database of SEM images, predictions and labels."""
from __future__ import annotations

from semcat.catalog.core import Catalog, open_catalog
from semcat.catalog.db import CatalogError, normalize_url
from semcat.catalog.ingest import IngestSummary
from semcat.catalog.records import ImageRecord

__all__ = ["Catalog", "CatalogError", "ImageRecord", "IngestSummary", "normalize_url", "open_catalog"]
