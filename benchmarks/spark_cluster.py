"""Spark scaling on a real standalone cluster: `spark_scaling.py --start-cluster` at its defaults.

Starts a master and two one-core workers on loopback (the README's commands), runs the scaling
benchmark with 1 and 2 workers next to the local engine, times the driver's catalogue writes of a
1,000-image Spark ingest, and classifies 200 images with a packed executor environment. Writes ``benchmarks/results/spark_cluster.md`` and
``docs/img/spark_cluster_scaling.png``. Extra arguments go to ``spark_scaling.py``.

    python benchmarks/spark_cluster.py --n 500,2000
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spark_scaling  # noqa: E402

if __name__ == "__main__":
    sys.exit(spark_scaling.main(["--start-cluster", "--n", "500,2000", "--ingest", "1000", "--pack-env", "200", *sys.argv[1:]]))
