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
