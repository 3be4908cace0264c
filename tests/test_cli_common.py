"""The CLI's output helpers: outside text printed as data, environment failures as one line."""
from __future__ import annotations

import errno

import pytest

from semcat.commands._common import environment_problem, shown


@pytest.mark.parametrize("raw, expected", [
    ("a\nerror: b", "a\\nerror: b"),
    ("x\x1b[31m", "x\\x1b[31m"),
    ("tab\there\r", "tab\\there\\r"),
    ("abc\u202egpj", "abc\\u202egpj"),
    ("line\u2028sep", "line\\u2028sep"),
    (b"caf\xe9".decode("utf-8", "surrogateescape"), "caf\\xe9"),
    ("[/] :x: ümlaut 日本", "[/] :x: ümlaut 日本"),  # markup and ordinary text stay as they are
])
def test_shown_escapes_what_could_forge_or_hide_output(raw: str, expected: str) -> None:
    assert shown(raw) == expected
    assert shown(expected) == expected  # escaping twice changes nothing
    shown(raw).encode("utf-8")  # never an unencodable surrogate


def test_environment_problems_are_one_line_and_bugs_are_not_hidden() -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    full = OSError(errno.ENOSPC, "No space left on device", "/data/out.json")
    assert environment_problem(full) == "/data/out.json: No space left on device"
    db = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full\nmore"))
    assert environment_problem(db) == "the catalog database failed: database or disk is full"
    assert environment_problem(ValueError("a bug")) is None
    assert environment_problem(OSError(errno.ENOENT, "No such file")) is None


def test_one_writer_for_every_row_format() -> None:
    import csv
    import io
    import json

    from semcat.commands._common import Format, write_rows

    rows = [{"path": "a\nb.tif", "top": [["X", 0.5]], "error": None}, {"path": "c.tif", "top": [], "error": "bad"}]
    out = {fmt: io.StringIO() for fmt in Format if fmt is not Format.table}
    for fmt, buf in out.items():
        assert write_rows(iter(rows), fmt, buf) == 2
    assert json.loads(out[Format.json].getvalue()) == rows
    assert [json.loads(line) for line in out[Format.jsonl].getvalue().splitlines()] == rows
    parsed = list(csv.DictReader(io.StringIO(out[Format.csv].getvalue())))
    assert parsed[0] == {"path": "a\nb.tif", "top": '[["X", 0.5]]', "error": ""} and parsed[1]["error"] == "bad"
    empty = io.StringIO()
    assert write_rows(iter([]), Format.json, empty) == 0 and json.loads(empty.getvalue()) == []
    header = io.StringIO()
    write_rows(iter([]), Format.csv, header, columns=["path", "error"])
    assert header.getvalue() == "path,error\n"


def test_counts_of_one_are_singular() -> None:
    from semcat.units import plural

    assert [plural(n, "images") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
