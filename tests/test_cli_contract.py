"""The command line's contract, for every command: a problem is one ``error:`` line on stderr, never
a traceback or a boxed usage text, and the exit code says what kind of problem it was.

- 2 (usage): an unknown option, a path named on the command line that does not exist (a missing
  image, folder or model file), a catalogue that does not exist where the command does not create one;
- 1 (failed work): a folder without class sub-folders, a file that is not a model; empty input
  (one ``warning:`` line instead of the error line).

``CASES`` lists every command; a new command fails ``test_every_command_has_cases`` until it is added.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_docs import COMMANDS
from typer.testing import CliRunner

from semcat.cli import app

MISSING = "/nonexistent/semcat-contract/thing"
USAGE, FAILED = 2, 1

# Placeholders: {missing} a path that does not exist, {db} a SQLite catalogue that does not exist
# ({new_db} another, for the commands that may create one),
# {model} the demo's model (a copy), {junk} a file that is not a model, {flat} a folder of images
# without class sub-folders, {empty} an empty folder, {images} a folder with a few images.
CASES: dict[str, dict[str, tuple[str, int]]] = {
    "synth": {"bad option": ("synth {empty} --shape 12", USAGE)},
    "dataset summary": {"missing path": ("dataset summary {missing}", USAGE),
                        "no classes": ("dataset summary {empty}", FAILED)},
    "inspect": {"missing path": ("inspect {missing}", USAGE), "empty input": ("inspect {empty}", FAILED)},
    "backbones": {"no match": ("backbones zzz-none*", FAILED)},
    "features": {"missing path": ("features {missing}", USAGE), "empty input": ("features {empty}", FAILED)},
    "quantize": {"missing path": ("quantize --calibration {missing}", USAGE)},
    "train": {"missing path": ("train {missing}", USAGE), "no classes": ("train {flat}", FAILED),
              "missing catalog": ("train --from-catalog {db}", USAGE)},
    "evaluate": {"missing model": ("evaluate {missing} {images}", USAGE),
                 "not a model": ("evaluate {junk} {images}", FAILED),
                 "no classes": ("evaluate {model} {empty}", FAILED)},
    "compare": {"missing path": ("compare {missing}", USAGE), "no classes": ("compare {flat}", FAILED)},
    "classify": {"missing model": ("classify {missing} {images}", USAGE),
                 "missing path": ("classify {model} {missing}", USAGE),
                 "not a model": ("classify {junk} {images}", FAILED),
                 "empty input": ("classify {model} {empty}", FAILED)},
    "calibrate": {"missing model": ("calibrate {missing} {images}", USAGE),
                  "not a model": ("calibrate {junk} {images}", FAILED),
                  "no classes": ("calibrate {model} {flat}", FAILED)},
    "report": {"missing model": ("report {missing}", USAGE), "not a model": ("report {junk}", FAILED)},
    "ingest": {"missing path": ("ingest {missing} --db {new_db}", USAGE),
               "missing model": ("ingest {images} --model {missing} --db {new_db}", USAGE),
               "not a model": ("ingest {images} --model {junk} --db {new_db}", FAILED)},
    "watch": {"missing path": ("watch {missing} --db {new_db}", USAGE),
              "missing model": ("watch {images} --model {missing} --db {new_db}", USAGE)},
    "search": {"missing catalog": ("search --db {db}", USAGE)},
    "similar": {"missing catalog": ("similar abc123 --db {db}", USAGE)},
    "export": {"missing catalog": ("export --db {db}", USAGE)},
    "label": {"missing catalog": ("label abc123 Nanowires --db {db}", USAGE)},
    "tag": {"missing catalog": ("tag abc123 x --db {db}", USAGE)},
    "stats": {"missing catalog": ("stats --db {db}", USAGE)},
    "serve": {"missing model": ("serve --model {missing} --db {new_db}", USAGE)},
    "align train": {"missing path": ("align train {missing} {images}", USAGE)},
    "align score": {"missing model": ("align score {missing} {images}", USAGE),
                    "not a model": ("align score {junk} {images}", FAILED)},
    "align eval": {"missing path": ("align eval {missing}", USAGE), "no truth.csv": ("align eval {images}", FAILED)},
    "demo": {"bad option": ("demo {empty} --per-class 1", USAGE)},
    "duplicates": {"missing path": ("duplicates {missing}", USAGE), "missing catalog": ("duplicates --db {db}", USAGE),
                   "empty input": ("duplicates {empty} --no-features", FAILED)},
    "category add": {"bad name": ("category add {bad_name} --db {new_db}", USAGE)},
    "category list": {"missing catalog": ("category list --db {db}", USAGE)},
    "queue": {"missing catalog": ("queue --db {db}", USAGE)},
    "doctor": {"bad option": ("doctor --format yaml", USAGE)},
    "retrain": {"missing catalog": ("retrain --db {db}", USAGE), "missing model": ("retrain --model {missing}", USAGE)},
    "spark pack-env": {"bad option": ("spark pack-env {missing} --compress-level 12", USAGE)},
}


def test_every_command_has_cases() -> None:
    assert sorted(CASES) == sorted(COMMANDS), "add the new command's error cases to CASES"


@pytest.fixture(scope="module")
def places(demo_output: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("contract")
    images, flat, empty = root / "images", root / "flat", root / "empty"
    for folder in (images, flat, empty):
        folder.mkdir()
    for i, src in enumerate(sorted((demo_output / "incoming").rglob("*.tif"))[:3]):
        shutil.copy(src, images / f"{i}.tif")
        shutil.copy(src, flat / f"{i}.tif")
    junk = root / "junk.semcat"
    junk.write_bytes(b"not a model\n")
    model = root / "model.semcat"
    shutil.copy(demo_output / "model.semcat", model)
    return {"missing": MISSING, "db": f"sqlite:///{root / 'no-such-catalog.db'}",
            "new_db": f"sqlite:///{root / 'created.db'}", "model": str(model),
            "junk": str(junk), "flat": str(flat), "empty": str(empty), "images": str(images),
            "bad_name": "x" * 65}


PARAMS = [pytest.param(command, case, argv, code, id=f"{command}: {case}")
          for command, cases in CASES.items() for case, (argv, code) in cases.items()]


@pytest.mark.parametrize("command, case, argv, code", PARAMS)
def test_a_problem_is_one_error_line_and_the_documented_exit_code(
        places: dict[str, str], command: str, case: str, argv: str, code: int) -> None:
    args = [word.format(**places) for word in argv.split()]
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"semcat {argv}: traceback\n{result.stderr}")
    kind = "warning: " if case == "empty input" else "error: "  # empty input is a warning, and exit 1
    lines = [line for line in result.stderr.splitlines() if line.startswith(kind)]
    assert len(lines) == 1, f"semcat {argv}: expected one {kind!r} line, got:\n{result.stderr}"
    assert kind == "error: " or "error: " not in result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr and "Usage:" not in result.stderr
    assert result.exit_code == code, f"semcat {argv}: exit {result.exit_code}, expected {code}\n{result.stderr}"
    assert "{db}" not in argv or not Path(places["db"].removeprefix("sqlite:///")).exists(), "a catalog was created"


def test_usage_errors_name_the_help_to_read() -> None:
    result = CliRunner().invoke(app, ["search", "--no-such-option"])
    assert result.exit_code == USAGE
    assert result.stderr.strip() == "error: No such option: --no-such-option (see `semcat search --help`)"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example_and_no_bool_placeholder(command: str) -> None:
    result = CliRunner().invoke(app, [*command.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"semcat {command} " in result.stdout, f"`semcat {command} --help` has no example"
    assert "<bool>" not in result.stdout
