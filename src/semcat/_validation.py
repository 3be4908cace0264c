"""Input checks at every public entry of the head, metrics and model, with messages that fix things.

scikit-learn style: validate once at the boundary; each error says what was expected, what was
given, and what to do about it.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

from semcat.errors import NotFittedError

__all__ = [
    "MAX_COUNT",
    "MAX_LIMIT",
    "MAX_OFFSET",
    "MAX_QUERY_TEXT",
    "backbones_with_width",
    "check_count",
    "check_consistent_length",
    "check_features",
    "check_is_fitted",
    "check_labels",
    "check_number",
    "check_query_text",
]

MAX_OFFSET = 1_000_000_000
"""Largest offset a catalogue query accepts (far beyond any archive, far inside 64-bit arithmetic)."""
MAX_LIMIT = 100_000
"""Largest number of rows one catalogue query may ask for (web pages cap lower)."""
MAX_QUERY_TEXT = 4096
"""Longest path-substring search, in characters: a whole Linux path (4096 bytes) fits; SQLite
refuses LIKE patterns over 50,000."""
MAX_COUNT = 2**31 - 1
"""Largest count a CLI option takes (--limit, -k, --top-k, --batch-size): beyond it SQL integers
and array sizes overflow."""


def check_features(
    X: object,
    *,
    name: str = "X",
    n_features: int | None = None,
    backbone: str | None = None,
    min_samples: int = 1,
) -> np.ndarray:
    """Return ``X`` as a C-contiguous float32 array of shape (n_samples, n_features).

    Refuses 1-D input, NaN/inf, too few rows and (when ``n_features`` is given) another width;
    the width message names the backbones behind both widths and the re-extract command.
    """
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric feature array; got dtype {arr.dtype}.")
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got a 1-D array of length {arr.shape[0]}. "
            "Use X.reshape(1, -1) for a single sample or X.reshape(-1, 1) for a single feature."
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}.")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} sample(s); got {arr.shape[0]}.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad} row(s); expected finite features. "
            "Re-extract the features of those images (`semcat features ...`) or drop them."
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(_width_message(arr.shape[1], n_features, backbone))
    return arr


def _width_message(got: int, expected: int, backbone: str | None) -> str:
    trained = backbone or _names(backbones_with_width(expected)) or "an unknown backbone"
    given = _names(backbones_with_width(got)) or "an unknown backbone"
    fix = f"semcat features DATA_DIR --backbone {backbone}" if backbone else "semcat features DATA_DIR --backbone NAME"
    return (
        f"features are {got} wide (from {given}) but this head was trained on {expected}-wide "
        f"features (from {trained}). Re-extract the features with the model's backbone: `{fix}`, "
        "or train a new model on the backbone you used."
    )


def _names(names: list[str]) -> str:
    return " or ".join(names[:3])


def backbones_with_width(width: int) -> list[str]:
    """Registered backbone names whose pooled features are ``width`` wide (empty if none/unknown)."""
    try:
        from semcat.backbones import get_backbone, list_backbones
    except ImportError:
        return []
    out = []
    for name in list_backbones():
        try:
            if get_backbone(name).feature_dim == width:
                out.append(name)
        except Exception:  # a registry entry that cannot be resolved here is just not a candidate
            continue
    return out


def check_labels(y: object, *, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 1-D array of class labels (strings or integers)."""
    arr = np.asarray(y)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample); got shape {arr.shape}.")
    return arr


def check_consistent_length(**arrays: Sequence | np.ndarray) -> None:
    """All arrays have the same number of samples; the error lists every length found."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        found = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(f"inputs must have the same number of samples; got {found}.")


def check_is_fitted(estimator: object, attribute: str = "coef_") -> None:
    """Raise ``NotFittedError`` naming the estimator when it has not been trained."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet: call .fit(X, y) first "
            "(or train a model with `semcat train`)."
        )


# ---- query bounds: the one place the web edge and the CLI check search and paging parameters ----

def check_count(name: str, value: object, *, most: int, least: int = 0) -> int:
    """``value`` (an int or decimal text) as an int in ``least..most``, else a one-line ``ValueError``."""
    text = str(value).strip()
    digits = text[1:] if text[:1] in "+-" else text
    number = int(text) if 0 < len(text) <= 40 and digits.isascii() and digits.isdigit() else None
    if number is None or not least <= number <= most:
        raise ValueError(f"{name}: expected a whole number from {least} to {most:,}; got {_shown(text)}")
    return number


def check_number(name: str, value: object, *, low: float | None = None, high: float | None = None) -> float | None:
    """``value`` as a finite float within ``low..high`` (None for empty), else a one-line ``ValueError``.

    ``nan`` compares false with everything, so a NaN bound silently matched nothing; refused here.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    want = "a finite number" + (f" from {low} to {high}" if low is not None and high is not None else "")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {want}; got {_shown(str(value))}") from None
    if not np.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{name}: expected {want}; got {_shown(str(value))}")
    return number


def check_query_text(name: str, value: str | None, *, most: int = MAX_QUERY_TEXT) -> str | None:
    """Search text without control characters (NUL, newline ...) or lone surrogates, at most ``most`` characters.

    None for empty. A NUL cut the pattern short in SQLite and matched every path.
    """
    if value is None or value == "":
        return None
    if len(value) > most:
        raise ValueError(f"{name}: expected at most {most:,} characters; got {len(value):,}")
    bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"{name}: expected printable text; got the control character {bad!r} "
                         f"at position {value.index(bad)}")
    return value


def _shown(text: str) -> str:
    """A value quoted for an error message, cut short so a huge input never floods a log line."""
    return repr(text[:40] + "…") if len(text) > 40 else repr(text)
