"""Server settings, checked once before anything listens: a public bind without a token is refused."""
from __future__ import annotations

import dataclasses
import getpass
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from semcat.config import default_db_url, semcat_home
from semcat.errors import SemcatError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SETTINGS_ENV = "SEMCAT_SERVE_SETTINGS"
"""Environment variable that hands the settings to each ``semcat serve --workers N`` process."""
_PATHS = ("model_path", "storage_dir", "secret_file", "models_dir")


class InsecureBindError(SemcatError):
    """``semcat serve`` was asked to listen on a public interface without an access token."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


@dataclass
class Settings:
    """Everything ``create_app`` needs; the CLI fills it from ``semcat serve`` options.

    ``token`` grants the reviewer role, ``read_token`` the viewer role. Without any token the
    server trusts whoever reaches it, which is only allowed on a loopback interface.
    """

    db_url: str = field(default_factory=default_db_url)
    model_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    read_token: str | None = None
    read_only: bool = False
    storage_dir: Path | None = None
    max_upload_bytes: int = 200 * 1024 * 1024
    max_upload_files: int = 20
    max_decode_bytes: int = 256 * 2**20
    """Largest decoded image (pixels x channels x bytes per sample) a thumbnail or upload may need."""
    max_decodes: int = 2
    """Images decoded at once; further requests wait (so eight big uploads cannot exhaust memory)."""
    local_user: str = field(default_factory=_local_user)
    secret_file: Path | None = None
    retrain_every: int = 0
    """Confirmations between background retrains (``semcat.retrain``); 0 = never."""
    models_dir: Path | None = None
    """Folder of retrained models (default: ``semcat.retrain.models_dir`` of the catalogue)."""

    def check(self) -> None:
        """Refuse combinations that would expose the catalog; raise ``InsecureBindError``."""
        if not is_loopback(self.host) and not (self.token or self.read_token):
            raise InsecureBindError(
                f"refusing to serve on {self.host!r} without an access token: expected a loopback "
                "host (127.0.0.1, localhost, ::1) or a token; got neither. Pass --token SECRET "
                "(reviewers) and optionally --read-token SECRET (viewers), or use --host 127.0.0.1."
            )
        for name, value in (("token", self.token), ("read_token", self.read_token)):
            if value is not None and len(value) < 8:
                raise InsecureBindError(f"--{name.replace('_', '-')} must be at least 8 characters; got {len(value)}")
        if self.token and self.token == self.read_token:
            raise InsecureBindError("--token and --read-token must differ (each one names a role)")

    @property
    def auth_required(self) -> bool:
        """True when visitors must present a token (a token was configured)."""
        return bool(self.token or self.read_token)

    @property
    def storage(self) -> Path:
        """Folder uploaded images are stored in; nothing is ever written outside it."""
        return (self.storage_dir or semcat_home() / "storage").resolve()

    @property
    def retrain_dir(self) -> Path:
        """Folder of the catalogue's retrained models: its ``live.json`` names the live one."""
        from semcat.retrain import models_dir

        return models_dir(self.db_url, self.models_dir)

    @property
    def secret_path(self) -> Path:
        """File holding the key that signs session cookies (kept across restarts)."""
        return self.secret_file or semcat_home() / "web_secret"


def settings_to_env(settings: Settings) -> None:
    """Put ``settings`` where worker processes started by uvicorn find them (``settings_from_env``)."""
    os.environ[SETTINGS_ENV] = json.dumps({k: str(v) if k in _PATHS and v is not None else v
                                           for k, v in dataclasses.asdict(settings).items()})


def settings_from_env() -> Settings:
    """The settings ``settings_to_env`` stored (in a worker process)."""
    data = json.loads(os.environ[SETTINGS_ENV])
    return Settings(**{k: Path(v) if k in _PATHS and v is not None else v for k, v in data.items()})
