"""Every figure in the docs is traceable to a committed results file, and every results file says
how it was made (issue 19, part 3).

A *figure* is a number with a unit: ``%``, a ratio (``1.84x``), a time (``ms``, ``s``, ``min``,
``h``), a rate (``images/s``) or a size (``MB``, ``GiB``, ...). Each paragraph, list or table of
README.md and docs/*.md that quotes one names its source: a link to (or mention of)
``benchmarks/results/<name>.md``, or the comment ``<!-- fig: results/<name>.md -->``, and then every
figure in it must appear in one of those files (as written or rounded). A paragraph whose figures
are settings, limits or goals rather than measurements says so with ``<!-- fig: spec -->``; one whose
figures are computed on the page from quoted results (a capacity model) with ``<!-- fig: derived -->``. Figures after a comparison
(``≥ 90%``, ``< 50 ms``) are goals and need no source; code (fenced or inline) is not prose.
BENCHMARKS.md is the results files, assembled (``benchmarks/run_all.py --assemble``).
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
import _results  # noqa: E402
import run_all  # noqa: E402

_UNIT = r"(?:%|[x×](?!\w)|\s?(?:ms|µs|s|min|h|images/s|img/s|vectors/s|MB|MiB|GB|GiB|kB|KB|KiB)(?![\w/]))"
FIGURE = re.compile(r"(?<![\w.,/#-])(?<![≥≤<>=]\s)(?<![≥≤<>=])(\d[\d,]*(?:\.\d+)?)" + _UNIT)
SOURCE = re.compile(r"results/([\w.-]+?)\.md")
UNMEASURED = ("<!-- fig: spec -->", "<!-- fig: derived -->")

UNCOMMITTED: set[str] = set()  # measured with uncommitted changes to src/ or benchmarks/: no commit reproduces it exactly


def docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(text: str) -> list[str]:
    """Paragraphs, lists and tables of a Markdown text, without fenced code."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)
    return [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]


def figures(block: str) -> list[str]:
    """The figures of one block, outside inline code, HTML comments and link targets."""
    prose = re.sub(r"`[^`\n]*`|<!--.*?-->|\]\([^)]*\)", " ", block, flags=re.S)
    return [m.group(0).strip() for m in FIGURE.finditer(prose)]


def untraceable(text: str, results: Path = RESULTS) -> list[str]:
    """One line per figure of ``text`` that no results file named beside it contains."""
    problems = []
    for block in blocks(text):
        found = figures(block)
        if not found or any(tag in block for tag in UNMEASURED):
            continue
        names = sorted(set(SOURCE.findall(block)))
        where = block.strip().splitlines()[0][:70]
        if not names:
            problems.append(f"{', '.join(found)}: no source named (in {where!r})")
            continue
        missing = [n for n in names if not (results / f"{n}.md").is_file()]
        if missing:
            problems.append(f"results file(s) {', '.join(missing)} do not exist (in {where!r})")
            continue
        source = "\n".join((results / f"{n}.md").read_text(encoding="utf-8") for n in names)
        numbers = {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", source)}
        for fig in found:
            if not quoted(FIGURE.match(fig).group(1), numbers):  # type: ignore[union-attr]
                problems.append(f"{fig}: not in {', '.join(names)} (in {where!r})")
    return problems


def quoted(number: str, numbers: set[str]) -> bool:
    """Whether ``number`` is one of ``numbers`` as written there or rounded (``1.4`` quotes ``1.43``,
    ``143`` quotes ``143.3``); a figure computed from others (a difference, a ratio) is not."""
    value = float(number.replace(",", ""))
    places = len(number.partition(".")[2])
    return any(len(n.partition(".")[2]) >= places and abs(round(float(n), places) - value) < 1e-9 for n in numbers)


@pytest.mark.parametrize("doc", docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_figure_in_the_docs_is_in_its_results_file(doc: Path) -> None:
    problems = untraceable(doc.read_text(encoding="utf-8"))
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_check_catches_untagged_wrong_and_missing_sources(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("| a | 2.53 | 70.2% |\n", encoding="utf-8")
    assert untraceable("Trains in 2.53 s (results/x.md), in 2.5 s, 70% right.", tmp_path) == []
    assert untraceable("Trains in 2.54 s (results/x.md).", tmp_path)[0].startswith("2.54 s: not in x")
    assert untraceable("Trains in 0.96 s (results/x.md).", tmp_path)[0].startswith("0.96 s: not in x")
    assert "no source" in untraceable("Trains in 2.53 s, 70.2% accurate.", tmp_path)[0]
    assert "do not exist" in untraceable("2.53 s (results/y.md)", tmp_path)[0]
    assert untraceable("Goal: ≥ 90% in < 10 s; `--quantile 0.97`; 1024x768 px.\n\n```\n5 s\n```", tmp_path) == []
    assert untraceable(f"A busy timeout of 60 s. {UNMEASURED[0]}", tmp_path) == []


def test_benchmarks_md_is_the_results_files_assembled() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert text == run_all.benchmarks_md(), "BENCHMARKS.md is stale: run `python benchmarks/run_all.py --assemble`"


@pytest.mark.parametrize("name", sorted(p.stem for p in RESULTS.glob("*.md")))
def test_results_file_header_names_script_commit_machine_date(name: str) -> None:
    head = (RESULTS / f"{name}.md").read_text(encoding="utf-8").splitlines()[:6]
    fields = [line.split(":", 1)[0].removeprefix("- ") for line in head[2:6]]
    complete = tuple(fields) == _results.HEADER_FIELDS and "(" in head[4]  # machine (instruction sets)
    assert complete, f"{name}.md must open with benchmarks/_results.header(...): {head}"
    dirty = "uncommitted changes" in head[3]
    assert dirty == (name in UNCOMMITTED), (
        f"{name}.md: {head[3]}: commit the code, then rerun it" if dirty else f"take {name} off UNCOMMITTED")


@pytest.mark.parametrize("name", sorted(p.stem for p in RESULTS.glob("*.md")))
def test_make_bench_full_rewrites_the_results_file(name: str) -> None:
    """Its benchmark is in run_all's ORDER, and its header's arguments are one of run_all's full runs."""
    benchmark = run_all.benchmark_of(name)
    assert benchmark, f"{name}.md: no benchmark in run_all.ORDER writes it (delete it or add the benchmark)"
    script = re.search(r"^- script: `python benchmarks/(\w+)\.py ?(.*)`$",
                       (RESULTS / f"{name}.md").read_text(encoding="utf-8"), re.M)
    assert script and script.group(1) == benchmark, f"{name}.md: script line names another benchmark"
    assert shlex.split(script.group(2)) in run_all.FULL.get(benchmark, [[]]), (
        f"{name}.md was made by `{script.group(0)}`, which `make bench-full` does not run: add it to run_all.FULL")


def test_run_all_knows_every_benchmark() -> None:
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.stem.startswith("_")}
    assert set(run_all.ORDER) == scripts - {"run_all", "keras_baseline"}, "add new benchmarks to run_all.ORDER"
    assert set(run_all.QUICK) == set(run_all.ORDER) and set(run_all.FULL) <= set(run_all.ORDER)


def test_write_results_refuses_a_file_without_the_header(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must open with"):
        _results.write_results(tmp_path / "x.md", ["# x", "", "- date: today"])
    _results.write_results(tmp_path / "x.md", _results.header("x", argv=["--n", "2"]) + ["", "| a |"])
    text = (tmp_path / "x.md").read_text(encoding="utf-8")
    assert "- script: `python benchmarks/" in text and "--n 2`" in text and "- commit: " in text
