"""Fast checks of the cluster helpers; the cluster itself runs in tests/reliability/test_rel_spark_cluster.py."""
from __future__ import annotations

import re
import shlex
import tarfile
from pathlib import Path

import pytest
import typer

# The manual's cluster pages: the Spark how-to (standalone cluster, packed environment) and SLURM.
HOWTO = Path(__file__).resolve().parents[1] / "docs" / "how-to"
DOCS = "\n".join((HOWTO / name).read_text(encoding="utf-8") for name in ("spark.md", "slurm.md"))


def _doc_lines(marker: str) -> list[list[str]]:
    """Every documented command line that runs ``marker``, as words from ``spark-class`` on."""
    lines = [ln.lstrip("$ ").rstrip(" &") for ln in DOCS.splitlines() if marker in ln]
    words = [shlex.split(ln.split("srun", 1)[-1]) for ln in lines]
    return [w[next(i for i, x in enumerate(w) if x.endswith("bin/spark-class")):] for w in words]


def test_documented_cluster_commands_are_the_ones_the_tests_run():
    """The manual's master/worker lines have exactly the words of the commands the test cluster uses."""
    from semcat.engines.standalone import master_command, worker_command

    masters, workers = _doc_lines("deploy.master.Master"), _doc_lines("deploy.worker.Worker")
    assert len(masters) >= 2 and len(workers) >= 2  # standalone section + SLURM script
    for m in masters:
        assert m[0].endswith("$SPARK_HOME/bin/spark-class")
        assert m[1:] == master_command(m[3], int(m[5]), int(m[7]))[1:]
    for w in workers:
        assert w[1:] == worker_command(w[-1], w[3], w[5])[1:]
    assert re.search(r"PYSPARK_PYTHON=\./environment/bin/python semcat ingest .* --conf "
                     r"spark\.archives=env\.tar\.gz#environment", DOCS)


def test_spark_conf_pairs():
    from semcat.commands._common import spark_conf

    assert spark_conf(["spark.archives=env.tar.gz#environment", "a=b=c"]) == {
        "spark.archives": "env.tar.gz#environment", "a": "b=c"}
    assert spark_conf(None) == {}
    with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
        spark_conf(["spark.cores.max"])


def test_driver_binds_to_loopback_only_for_a_loopback_master():
    from semcat.engines.spark import _is_loopback

    assert _is_loopback("local[2]") and _is_loopback("spark://127.0.0.1:7077")
    assert _is_loopback("spark://localhost:7077")
    assert not _is_loopback("spark://head:7077") and not _is_loopback("yarn")


def test_executor_environment_leaves_torch_out():
    from semcat.engines.packenv import EXECUTOR_DISTRIBUTIONS, _closure

    names = {d.metadata["Name"].lower() for d in _closure(EXECUTOR_DISTRIBUTIONS)}
    assert {"numpy", "pandas", "pyarrow", "openvino", "scikit-learn", "joblib"} <= names
    assert not names & {"torch", "torchvision", "timm", "pyspark"}


def test_semcat_only_archive_is_a_venv_with_semcat(tmp_path):
    from semcat.engines.packenv import PackEnvError, pack_env

    res = pack_env(tmp_path / "env.tar.gz", packages=())
    with tarfile.open(res.path) as tar:
        names = set(tar.getnames())
    assert "pyvenv.cfg" in names and "bin/python" in names
    assert any(n.endswith("site-packages/semcat/engines/spark.py") for n in names)
    assert not any("/numpy/" in n for n in names)
    with pytest.raises(PackEnvError, match="exists"):
        pack_env(tmp_path / "env.tar.gz", packages=())
