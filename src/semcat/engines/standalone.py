"""A Spark standalone cluster started from the pyspark installation: master and workers.

The tests and ``benchmarks/spark_scaling.py`` run a real cluster on loopback with exactly the
commands the README gives users (:func:`master_command`, :func:`worker_command`), so the
documented route is the tested one. Each worker runs in its own process group: killing the group
(:meth:`StandaloneCluster.kill_worker`) takes its executors with it, as when a node dies; their
Python workers (pyspark's daemon, a process group of its own) exit when their executor's pipe
closes.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["StandaloneCluster", "free_port", "master_command", "spark_home", "worker_command"]

_START_TIMEOUT_S = 120.0
"""Master and worker JVMs start in ~5-10 s on an idle machine; a busy 2-core CI runner is slower."""


def spark_home() -> Path:
    """Spark itself ships inside the pyspark wheel: ``SPARK_HOME`` is the package folder."""
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def master_command(host: str, port: int, webui_port: int) -> list[str]:
    """``spark-class …Master``: the README's master command."""
    return [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
            "--host", host, "--port", str(port), "--webui-port", str(webui_port)]


def worker_command(master_url: str, cores: int, memory: str) -> list[str]:
    """``spark-class …Worker``: the README's worker command (one per node)."""
    return [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
            "--cores", str(cores), "--memory", memory, "--webui-port", "0", master_url]


class StandaloneCluster:
    """A master on ``127.0.0.1`` and workers added with :meth:`add_workers`; :meth:`stop` ends all.

    ``workdir`` holds each process's log and the workers' scratch folders (``SPARK_WORKER_DIR``).
    Use as a context manager so the JVMs are stopped even when a test fails.
    """

    def __init__(self, workdir: str | Path, *, daemon_memory: str = "256m") -> None:
        self.workdir = Path(workdir)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.webui_port = free_port()
        self.url = f"spark://{self.host}:{self.port}"
        # executors import semcat as installed or from a shipped archive, not from the launching
        # shell's PYTHONPATH (a relative one would not even resolve in an executor's folder)
        inherited = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self._env = {**inherited, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": self.host,
                     "SPARK_DAEMON_MEMORY": daemon_memory, "SPARK_LOG_DIR": str(self.workdir / "logs")}
        self.master: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> StandaloneCluster:
        """Start the master and wait until it answers on its web UI port."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.master = self._spawn(master_command(self.host, self.port, self.webui_port), "master")
        self._wait(lambda: self.status() is not None, "the Spark master to start")
        return self

    def add_workers(self, n: int = 1, *, cores: int = 1, memory: str = "1g") -> None:
        """Start ``n`` workers at once and wait until the master counts them all alive."""
        alive = self.alive_workers()
        for _ in range(n):
            i = len(self.workers)
            env = {**self._env, "SPARK_WORKER_DIR": str(self.workdir / f"worker-{i}")}
            self.workers.append(self._spawn(worker_command(self.url, cores, memory), f"worker-{i}", env))
        self._wait(lambda: self.alive_workers() >= alive + n, f"{n} worker(s) to register with {self.url}")

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` with its executors (a node dying); their Python workers follow."""
        _kill_group(self.workers[i])

    def status(self) -> dict | None:
        """The master's JSON status (workers, cores, applications), None while it is not up."""
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.webui_port}/json/", timeout=2) as r:
                return json.load(r)
        except OSError:
            return None

    def alive_workers(self) -> int:
        s = self.status() or {}
        return sum(1 for w in s.get("workers", []) if w.get("state") == "ALIVE")

    def stop(self) -> None:
        """Kill every worker group, then the master; wait for them to exit."""
        for proc in [*self.workers, *([self.master] if self.master else [])]:
            _kill_group(proc)
        self.workers, self.master = [], None

    def _spawn(self, cmd: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("wb")
        try:
            return subprocess.Popen(cmd, env=env or self._env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def _wait(self, ready, what: str) -> None:
        end = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < end:
            if ready():
                return
            dead = [p for p in [self.master, *self.workers] if p is not None and p.poll() is not None]
            if dead:
                break
            time.sleep(0.25)
        logs = "; ".join(f"{p.name}: {p.read_text(errors='replace')[-400:]}" for p in self.workdir.glob("*.log"))
        raise RuntimeError(f"timed out waiting for {what} (logs: {logs})")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (also when its leader already exited: children may remain)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
