"""CLI of the catalog: --help, a happy path and an error case per command; export and sidecars."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from test_catalog_helpers import METADATA_SET, write_metadata_set
from typer.testing import CliRunner

from semcat._io import sha256_file
from semcat.catalog import open_catalog
from semcat.cli import app

COMMANDS = ["ingest", "watch", "search", "similar", "export", "label", "tag", "stats"]


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture()
def ingested(tmp_path: Path) -> tuple[Path, str]:
    """Five FEI TIFFs (+ one broken file) ingested into a fresh SQLite catalog through the CLI."""
    folder = tmp_path / "images"
    write_metadata_set(folder / "fei")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = run("ingest", folder, "--db", db, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "5 new" in result.output
    return folder, db


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_ingest_reports_errors_and_exit_code(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_metadata_set(folder)
    (folder / "zero.tif").write_bytes(b"")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = run("ingest", folder, "--db", db)
    assert result.exit_code == 1
    assert "zero.tif" in result.output and "1 failed" in result.output and "5 new" in result.output
    again = run("ingest", folder, "--db", db)
    assert "0 new, 5 known" in again.output


def test_ingest_bad_db_url(tmp_path: Path) -> None:
    result = run("ingest", tmp_path, "--db", "mysql://x/y")
    assert result.exit_code == 2 and "unsupported catalog URL" in result.output


def test_ingest_missing_folder(tmp_path: Path) -> None:
    assert run("ingest", tmp_path / "nope").exit_code == 2


def test_search_formats_and_filters(ingested: tuple[Path, str]) -> None:
    _, db = ingested
    result = run("search", "--db", db, "--mag-min", "10000", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert sorted(r["magnification"] for r in rows) == sorted(m for _, m, _, _ in METADATA_SET if m >= 10_000)
    result = run("search", "--db", db, "--from", "2024-01-01", "--to", "2024-12-31", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {Path(r["path"]).name for r in rows} == {"mid_a.tif", "mid_b.tif"}
    table = run("search", "--db", db, "--text", "high")
    assert "high.tif" in table.stdout and "1 of 1" in table.output


def test_search_bad_filters(ingested: tuple[Path, str]) -> None:
    _, db = ingested
    result = run("search", "--db", db, "--from", "last tuesday")
    assert result.exit_code == 2 and "expected a date" in result.output
    result = run("search", "--db", db, "--measurement", "coherency")
    assert result.exit_code == 2 and "NAME:MIN:MAX" in result.output
    assert run("search", "--db", db, "--decision", "maybe").exit_code == 2


def test_label_tag_and_search(ingested: tuple[Path, str]) -> None:
    folder, db = ingested
    image = folder / "fei" / "high.tif"
    assert run("label", image, "Tips", "--who", "ana", "--db", db).exit_code == 0
    assert run("tag", sha256_file(image)[:10], "sputtered", "gold", "--db", db).exit_code == 0
    rows = json.loads(run("search", "--db", db, "--confirmed", "--tag", "gold", "--format", "json").stdout)
    assert len(rows) == 1 and rows[0]["label"] == "Tips" and rows[0]["tags"] == ["gold", "sputtered"]
    assert run("tag", image, "gold", "--remove", "--db", db).exit_code == 0
    assert json.loads(run("search", "--db", db, "--tag", "gold", "--format", "json").stdout) == []
    stats = json.loads(run("stats", "--db", db).stdout)
    assert stats["images"] == 5 and stats["confirmed"] == 1


def test_label_unknown_image(ingested: tuple[Path, str]) -> None:
    _, db = ingested
    result = run("label", "ffffffffffff", "Tips", "--db", db)
    assert result.exit_code == 1 and "ingest it first" in result.output
    assert run("tag", "ffffffffffff", "x", "--db", db).exit_code == 1


def test_similar_without_features_says_what_to_do(ingested: tuple[Path, str]) -> None:
    folder, db = ingested
    result = run("similar", folder / "fei" / "low_a.tif", "--db", db)
    assert result.exit_code == 1 and "--model" in result.output


def test_export_json_csv_and_sidecars(ingested: tuple[Path, str], tmp_path: Path) -> None:
    folder, db = ingested
    before = {p: sha256_file(p) for p in (folder / "fei").iterdir()}
    out = tmp_path / "export.json"
    assert run("export", "--db", db, "--out", out).exit_code == 0
    data = json.loads(out.read_text())
    assert len(data) == 5 and {Path(d["path"]).name for d in data} == {n for n, *_ in METADATA_SET}
    rows = list(csv.DictReader(io.StringIO(run("export", "--db", db, "--format", "csv").stdout)))
    assert len(rows) == 5 and all(r["sha256"] and r["magnification"] for r in rows)

    side = tmp_path / "sidecars"
    assert run("export", "--db", db, "--sidecars", side).exit_code == 0
    files = sorted(side.iterdir())
    assert len(files) == 5 and all(f.name.endswith(".tif.semcat.json") for f in files)
    doc = json.loads((side / "high.tif.semcat.json").read_text())
    assert doc["magnification"] == 200_000 and doc["sha256"] == before[folder / "fei" / "high.tif"]

    assert run("export", "--db", db, "--sidecars-next-to-images").exit_code == 0
    assert json.loads((folder / "fei" / "mid_a.tif.semcat.json").read_text())["pixel_size_m"] == pytest.approx(5e-9)
    assert {p: sha256_file(p) for p in before} == before  # originals untouched
    again = run("ingest", folder, "--db", db)  # sidecars are not images
    assert "0 new, 5 known" in again.output


def test_export_conflicting_sidecar_options(ingested: tuple[Path, str], tmp_path: Path) -> None:
    _, db = ingested
    result = run("export", "--db", db, "--sidecars", tmp_path / "s", "--sidecars-next-to-images")
    assert result.exit_code == 2 and "not both" in result.output


def test_sidecar_names_do_not_collide(tmp_path: Path) -> None:
    """Two different images with the same file name get distinct sidecars."""
    from semcat.catalog.export import write_sidecars

    a, b = tmp_path / "a", tmp_path / "b"
    write_metadata_set(a)
    write_metadata_set(b)
    shutil.copy(a / "low_b.tif", b / "low_a.tif")  # same name, different content
    cat = open_catalog(tmp_path / "c.db")
    cat.ingest([a / "low_a.tif", b / "low_a.tif"], progress=False)
    files = write_sidecars(cat.iter_records(), out_dir=tmp_path / "side")
    assert len(files) == 2 and len({f.name for f in files}) == 2
    cat.close()


def test_ingest_spark_engine_needs_a_model(tmp_path: Path) -> None:
    result = run("ingest", tmp_path, "--engine", "spark", "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert result.exit_code == 2 and "--engine spark needs --model" in result.output
