"""Fixtures of the reliability suite and the figures it reports.

Each test records its figures with the ``figures`` fixture (part, inputs tried, failures, lost
items, p95 ...); at session end a hook writes them, with date and machine, to RELIABILITY.md at
the repository root (atomically; only when the whole reliability suite ran, so a single
``-k`` run never overwrites the file with a partial table).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from semcat._sysinfo import machine_description

from reliability.corpus import Case, build_corpus

ROOT = Path(__file__).resolve().parents[2]
FIGURES_FILE = ROOT / "RELIABILITY.md"
SEMCAT = [str(Path(sys.executable).with_name("semcat"))]
_ROWS: list[dict] = []
_COLUMNS = ("part", "inputs", "failures", "lost", "duplicated", "p95_ms", "notes")


class Figures:
    """Collects one table row per scenario; ``failures`` counts unexpected outcomes (must be 0)."""

    def add(self, part: str, *, inputs: int, failures: int = 0, lost: int = 0, duplicated: int = 0,
            p95_ms: float | None = None, notes: str = "") -> None:
        _ROWS.append({"part": part, "inputs": inputs, "failures": failures, "lost": lost,
                      "duplicated": duplicated, "p95_ms": p95_ms, "notes": notes})


@pytest.fixture(scope="session")
def figures() -> Figures:
    return Figures()


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    """The malformed-file corpus in its own folder (read-only for tests)."""
    root = tmp_path_factory.mktemp("corpus")
    return root, build_corpus(root)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model (efficientnet_lite0 features + softmax head) trained on 3 x 10 small images."""
    from semcat.featurespec import FeatureSpec
    from semcat.synth import write_dataset
    from semcat.training import labelled_set, train_on_samples

    data = tmp_path_factory.mktemp("train_data")
    write_dataset(data, per_class=3, size=96, seed=11, databar=False)
    # 3 images a class: too few for cross-fitting's folds once the test split took its share
    model, _ = train_on_samples(labelled_set(data), FeatureSpec.resolve("efficientnet_lite0"), progress=False, protocol="val")
    return model.save(tmp_path_factory.mktemp("model") / "tiny.semcat")


@pytest.fixture()
def fresh_pg(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL URL (database ``semcat_rel`` in CI) with its own schema, dropped afterwards."""
    from test_web_helpers import fresh_pg_url

    gen = fresh_pg_url(request)
    url = next(gen)
    request.addfinalizer(lambda: next(gen, None))
    return url


def run_cli(*args: str | os.PathLike, timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``semcat ARGS`` in a subprocess (bytes paths allowed), capturing text output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*SEMCAT, *args], capture_output=True, timeout=timeout, env=full_env, cwd=cwd,
                          text=True, errors="replace")


class Served:
    """``semcat serve ARGS --port P`` in its own process on a free loopback port, answering /healthz.

    stderr goes to ``log`` (read it with ``output()`` after ``stop``); ``env`` is added to ours.
    """

    def __init__(self, *args: str | os.PathLike, log: Path, env: dict | None = None, timeout: float = 90) -> None:
        import socket

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen([*SEMCAT, "serve", *map(str, args), "--port", str(self.port)],
                                         env={**os.environ, "COLUMNS": "200", **(env or {})}, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"semcat serve did not start: {self.output()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def assert_clean(proc: subprocess.CompletedProcess) -> None:
    """No Python traceback may reach the user, whatever the input."""
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback (most recent call last)" not in proc.stdout, proc.stdout[-3000:]


def p95(values: list[float]) -> float:
    """95th percentile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[max(0, int(round(0.95 * len(s))) - 1)] if s else float("nan")


def _render(rows: list[dict], seconds: float, outcome: str) -> str:
    lines = [
        "# semcat reliability figures", "",
        "Written by `tests/reliability` (`.venv/bin/python -m pytest tests/reliability -q`); do not edit by hand.", "",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine_description()}",
        f"- suite: {outcome} in {seconds:.0f} s",
        f"- load: {os.environ.get('SEMCAT_LOAD_SECONDS', '10')} s per load scenario "
        "(set `SEMCAT_LOAD_SECONDS` to change)", "",
        "`failures` = unexpected outcomes (a crash, a traceback, a good file rejected, a bad file accepted "
        "or not named, a non-zero HTTP error); `lost` = items that should exist afterwards and do not; "
        "`duplicated` = items stored twice.", "",
        "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS),
    ]
    for r in rows:
        cells = [r["part"], str(r["inputs"]), str(r["failures"]), str(r["lost"]), str(r["duplicated"]),
                 "" if r["p95_ms"] is None else f"{r['p95_ms']:.1f}", r["notes"].replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_START = time.monotonic()


def _rows_dir(config: pytest.Config) -> Path:
    """Where xdist workers leave their rows for the controller to merge."""
    return Path(str(config.rootpath)) / ".pytest_cache" / "semcat-reliability"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # controller (or plain run): start clean
        shutil.rmtree(_rows_dir(session.config), ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write RELIABILITY.md when the whole reliability suite ran (not for a filtered run).

    Under pytest-xdist each worker hands its rows to the controller through a JSON file.
    """
    from semcat._io import atomic_write_text

    cfg = session.config
    if hasattr(cfg, "workerinput"):
        if _ROWS:
            atomic_write_text(_rows_dir(cfg) / f"{cfg.workerinput['workerid']}.json", json.dumps(_ROWS))
        return
    rows = _ROWS + [r for f in sorted(_rows_dir(cfg).glob("*.json")) for r in json.loads(f.read_text())]
    if not rows or cfg.getoption("keyword") or cfg.getoption("markexpr") or cfg.getoption("lf", False):
        return
    args = [Path(a.split("::")[0]).resolve() for a in cfg.args]
    here = Path(__file__).resolve().parent
    if not any(a == here or here.is_relative_to(a) for a in args):
        return
    order = {name: i for i, name in enumerate(("fuzz", "bad inputs", "attack", "interrupt", "concurrency", "load"))}
    rows.sort(key=lambda r: (order.get(r["part"].split(":")[0], 9), r["part"]))
    outcome = "passed" if exitstatus == 0 else f"FAILED (exit {exitstatus})"
    atomic_write_text(FIGURES_FILE, _render(rows, time.monotonic() - _START, outcome))
