"""Vendor acquisition tags (Zeiss ``CZ_SEM``, FEI/Thermo) for written TIFFs, consistent with the image.

Why: catalogue filters on magnification and pixel size need real-looking metadata. Shots of one
sample share a session (instrument, beam, detector, field width at the category's usual scale)
and were taken minutes apart; pixel size = field width / columns, magnification against
:data:`semcat.semmeta.DISPLAY_WIDTH_M`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from semcat.semmeta import DISPLAY_WIDTH_M, fei_tag_payload, zeiss_tag_payload
from semcat.synth._render import Shape

# Horizontal field width (m) each kind of sample is usually imaged at, for a look with zoom 1:
# powders and devices at tens of x, particles and films at tens of thousands of x.
_FIELD_WIDTH_M: dict[str, tuple[float, float]] = {
    "Porous_Sponge": (1e-6, 30e-6),
    "Patterned_surface": (2e-6, 50e-6),
    "Particles": (0.5e-6, 10e-6),
    "Films_Coated_Surface": (0.5e-6, 20e-6),
    "Powder": (20e-6, 1e-3),
    "Tips": (2e-6, 100e-6),
    "Nanowires": (2e-6, 40e-6),
    "Biological": (3e-6, 200e-6),
    "MEMS_devices_and_electrodes": (20e-6, 2e-3),
    "Fibres": (10e-6, 1e-3),
}


def reference_field_m(category: str) -> float:
    """The field width (m) a zoom-1 view of ``category`` spans: the geometric middle of its usual
    range. Synthetic instruments derive each shot's pixel size from it, so a structure measures
    the same in nm whatever the magnification (:mod:`semcat.synth.instruments`)."""
    lo, hi = _FIELD_WIDTH_M[category]
    return math.sqrt(lo * hi)


_ZEISS_TAG, _FEI_TAG = 34118, 34682
_ZEISS_SERIALS = ("4142-52-13", "6102-31-07", "4310-88-21")
_ZEISS_DETECTORS = ("InLens", "SE2", "ESB")
_FEI_SYSTEMS = ("Quanta 250 FEG", "Helios NanoLab 660", "Nova NanoSEM 450")
_FEI_DETECTORS = (("ETD", "SE"), ("TLD", "SE"), ("CBS", "BSE"))
_KV = (1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0)


@dataclass(frozen=True)
class _Session:
    """One sample's acquisition settings on one instrument: its shots share them."""

    zeiss: bool
    field_width_m: float
    high_voltage_v: float
    working_distance_m: float
    detector: int
    instrument: int
    start: datetime


def _draw_session(rng: np.random.Generator, category: str, zoom: float, zeiss: bool) -> _Session:
    lo, hi = _FIELD_WIDTH_M[category]
    return _Session(
        zeiss=zeiss,
        field_width_m=float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) / zoom,
        high_voltage_v=float(rng.choice(_KV)) * 1e3,
        working_distance_m=round(float(rng.uniform(3.0, 12.0)), 2) * 1e-3,
        detector=int(rng.integers(0, 3)),
        instrument=int(rng.integers(0, 3)),
        start=datetime(2012, 1, 2, 8) + timedelta(days=int(rng.integers(0, 13 * 365)),
                                                   seconds=int(rng.integers(0, 9 * 3600))),
    )


def _metadata_tag(session: _Session, shot: int, shape: Shape) -> tuple[int, str]:
    """(TIFF tag, vendor text) of shot number ``shot`` of a session, for a ``shape`` scan."""
    rows, cols = shape
    pixel = session.field_width_m / cols
    when = session.start + timedelta(seconds=97 * shot)  # a shot every minute and a half
    if session.zeiss:
        return _ZEISS_TAG, zeiss_tag_payload(
            pixel_size_m=pixel, magnification=DISPLAY_WIDTH_M / session.field_width_m,
            high_voltage_v=session.high_voltage_v, working_distance_m=session.working_distance_m,
            detector=_ZEISS_DETECTORS[session.detector], acquired=when,
            serial_number=_ZEISS_SERIALS[session.instrument], columns=cols)
    name, mode = _FEI_DETECTORS[session.detector]
    return _FEI_TAG, fei_tag_payload(
        pixel_size_m=pixel, columns=cols, scan_rows=rows, high_voltage_v=session.high_voltage_v,
        working_distance_m=session.working_distance_m, detector=name, mode=mode, acquired=when,
        system_type=_FEI_SYSTEMS[session.instrument])


def _set_tag(metadata: bool, key: list[int], category: str, zoom: float, i: int,
             shape: Shape) -> tuple[int, str] | None:
    """Vendor tag of image ``i`` of an alignment/blend set: one session per image, vendors alternate."""
    if not metadata:
        return None
    return _metadata_tag(_draw_session(np.random.default_rng(key), category, zoom, zeiss=i % 2 == 0), 0, shape)
