"""SI metadata in the units SEM operators read on their instrument: nm/µm, kV, mm, ×k, seconds.

Everything semcat stores and prints as JSON stays SI (metres, volts); only what people read (the
web image page, ``semcat inspect``'s text table) goes through here, so both show the same text.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

__all__ = ["pixel_size", "length", "voltage", "working_distance", "magnification", "timestamp", "file_size",
           "short_id", "METADATA_UNITS", "display_value", "display_label", "plural"]


def plural(n: int, noun: str) -> str:
    """``1 image``, ``2 images``: ``noun`` is the plural; a count of one drops its last ``s``."""
    return f"{n} {noun[:-1] if n == 1 and noun.endswith('s') else noun}"


def _num(x: float) -> str:
    """Three significant digits without exponent or trailing zeros: 182, 7.61, 0.85, 13.2."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def pixel_size(metres: float) -> str:
    """``1.82e-07`` → ``182 nm``; ``2.5e-06`` → ``2.5 µm``; below 1 nm stays in nm (``0.85 nm``)."""
    nm = metres * 1e9
    return f"{_num(nm / 1e3)} µm" if nm >= 1000 else f"{_num(nm)} nm"


def length(metres: float) -> str:
    """A length in nm, µm or mm, whichever reads in 1..999: ``2e-07`` → ``200 nm``, ``0.005`` → ``5 mm``."""
    for unit, scale in (("mm", 1e-3), ("µm", 1e-6)):
        if metres >= scale * (1 - 1e-9):
            return f"{_num(metres / scale)} {unit}"
    return f"{_num(metres * 1e9)} nm"


def voltage(volts: float) -> str:
    """Accelerating voltage: ``5000`` → ``5 kV``; below 1 kV in volts (``500 V``)."""
    return f"{_num(volts / 1e3)} kV" if abs(volts) >= 1000 else f"{_num(volts)} V"


def working_distance(metres: float) -> str:
    """``0.0076100000000000004`` → ``7.61 mm``."""
    return f"{_num(metres * 1e3)} mm"


def magnification(x: float) -> str:
    """``13189.99`` → ``×13.2 k``; below 1000 plain (``×850``)."""
    return f"×{_num(x / 1e3)} k" if x >= 1000 else f"×{_num(x)}"


def timestamp(value: datetime | str) -> str:
    """A datetime or ISO 8601 text to the second: ``2026-11-29 21:58:33`` (no microseconds).

    Text that is not ISO 8601 is returned unchanged: it is shown, never guessed at.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text} {value.tzname()}" if value.tzinfo is not None and value.tzname() else text


def file_size(n_bytes: int) -> str:
    """``1834567`` → ``1.83 MB`` (decimal units, as file managers show)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{_num(n_bytes / scale)} {unit}"
    return f"{n_bytes} B"


def short_id(value: str, keep: int = 12) -> str:
    """A 64-character sha256 or model id cut to ``keep`` characters + ``…`` for display (copy the full one)."""
    return value if len(value) <= keep + 1 else value[:keep] + "…"


METADATA_UNITS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "pixel_size_m": ("pixel size", pixel_size),
    "high_voltage_v": ("high voltage", voltage),
    "working_distance_m": ("working distance", working_distance),
    "magnification": ("magnification", magnification),
    "acquired": ("acquired", timestamp),
    "ingested": ("ingested", timestamp),
    "file_size": ("file size", file_size),
}
"""SI field name → (label an operator reads, formatter); other fields are shown as they are."""


def display_value(key: str, value: Any) -> str:
    """One metadata value as an operator reads it (unknown keys and non-numbers as plain text)."""
    unit = METADATA_UNITS.get(key)
    if unit is None or value is None or isinstance(value, bool):
        return "" if value is None else str(value)
    try:
        return unit[1](value)
    except (TypeError, ValueError):
        return str(value)


def display_label(key: str) -> str:
    """The row label for a metadata key: ``pixel_size_m`` → ``pixel size``, others with spaces."""
    unit = METADATA_UNITS.get(key)
    return unit[0] if unit else key.replace("_", " ")
