"""Where semcat keeps its state: the home directory (feature cache, converted models, catalog)."""
from __future__ import annotations

import os
from pathlib import Path


def semcat_home() -> Path:
    """``$SEMCAT_HOME`` if set, else ``~/.semcat``; created on first use."""
    home = Path(os.environ.get("SEMCAT_HOME") or Path.home() / ".semcat").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_feature_cache() -> Path:
    """The feature cache shared by every dataset on this machine."""
    return semcat_home() / "features"


def default_db_url() -> str:
    """``$SEMCAT_DB`` if set, else an SQLite catalog in the home directory."""
    return os.environ.get("SEMCAT_DB") or f"sqlite:///{semcat_home() / 'catalog.db'}"


def compute_threads() -> int:
    """CPU threads one semcat process may use for inference: ``$SEMCAT_THREADS``, else all cores.

    The Spark engine sets it to the cores of one task, so N tasks on N cores do not each start
    N threads; set it yourself when several semcat processes share a machine.
    """
    value = os.environ.get("SEMCAT_THREADS", "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"SEMCAT_THREADS must be a positive integer; got {value!r}.") from None
        if n < 1:
            raise ValueError(f"SEMCAT_THREADS must be a positive integer; got {value!r}.")
        return n
    return os.cpu_count() or 1
