"""Every `semcat ...` line of README.md and docs/**/*.md runs, so the docs cannot drift from the CLI.

The lines are taken from fenced shell blocks (bash, sh, shell, console or unmarked; a leading
``$ `` and ``\\`` continuations are understood) and run in document order, in-process, in one
sandbox folder, as a reader would type them one after the other:

- ``demo-output/`` holds the shared demo (``demo_output`` fixture: 8 images a category, 64 px);
  ``data/`` and ``DATA_DIR`` as a whole argument mean its labelled folder, ``model.semcat`` its
  model; other example folders (``scans/``, ``incoming/``, ``archive/``, ``/data/sem`` ...) hold a
  few small synthetic images. Absolute example paths are taken relative to the sandbox.
- Numbers that only scale the work are capped (``CAPS``: ``--per-class 20`` runs as 4; the demo
  folder exists already, so its ``synth`` adds nothing).
- A line marked ``(needs: KIND)`` in its comment is not run but counted; KIND is one of ``NEEDS``
  (a Spark cluster or a server on another host, a Spark job, a GPU, a command that runs until Ctrl-C, a
  checkpoint file that is not in the repository, minutes of work, a catalogue with confirmed labels).
- Files run in the order README.md, then docs/ by path; what a later file's example needs from an
  earlier one (a model, an alignment set) is in the sandbox from the start.

A line passes when it exits 0 without a traceback (``semcat label`` refusing an unknown category
is the documented exit 1 only before ``semcat category add``, and the README runs them in order).
"""
from __future__ import annotations

import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semcat.cli import app

ROOT = Path(__file__).resolve().parents[1]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
NEEDS = {
    "cluster": "a Spark cluster or a server (PostgreSQL, Spark) on another host",
    "spark": "a Spark job (tests/test_spark.py runs them; each takes 15 s or more)",
    "gpu": "a GPU",
    "foreground": "runs until Ctrl-C (serve, watch)",
    "weights": "a checkpoint file that is not in the repository",
    "minutes": "minutes of work (e.g. quantising a backbone)",
    "labels": "a catalogue with confirmed labels, two or more a class (semcat retrain)",
}
MARKER = re.compile(r"\(needs: ([a-z]+)\)")
CAPS = {"--per-class": 4, "--size": 64, "--runs": 1, "--alignment": 12, "--blends": 6, "--synthetic": 20}
SHAPE_CAP = "96x128"
LABELLED = {"data/", "data", "DATA_DIR"}


@dataclass(frozen=True)
class DocLine:
    """One ``semcat`` command line of the docs: where it is, its text, and what it needs if marked."""

    where: str
    text: str
    needs: str | None


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def doc_lines(path: Path) -> list[DocLine]:
    """The ``semcat`` lines of the fenced shell blocks of one Markdown file."""
    lines: list[DocLine] = []
    block: str | None = None
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)", raw)
        if fence:
            block = None if block is not None else fence.group(1)
            pending = ""
            continue
        if block not in SHELL_BLOCKS:
            continue
        text = raw.strip()
        if not pending:
            start = number
            text = text.removeprefix("$ ")
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text, pending = pending + text, ""
        if _command_word(text) == "semcat":
            marked = MARKER.search(text)
            if marked and marked.group(1) not in NEEDS:
                raise AssertionError(f"{path.name}:{start}: unknown marker (needs: {marked.group(1)})")
            lines.append(DocLine(f"{path.relative_to(ROOT)}:{start}", text, marked.group(1) if marked else None))
    return lines


def _command_word(text: str) -> str | None:
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    words = [w for w in words if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]  # VAR=value prefixes
    return words[0] if words else None


def commands(text: str) -> list[tuple[list[str], str | None]]:
    """``semcat a && semcat b > f`` → [(argv, stdout file or None), ...] with the sandbox's
    substitutions and caps applied."""
    out: list[tuple[list[str], str | None]] = []
    for part in re.split(r"\s+#", text, maxsplit=1)[0].split("&&"):
        words = [w for w in shlex.split(part) if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
        target = None
        if ">" in words:
            i = words.index(">")
            target, words = words[i + 1], words[:i]
        assert words[0] == "semcat", part
        out.append((_scaled([_local(w) for w in words[1:]]), target))
    return out


def _local(word: str) -> str:
    if word in LABELLED:
        return "labelled/"
    if word.startswith("/") and not word.startswith("//"):
        return word.lstrip("/")
    return word


def _scaled(argv: list[str]) -> list[str]:
    argv = list(argv)
    for i, word in enumerate(argv[:-1]):
        if word in CAPS and argv[i + 1].isdigit():
            argv[i + 1] = str(min(int(argv[i + 1]), CAPS[word]))
        elif word == "--shape":
            argv[i + 1] = SHAPE_CAP
    return argv


ALL_LINES = [line for path in doc_files() for line in doc_lines(path)]


def test_doc_lines_are_found_and_markers_are_known() -> None:
    texts = [line.text for line in ALL_LINES]
    assert any(t.startswith("semcat train ") for t in texts) and any(t.startswith("semcat ingest ") for t in texts)
    assert all(line.needs in (None, *NEEDS) for line in ALL_LINES)
    assert commands("semcat duplicates /archive/ --format json > groups.json  # x") == [
        (["duplicates", "archive/", "--format", "json"], "groups.json")]
    assert commands("semcat category add X && semcat label IMAGE.tif X") == [
        (["category", "add", "X"], None), (["label", "IMAGE.tif", "X"], None)]
    assert _scaled(["synth", "d", "--per-class", "40", "--per-class", "0"]) == ["synth", "d", "--per-class", "4",
                                                                            "--per-class", "0"]


def _sandbox(root: Path, demo: Path) -> None:
    """The folders and files the docs' examples name, filled with the demo's small images."""
    from semcat.synth import write_alignment_set, write_dataset

    shutil.copytree(demo, root / "demo-output", symlinks=True)
    (root / "labelled").symlink_to(root / "demo-output" / "data")
    for name in ("model.semcat", "nffa.semcat"):  # the second is also written by the docs' `semcat train`
        shutil.copy(demo / "model.semcat", root / name)
    pool = root / "pool"
    write_dataset(pool, per_class=2, size=64, seed=3, databar=True)
    images = sorted(pool.rglob("*.tif"))
    for folder in ("scans", "incoming", "archive", "other_lab", "second_test_set", "data/sem/2024",
                   "data/sem-archive", "microscope/export", "images", "aligned", "random"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in ("other_lab", "second_test_set"):  # labelled folders: one sub-folder per category
        shutil.copytree(pool, root / name, dirs_exist_ok=True)
    for i, image in enumerate(images[:6]):
        for folder in ("scans", "incoming", "archive", "data/sem/2024", "data/sem-archive", "images"):
            shutil.copy(image, root / folder / f"{i:02d}_{image.name}")
    for i, image in enumerate(images[6:12]):  # two sets for `semcat align train aligned/ random/`
        shutil.copy(image, root / ("aligned" if i % 2 else "random") / image.name)
    write_alignment_set(root / "nanowires", n=12, size=64, seed=3)  # images with truth.csv
    nanowire = next(p for p in images if p.parent.name == "Nanowires")
    shutil.copy(images[0], root / "scans" / "a.tif")
    shutil.copy(nanowire, root / "data/sem/2024/zno_wires_012.tif")
    shutil.copy(nanowire, root / "IMAGE.tif")


@pytest.mark.slow
def test_every_docs_command_runs(demo_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "sandbox"
    root.mkdir()
    _sandbox(root, demo_output)
    monkeypatch.chdir(root)
    monkeypatch.setenv("SEMCAT_DB", f"sqlite:///{root / 'catalog.db'}")
    runner = CliRunner()
    failures: list[str] = []
    skipped: dict[str, int] = {}
    ran = 0
    seconds: list[tuple[float, str]] = []
    for line in ALL_LINES:
        if line.needs:
            skipped[line.needs] = skipped.get(line.needs, 0) + 1
            continue
        for argv, target in commands(line.text):
            start = time.perf_counter()
            result = runner.invoke(app, argv)
            seconds.append((time.perf_counter() - start, line.where))
            ran += 1
            if target:
                Path(target).write_text(result.stdout, encoding="utf-8")
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
            if result.exit_code != 0 or crashed:
                failures.append(f"{line.where}: semcat {shlex.join(argv)} -> exit {result.exit_code}"
                                f"{' (traceback)' if crashed else ''}\n    {result.stderr.strip()[-600:]}")
    slowest = ", ".join(f"{where} {s:.1f} s" for s, where in sorted(seconds, reverse=True)[:5])
    print(f"docs commands: {ran} run, {sum(skipped.values())} not run: {skipped}; slowest: {slowest}")
    assert not failures, f"{len(failures)} of {ran} docs commands failed:\n" + "\n".join(failures)
    assert ran >= 50, "the docs lost their examples, or the extraction broke"
