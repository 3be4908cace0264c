"""Image records and the per-image lookups, on SQLite and PostgreSQL: every part of a record comes
back right (latest label, notes in order, tags, measurements, present paths first), and an unknown
hash is refused the same way whether it was looked up first or found missing by the query itself."""
from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from test_catalog_helpers import catalog_url, write_metadata_set  # noqa: F401 - fixture

from semcat.catalog import CatalogError, open_catalog
from semcat.catalog.ingest import _store_prediction
from semcat.catalog.schema import Label, utcnow
from semcat.catalog.search import ORDERS, Filters, search_query
from semcat.model import Prediction

UNKNOWN = "ab" * 32


def test_records_carry_every_part(catalog_url: str, tmp_path: Path) -> None:  # noqa: F811
    files = write_metadata_set(tmp_path / "a")
    copy = tmp_path / "b" / "copy_of_low_a.tif"
    copy.parent.mkdir()
    shutil.copy(files[0], copy)
    with open_catalog(catalog_url) as cat:
        cat.ingest([tmp_path / "a", tmp_path / "b"], progress=False)
        by_name = {Path(r.path).name: r.sha256 for r in cat.search(limit=10)}
        a, b = by_name["low_a.tif"], by_name["low_b.tif"]
        files[0].unlink()
        cat.mark_missing([files[0]])
        with cat.db.write() as conn:
            _store_prediction(conn, a, "m1", Prediction(path="", sha256=a, top=[("Tips", 0.7), ("Fibres", 0.2)],
                                                        decision="suggest", candidates=["Tips"], ood_score=None,
                                                        error=None), utcnow())
        cat.confirm(a[:8], "Tips", who="ana")
        cat.confirm(a, "Fibres", who="ben")  # the latest label wins
        cat.add_note(a, "first", who="ana")
        cat.add_note(a, "second", who="ben")
        for tag in ("zeta", "alpha"):
            cat.add_tag(a, tag)
        cat.set_measurement(a, "coherency", 0.8, source="test")
        cat.set_measurement(a, "angle", 12.5, source="test")

        records = cat.records([b, UNKNOWN, a, b])
        assert [r.sha256 for r in records] == [b, a]  # given order, unknown left out, each once
        rb, ra = records
        assert (rb.label, rb.label_who, rb.label_time, rb.tags, rb.notes, rb.measurements) == (None, None, None, [], [], {})
        assert rb.paths == [str(files[1])] and rb.path == str(files[1])

        assert (ra.label, ra.label_who, ra.label_source, ra.category) == ("Fibres", "ben", "human", "Fibres")
        with cat.db.read() as conn:
            latest = conn.execute(Label.__table__.select().where(Label.who == "ben")).one()
        assert ra.label_time == latest.created and isinstance(ra.label_time, datetime)
        assert [(n["text"], n["who"]) for n in ra.notes] == [("first", "ana"), ("second", "ben")]
        assert all(isinstance(n["time"], datetime) for n in ra.notes) and ra.notes[0]["time"] <= ra.notes[1]["time"]
        assert ra.tags == ["alpha", "zeta"]
        assert ra.measurements == {"coherency": 0.8, "angle": 12.5}
        assert ra.paths == [str(copy), str(files[0])] and ra.path == str(copy)  # the missing path last
        assert ra.metadata and ra.magnification == 1_000

        assert (ra.model_id, ra.top, ra.decision, ra.candidates) == ("m1", [("Tips", 0.7), ("Fibres", 0.2)], "suggest", ["Tips"])
        history = cat.history(a)
        assert [(e["kind"], e.get("label"), e.get("who")) for e in history] == [
            ("prediction", None, None), ("label", "Tips", "ana"), ("label", "Fibres", "ben")]
        assert history[0]["top"] == [["Tips", 0.7], ["Fibres", 0.2]] and history[0]["candidates"] == ["Tips"]
        assert history[2]["time"] == ra.label_time.isoformat()
        assert cat.get(a[:10]) == cat.get(a) == ra
        assert cat.get(UNKNOWN) is None and cat.get(UNKNOWN[:10]) is None

        # a search page (on PostgreSQL one statement with its records and count) holds what the hash query finds
        for order in ORDERS:
            for filters in ({}, {"mag_min": 1_500}):
                with cat.db.read() as conn:
                    want = list(conn.execute(search_query(Filters(**filters), limit=2, offset=1, order=order)).scalars())
                assert [r.sha256 for r in cat.search(**filters, limit=2, offset=1, order=order)] == want, (order, filters)
                page, total = cat.search_page(**filters, limit=2, offset=1, order=order, count_at_most=3)
                assert [r.sha256 for r in page] == want and total == min(3, cat.count(**filters))
                assert cat.search_page(**filters, limit=2, offset=50, order=order) == ([], cat.count(**filters))


def test_unknown_hash_is_refused_by_every_lookup(catalog_url: str, tmp_path: Path) -> None:  # noqa: F811
    write_metadata_set(tmp_path / "a")
    with open_catalog(catalog_url) as cat:
        cat.ingest([tmp_path / "a"], progress=False)
        known = cat.search(limit=1)[0].sha256
        calls = [cat.history, cat.duplicates_of, cat.similar, lambda sha: cat.confirm(sha, "Tips", who="ana")]
        for call in calls:
            for unknown in (UNKNOWN, UNKNOWN[:12]):  # found missing by the query itself / by the lookup first
                with pytest.raises(CatalogError, match="no image with hash"):
                    call(unknown)
        assert cat.history(known) == [] and cat.duplicates_of(known) == []
        with pytest.raises(CatalogError, match="no stored features"):
            cat.similar(known)
        assert cat.count(confirmed=True) == 0
