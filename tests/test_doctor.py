"""semcat doctor: ISA names from CPU flags, real catalogue connections, exit codes."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from semcat._sysinfo import cpu_flags, instruction_sets
from semcat.cli import app
from semcat.doctor import FAIL, OK, check_catalog, check_runtime, failed, run_checks

runner = CliRunner()


def test_instruction_sets_name_the_vector_units_from_flags() -> None:
    assert instruction_sets({"sse4_2", "avx2"}) == "AVX2"
    sapphire = {"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16", "avx512_bf16"}
    assert instruction_sets(sapphire) == "AVX2 AVX-512 VNNI AMX bf16"
    assert instruction_sets({"avx_vnni", "avx2"}) == "AVX2 VNNI"  # Alder Lake: VNNI without AVX-512
    assert "none of" in instruction_sets(set())
    if Path("/proc/cpuinfo").exists():
        assert "fpu" in cpu_flags() or "fp" in cpu_flags()  # x86 or arm64 flags were read


def test_catalog_check_connects_to_an_existing_sqlite_file_and_does_not_create_one(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert check_catalog(str(missing)).status == OK
    assert not missing.exists()
    existing = tmp_path / "cat.db"
    sqlite3.connect(existing).close()
    assert "connected" in check_catalog(str(existing)).detail


def test_catalog_check_reports_a_refused_postgres_connection_with_a_fix() -> None:
    c = check_catalog("postgresql://postgres:s3cret@127.0.0.1:1/nowhere")
    assert c.status == FAIL and "refused" in c.detail.lower() and c.fix
    assert "s3cret" not in c.detail and "postgres:***@127.0.0.1" in c.detail
    assert "s3cret" not in check_catalog("mysql://u:s3cret@h/d").detail


def test_catalog_check_connects_to_the_real_postgres(pg_url: str) -> None:
    assert check_catalog(pg_url).status == OK


def test_doctor_cli_reports_every_check_and_exits_1_on_a_bad_catalogue(tmp_path: Path) -> None:
    good = runner.invoke(app, ["doctor", "--json", "--db", str(tmp_path / "c.db")])
    names = [c["name"] for c in json.loads(good.stdout)]
    assert names == ["cpu", "runtime", "cache", "catalog", "java", "chromium"]
    assert good.exit_code == (1 if failed(run_checks()) else 0)
    bad = runner.invoke(app, ["doctor", "--db", "mysql://x@y/z"])
    assert bad.exit_code == 1
    assert "unsupported catalog URL" in bad.stderr and "fix:" in bad.stderr


def test_runtime_check_names_versions_and_the_auto_choice_without_converting(semcat_home: Path) -> None:
    before = sorted((semcat_home / "openvino").glob("*")) if (semcat_home / "openvino").exists() else []
    c = check_runtime()
    assert c.status == OK and "openvino " in c.detail and "torch " in c.detail
    assert "auto: openvino" in c.detail or "auto: torch" in c.detail
    after = sorted((semcat_home / "openvino").glob("*")) if (semcat_home / "openvino").exists() else []
    assert after == before  # doctor converts nothing
