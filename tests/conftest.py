"""Shared test fixtures: an isolated semcat home, small synthetic datasets, service URLs.

Services (PostgreSQL, Chromium, Spark) are real. Locally a missing service skips its tests;
in CI (`SEMCAT_REQUIRE_SERVICES=1`, set by `.ci/run`) a missing service fails them instead.
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("SEMCAT_REQUIRE_SERVICES") == "1"

# Tests send SIGINT to `semcat` children as a terminal's Ctrl-C would. A test run started from a
# background job (`cmd &` in a script, as CI runners do) inherits SIGINT *ignored*, which every child
# would inherit too: the Ctrl-C would never arrive. A handler here resets to the default on exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def missing_service(reason: str) -> None:
    """Skip locally, fail in CI: a test of a real service must never silently not run there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def semcat_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session gets its own semcat home (feature cache, converted models, catalog)."""
    home = tmp_path_factory.mktemp("semcat_home")
    old = os.environ.get("SEMCAT_HOME")
    os.environ["SEMCAT_HOME"] = str(home)
    os.environ.pop("SEMCAT_DB", None)
    yield home
    if old is None:
        os.environ.pop("SEMCAT_HOME", None)
    else:
        os.environ["SEMCAT_HOME"] = old


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 categories x 12 synthetic 160-px TIFFs (with data bars), seed 0: shared, read-only."""
    from semcat.synth import write_dataset

    root = tmp_path_factory.mktemp("small_dataset")
    write_dataset(root, per_class=12, size=160, seed=0, databar=True)
    return root


def flat_subset(dataset: Path, root: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` images of each class folder into ``root`` as ``class_name``."""
    for cls in sorted(p for p in dataset.iterdir() if p.is_dir()):
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy(f, root / f"{cls.name}_{f.name}")
    return root


@pytest.fixture()
def small_dataset_copy(small_dataset: Path, tmp_path: Path) -> Path:
    """A private, writable copy of ``small_dataset`` for tests that add, rename or break files."""
    dst = tmp_path / "data"
    shutil.copytree(small_dataset, dst)
    return dst


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a real PostgreSQL server (`SEMCAT_TEST_PG_URL`, started by `.ci/run`)."""
    url = os.environ.get("SEMCAT_TEST_PG_URL")
    if not url:
        missing_service("SEMCAT_TEST_PG_URL is not set (no PostgreSQL server)")
    return url


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium for Playwright (no browser downloads are possible here)."""
    path = "/usr/bin/chromium"
    if not os.path.exists(path):
        missing_service("Chromium not installed at /usr/bin/chromium")
    return path


DEMO_PER_CLASS = 10
"""Images per category of the shared demo: the fewest with which every class keeps a sample group
for training and one for testing under the demo's --group-by."""


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`semcat demo` once per session, small (8 images a category, 64 px): its data, model,
    calibration and catalogue, shared read-only by the CLI-contract and docs tests."""
    import typer.main

    from semcat.cli import app
    from semcat.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "demo-output"
    run_demo(typer.main.get_command(app), out, per_class=DEMO_PER_CLASS, size=64, echo=lambda *a, **k: None)
    return out
