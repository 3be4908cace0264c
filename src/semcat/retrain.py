"""Retrain the model on a catalogue's confirmed labels; the review server runs it in the background.

Why: reviewers confirm labels one at a time, and a model trained on them should serve new requests
without anyone stopping the server. A retrain trains the softmax head on every confirmed label with
its L2 penalty chosen by cross-validation (``semcat.training``) and calibrates it on out-of-fold
predictions (``semcat.calibration.calibrate_crossfit``), the few-label route of ``semcat train`` and
``semcat calibrate``. It runs in a process of its own (``semcat retrain``; the server starts it with
:func:`start_background`), so it holds no web worker, and it reads the labels in short read
transactions: confirmations go on while it runs.

Everything lives in one folder per catalogue (:func:`models_dir`): versioned models
``model-v0001.semcat`` ..., ``live.json`` naming the live one, ``status.json`` about the latest
attempt and ``retrain.lock``, a file lock that keeps it to one retrain at a time across server
workers and command-line runs. The model file is written first and ``live.json`` replaced after,
both atomically, so a crash at any point leaves the previous model live, and a restarted server
finds the latest one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semcat._io import atomic_write_text
from semcat.config import semcat_home
from semcat.errors import SemcatError

if TYPE_CHECKING:
    from semcat.featurespec import FeatureSpec

__all__ = [
    "DEFAULT_EVERY",
    "RetrainBusy",
    "RetrainError",
    "calibration_summary",
    "catalog_labelled_set",
    "choices",
    "live",
    "live_model_file",
    "models_dir",
    "next_due",
    "retrain",
    "running",
    "start_background",
    "status",
]

DEFAULT_EVERY = 50
"""Confirmations between two background retrains (``semcat serve --retrain-every``)."""
LIVE, STATUS, LOCK, LOG = "live.json", "status.json", "retrain.lock", "retrain.log"


class RetrainError(SemcatError):
    """A retrain could not produce a model (e.g. a class with one label); the live one stays."""


class RetrainBusy(SemcatError):
    """Another retrain of the same catalogue is running."""


def models_dir(db_url: str, folder: str | Path | None = None) -> Path:
    """``folder``, else ``$SEMCAT_HOME/models/<digest of the catalogue URL>``: one per catalogue,
    so ``semcat serve --db X`` and ``semcat retrain --db X`` meet in the same place."""
    if folder is not None:
        return Path(folder)
    return semcat_home() / "models" / hashlib.sha256(db_url.encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def live(folder: Path) -> dict[str, Any] | None:
    """The live retrained model's entry (version, file, trained, labels, calibration), or None."""
    return _read_json(folder / LIVE)


def live_model_file(folder: Path) -> Path | None:
    """The live retrained model's file, None when there is none (or it went missing)."""
    entry = live(folder)
    if not entry or not isinstance(entry.get("file"), str):
        return None
    path = folder / Path(entry["file"]).name  # a bare name inside the folder, whatever the JSON says
    return path if path.is_file() else None


def running(folder: Path) -> bool:
    """True while some process holds the retrain lock of ``folder`` (False where none can be taken:
    no folder yet, or a read-only one)."""
    if not (folder / LOCK).exists():
        return False
    try:
        with _lock(folder):
            return False
    except RetrainBusy:
        return True
    except OSError:
        return False


def status(folder: Path) -> dict[str, Any]:
    """The latest attempt: ``state`` idle/running/done/failed/interrupted, times, ``reason`` when failed.

    ``running`` in the file but no lock held means its process died (a server or machine restart):
    ``interrupted``, and the live model is the one before it.
    """
    data = _read_json(folder / STATUS) or {"state": "idle"}
    if data.get("state") == "running" and not running(folder):
        data["state"] = "interrupted"
    return data


def next_due(confirmations: int, folder: Path, every: int) -> int | None:
    """Confirmations still needed before the next retrain (0: due now); None when ``every`` is 0.

    Counted from the latest attempt, finished or failed, so a failing retrain is retried only
    after ``every`` more confirmations instead of on every label.
    """
    if every <= 0:
        return None
    last = status(folder).get("confirmations")
    if not isinstance(last, int):
        last = (live(folder) or {}).get("confirmations", 0)
    return max(0, every - (confirmations - int(last)))


@contextmanager
def _lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainBusy(f"another retrain of this catalogue is running (lock {folder / LOCK})") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def catalog_labelled_set(catalog: Any, *, split: bool) -> Any:
    """The catalogue's confirmed labels as a ``LabelledSet``; duplicate groups (``semcat duplicates
    --db``), where there are any, are the sample groups. ``split``: by content hash and group as a folder dataset, else
    every image in ``train`` (a retrain's calibration holds images out by cross-fitting instead)."""
    from semcat.dataset import assign_split
    from semcat.training import LabelledSet

    rows = catalog.confirmed_labels()
    keys = catalog.duplicate_keys()
    groups = [keys.get(h, h) for _, h, _ in rows]
    return LabelledSet([p for p, _, _ in rows], [lab for _, _, lab in rows],
                       [assign_split(g) if split else "train" for g in groups],
                       sorted({lab for _, _, lab in rows}), [], catalog.url,
                       groups if any(g != h for g, (_, h, _) in zip(groups, rows)) else None)


def _base(folder: Path, base: Path | None) -> tuple[FeatureSpec, list[str]]:
    """How the next model computes features (backbones, view, crop, precision) and the reviewers'
    choices: the live model's, else ``base``'s, else the defaults and the 10 NFFA categories."""
    from semcat import CATEGORIES
    from semcat.featurespec import FeatureSpec
    from semcat.model import load_model

    path = live_model_file(folder) or base
    if path is None:
        return FeatureSpec.resolve(precision="auto"), list(CATEGORIES)
    m = load_model(path)
    return m.trained_spec, choices(m)


def choices(model: Any) -> list[str]:
    """Classes a reviewer picks from with ``model`` live, in a fixed order: a retrained model keeps
    the choices of the one before it (then its own new classes), so each class keeps its key."""
    return list((model.meta.get("retrain") or {}).get("choices") or model.classes)


def calibration_summary(cal: dict[str, Any]) -> dict[str, Any]:
    held = cal.get("heldout") or {}
    return {"source": held.get("source"), "n": held.get("n"), "accuracy": held.get("accuracy"),
            "temperature": cal.get("temperature"), "t_auto": cal.get("t_auto"), "t_suggest": cal.get("t_suggest"),
            "ece_before": cal.get("ece_before"), "ece_after": cal.get("ece_after")}


def retrain(db_url: str, folder: Path, *, base: Path | None = None, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Train and calibrate a model on every confirmed label of ``db_url``; make it the live one.

    Returns the new ``live.json`` entry. Raises ``RetrainBusy`` when another retrain holds the
    lock, ``RetrainError`` (one line, also kept in ``status.json``) when no model could be made;
    either way the live model is unchanged.
    """
    with _lock(folder):
        from semcat.catalog import open_catalog

        with open_catalog(db_url) as cat:
            confirmations = cat.confirmation_count()
        state = {"state": "running", "pid": os.getpid(), "started": _now(), "confirmations": confirmations}
        atomic_write_text(folder / STATUS, json.dumps(state))
        try:
            entry = _train(db_url, folder, base, folds, seed) | {"confirmations": confirmations}
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            atomic_write_text(folder / STATUS, json.dumps(state | {"state": "failed", "finished": _now(),
                                                                    "reason": reason}))
            raise RetrainError(f"retrain failed, the live model is unchanged: {reason}") from exc
        atomic_write_text(folder / LIVE, json.dumps(entry, indent=1))
        atomic_write_text(folder / STATUS, json.dumps(state | {"state": "done", "finished": _now(),
                                                                "version": entry["version"]}))
        return entry


def _train(db_url: str, folder: Path, base: Path | None, folds: int, seed: int) -> dict[str, Any]:
    from semcat.calibration import calibrate_crossfit
    from semcat.catalog import open_catalog
    from semcat.crossfit import fold_groups
    from semcat.training import train_on_samples

    with open_catalog(db_url) as cat:
        data = catalog_labelled_set(cat, split=False)
    if not data.paths:
        raise ValueError("no confirmed labels with a file on disk yet")
    spec, kept = _base(folder, base)
    res = spec.extract(data.paths, store="default")
    ok, X, errors = res.paths, res.features, res.errors
    model, report = train_on_samples(data, spec, seed=seed, features=(res, 0.0), folds=folds)
    model.meta["retrain"] = {"choices": kept + [c for c in model.classes if c not in kept]}
    row = {p: i for i, p in enumerate(data.paths)}
    labels = [data.labels[row[p]] for p in ok]
    groups = fold_groups(ok, labels, [data.groups[row[p]] for p in ok] if data.groups else None)[0]
    cal, _ = calibrate_crossfit(model, X, labels, groups=groups, folds=folds, seed=seed)
    version = 1 + max([int(p.stem.rsplit("-v", 1)[1]) for p in folder.glob("model-v*.semcat")
                       if p.stem.rsplit("-v", 1)[1].isdigit()] or [0])
    path = model.save(folder / f"model-v{version:04d}.semcat")
    return {"version": version, "file": path.name, "model_id": model.model_id, "trained": report["trained"],
            "labels": len(ok), "unreadable": len(errors), "classes": list(model.classes),
            "weight_decay": report["weight_decay"], "calibration": calibration_summary(cal)}


def start_background(db_url: str, folder: Path, *, base: Path | None = None) -> subprocess.Popen | None:
    """Start ``semcat retrain`` for ``db_url`` in a process of its own (lowest CPU priority, its
    output in ``retrain.log``); None when one is already running. The URL goes through the
    environment, never the command line, so a password in it is not shown by ``ps``."""
    if running(folder):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [*(["nice", "-n", "10"] if shutil.which("nice") else []),
           sys.executable, "-m", "semcat.cli", "retrain", "--models-dir", str(folder)]
    if base is not None:
        cmd += ["--model", str(base)]
    with open(folder / LOG, "ab") as log:
        return subprocess.Popen(cmd, env={**os.environ, "SEMCAT_DB": db_url}, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
