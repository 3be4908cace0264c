"""``semcat doctor``: what this machine offers semcat, and the fix for whatever is missing.

Each check is cheap and converts, downloads or creates nothing (except the semcat home folder),
so it is safe to run first on a new machine or inside a batch job.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from semcat._sysinfo import instruction_sets, machine_description

OK, WARN, FAIL = "ok", "warn", "FAIL"
CHROMIUM = "/usr/bin/chromium"
SPARK_JAVA = 17  # pyspark 3.5 and 4.x run on Java 17 or later


@dataclass(frozen=True)
class Check:
    """One line of the report; ``fix`` says what to do when status is not ok."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def run_checks(db_url: str | None = None) -> list[Check]:
    """Every check, in report order; the catalogue is checked only when ``db_url`` is given."""
    checks = [check_cpu(), check_runtime(), check_cache()]
    if db_url is not None:
        checks.append(check_catalog(db_url))
    return checks + [check_java(), check_chromium()]


def failed(checks: list[Check]) -> bool:
    """Whether something required is missing (doctor exits 1)."""
    return any(c.status == FAIL for c in checks)


def check_cpu() -> Check:
    return Check("cpu", OK, f"{machine_description()}; instruction sets: {instruction_sets()}")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_runtime() -> Check:
    """Inference runtime for the default backbone: OpenVINO and/or torch installed, and which auto picks."""
    ov, torch = _version("openvino"), _version("torch")
    versions = f"openvino {ov or 'missing'}, torch {torch or 'missing'}"
    if ov is None and torch is None:
        return Check("runtime", FAIL, versions, "pip install openvino")
    from semcat.backbones import DEFAULT_BACKBONE, get_backbone
    from semcat.runtime import planned_runtime

    chosen = planned_runtime(get_backbone(DEFAULT_BACKBONE))
    if ov is None:
        return Check("runtime", WARN, f"{versions}; auto: {chosen}",
                     "pip install openvino (2-3x faster feature extraction on CPU)")
    return Check("runtime", OK, f"{versions}; auto: {chosen}")


def check_cache() -> Check:
    """The feature cache (shared by every dataset) and converted models: where, how big, writable."""
    from semcat.config import default_feature_cache, semcat_home

    home = semcat_home()
    cache = default_feature_cache()
    files = [f for f in cache.rglob("*") if f.is_file()] if cache.exists() else []
    size = sum(f.stat().st_size for f in files)
    detail = f"{cache} ({len(files)} files, {size / 1e6:.1f} MB); home {home}"
    if not _writable(home):
        return Check("cache", FAIL, detail, f"make {home} writable, or set SEMCAT_HOME to a writable folder")
    return Check("cache", OK, detail)


def _writable(folder: Path) -> bool:
    probe = folder / ".doctor-probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def check_catalog(url: str) -> Check:
    """Connect and run ``SELECT 1``; a SQLite file that does not exist yet is reported, not created."""
    from sqlalchemy import make_url, text

    from semcat.catalog.db import Database, normalize_url

    shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)  # never print a password
    try:
        norm = normalize_url(url)
        u = make_url(norm)
        shown = u.render_as_string(hide_password=True)
        if u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists():
            return Check("catalog", OK, f"{shown}: not created yet (created on first use)")
        db = Database(norm)
        try:
            with db.read() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            db.dispose()
    except Exception as exc:  # any URL or driver error is the finding, not a crash
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problem = problem.replace(url, shown)
        return Check("catalog", FAIL, f"{shown}: {problem}",
                     "check the URL (postgresql://USER@HOST:PORT/DB or sqlite:///PATH) and that the server runs")
    return Check("catalog", OK, f"{shown}: connected")


def check_java() -> Check:
    """Java for the Spark engine (17 or later); optional."""
    java = shutil.which("java")
    fix = f"apt install openjdk-{SPARK_JAVA}-jre-headless (only for --engine spark)"
    if java is None:
        return Check("java", WARN, "not found (needed only by the Spark engine)", fix)
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
        first = (out.stderr or out.stdout).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return Check("java", WARN, f"{java} does not run: {exc}", fix)
    m = re.search(r'version "(\d+)', first)
    major = int(m.group(1)) if m else 0
    spark = "pyspark " + (_version("pyspark") or "not installed (pip install 'semcat[spark]')")
    if major < SPARK_JAVA:
        return Check("java", WARN, f"{first}; {spark}", fix)
    return Check("java", OK, f"{first}; {spark}")


def check_chromium() -> Check:
    """Chromium drives the browser tests and screenshots; optional for users."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        return Check("chromium", WARN, "not found (needed only by the browser tests)", "apt install chromium")
    return Check("chromium", OK, path)
