"""SEM acquisition metadata from vendor TIFF tags, normalised to SI units.

Microscopes store how an image was taken (magnification, pixel size, beam voltage, working
distance, detector, date) in private TIFF tags. Pixel size gives later stages the physical
scale; the rest is searchable in the catalog. Supported, via tifffile's own parsers where
they exist:

- Zeiss ``CZ_SEM`` (tag 34118): ``TiffFile.sem_metadata`` (``ap_*``/``dp_*``/``sv_*`` keys).
- FEI / Thermo Fisher ``FEI_SFEG`` (34680) and ``FEI_HELIOS`` (34682): ``TiffFile.fei_metadata``
  (INI-like ``[Section] key=value`` text, values already in SI units).
- TESCAN (50431, and the ``-tif.hdr`` sidecar): INI-like ``key=value`` text, values in SI units.
- JEOL ``.txt`` sidecar: ``$CM_KEY value`` lines (kV, mm, a scale-bar length for the pixel size).
- Hitachi ``.txt`` sidecar: ``[SemImageFile]`` ``Key=value unit`` lines (nm, Volt, um).

The three text formats are parsed here (no library reads them; RosettaSciIO neither); finding the
sidecar next to an image is :mod:`semcat.sidecar`'s job.

Only :func:`read_sem_metadata` touches files; :func:`parse_tiff_tags` works on an open
``tifffile.TiffFile`` so :func:`semcat.images.read_image` parses each file once.
:func:`zeiss_tag_payload` and :func:`fei_tag_payload` go the other way (values → vendor text) so
tests and the synthetic generator write files the way microscopes do.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import tifffile

__all__ = [
    "DISPLAY_WIDTH_M",
    "SemMetadata",
    "databar_rows_from_metadata",
    "fei_tag_payload",
    "parse_hitachi_text",
    "parse_jeol_text",
    "parse_tescan_text",
    "parse_tiff_tags",
    "read_sem_metadata",
    "zeiss_tag_payload",
]

_TESCAN_TAG = 50431

# Length units seen in vendor text, in metres.
_LENGTH = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "μm": 1e-6, "nm": 1e-9, "pm": 1e-12,
           "å": 1e-10, "a": 1e-10}
_VOLTAGE = {"v": 1.0, "volt": 1.0, "kv": 1e3, "mv": 1e6}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

DISPLAY_WIDTH_M = 0.128
"""Reference display width for magnification: a 4:3 image 128 mm x 96 mm (the Polaroid-era
convention SEM vendors kept), so magnification = ``DISPLAY_WIDTH_M`` / horizontal field width."""


@dataclass(frozen=True)
class SemMetadata:
    """What the instrument recorded about an acquisition; every quantity in SI units.

    ``raw`` keeps the vendor's parsed tag content (JSON-safe) for anything not mapped here.
    ``scan_rows`` is the number of scanned image rows when the vendor records it (FEI/Thermo
    store the scan height, JEOL ``$CM_FULL_SIZE``, Hitachi ``DataSize``, TESCAN the file height
    minus ``ImageStripSize``; the file's extra rows are the data bar). ``sidecar`` names the
    text file next to the image the metadata came from (None for metadata inside the file).
    """

    vendor: str | None = None
    instrument: str | None = None
    magnification: float | None = None
    pixel_size_m: float | None = None
    high_voltage_v: float | None = None
    working_distance_m: float | None = None
    detector: str | None = None
    acquired: datetime | None = None
    scan_rows: int | None = None
    sidecar: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the datetime as ISO 8601 text, raw values made JSON-safe."""
        d = asdict(self)
        d["acquired"] = self.acquired.isoformat() if self.acquired else None
        d["raw"] = _json_safe(self.raw)
        return d


def read_sem_metadata(path: str | Path) -> SemMetadata | None:
    """SEM metadata of a TIFF file, or None when the file has none (or is not a TIFF)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return parse_tiff_tags(tif)
    except (tifffile.TiffFileError, OSError, ValueError):
        return None


def parse_tiff_tags(tif: tifffile.TiffFile, *, full: bool = True) -> SemMetadata | None:
    """SEM metadata from the first page's vendor tags of an open TIFF; None when absent.

    A malformed vendor payload never raises: the image is still usable without metadata.
    ``full=False`` reads only what can decide a data-bar crop (:func:`databar_rows_from_metadata`):
    Zeiss records no bar height, so its tag is not parsed (~2 ms for a real file's ~700 entries,
    tifffile's parser) and the result names the vendor alone.
    """
    try:
        if tif.is_fei:
            return _from_fei(tif.fei_metadata or {})
        if tif.is_sem:
            if not full:
                return SemMetadata(vendor="Zeiss")
            return _from_zeiss(tif.sem_metadata or {}, tif.pages.first.imagewidth)
        tag = tif.pages.first.tags.get(_TESCAN_TAG)
        if tag is not None:
            text = tag.value.decode("utf-8", "replace") if isinstance(tag.value, bytes) else str(tag.value)
            return parse_tescan_text(text, tif.pages.first.imagelength)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError):
        return None
    return None


def databar_rows_from_metadata(meta: SemMetadata | None, image_rows: int) -> int | None:
    """Data-bar height implied by the metadata (file rows - scanned rows), or None.

    Trusted only when it is plausible: positive and under 40% of the image height. Zeiss
    ``CZ_SEM`` records no such height: its store resolution and ``ap_height`` / pixel size give
    the whole file (the data zone is drawn over the scan) and ``dp_zone`` reads 1 with and
    without a visible zone, so Zeiss bars are left to :func:`semcat.images.detect_databar`.
    """
    if meta is None or not meta.scan_rows:
        return None
    extra = image_rows - meta.scan_rows
    if 0 < extra < 0.4 * image_rows:
        return extra
    return None


# --- FEI / Thermo Fisher -------------------------------------------------------------------

def _from_fei(md: dict[str, Any]) -> SemMetadata | None:
    if not md:
        return None

    def get(section: str, key: str) -> Any:
        sec = md.get(section)
        return sec.get(key) if isinstance(sec, dict) else None

    beam = get("Beam", "Beam")  # "EBeam" or "IBeam": names the section holding HV/WD
    hv = _pos(get("Beam", "HV")) or _pos(get(str(beam), "HV")) or _pos(get("EBeam", "HV"))
    wd = (_pos(get("Stage", "WorkingDistance")) or _pos(get(str(beam), "WD"))
          or _pos(get("EBeam", "WD")))
    scan = get("Beam", "Scan") or "Scan"
    pixel = _pos(get(str(scan), "PixelWidth")) or _pos(get("Scan", "PixelWidth"))
    hfw = _pos(get(str(scan), "HorFieldsize")) or _pos(get("Scan", "HorFieldsize"))
    # Magnification relative to the recorded display width (FEI's own definition).
    display = _pos(get("Image", "ScreenMagCanvasRealWidth")) or _pos(get("System", "DisplayWidth"))
    mag = _pos(get("Image", "Magnification")) or (display / hfw if display and hfw else None)
    name = get("Detectors", "Name")
    mode = get("Detectors", "Mode")
    detector = " ".join(str(x) for x in (name, mode) if x not in (None, "")) or None
    instrument = get("System", "SystemType") or get("System", "Type")
    acquired = _parse_datetime(get("User", "Date"), get("User", "Time"))
    scan_rows = get("Image", "ResolutionY")
    return SemMetadata(
        vendor="FEI/Thermo Fisher",
        instrument=_str(instrument),
        magnification=mag,
        pixel_size_m=pixel,
        high_voltage_v=hv,
        working_distance_m=wd,
        detector=detector,
        acquired=acquired,
        scan_rows=int(scan_rows) if isinstance(scan_rows, (int, float)) and scan_rows > 0 else None,
        raw=md,
    )


# --- Zeiss ---------------------------------------------------------------------------------

def _from_zeiss(md: dict[str, Any], columns: int) -> SemMetadata | None:
    entries = {k: v for k, v in md.items() if k and isinstance(v, tuple) and len(v) >= 2}
    if not entries:
        return None

    def value(key: str) -> tuple[Any, str]:
        item = entries.get(key)
        if item is None:
            return None, ""
        return item[1], (item[2] if len(item) > 2 else "")

    # "Pixel Size" is Zeiss's pixel for a 1024-column scan of the field (RosettaSciIO's rule,
    # checked on real 512- and 2048-column files); "Image Pixel Size" (newer SmartSEM) and
    # "Width" / columns are the stored image's own.
    ref = _length(*value("ap_pixel_size"))
    width = _length(*value("ap_width"))
    pixel = (_length(*value("ap_image_pixel_size")) or (width / columns if width else None)
             or (ref * 1024 / columns if ref else None))
    wd = _length(*value("ap_wd"))
    hv = _voltage(*value("ap_actualkv")) or _voltage(*value("ap_manualkv"))
    mag = _zeiss_mag(value("ap_mag")[0])
    detector = value("dp_detector_channel")[0] or value("dp_detector_type")[0]
    instrument = value("sv_instrument_id")[0] or value("sv_serial_number")[0]
    acquired = _parse_datetime(value("ap_date")[0], value("ap_time")[0])
    return SemMetadata(
        vendor="Zeiss",
        instrument=_str(instrument),
        magnification=mag,
        pixel_size_m=pixel,
        high_voltage_v=hv,
        working_distance_m=wd,
        detector=_str(detector),
        acquired=acquired,
        raw={k: list(v) for k, v in entries.items()},
    )


def _zeiss_mag(value: Any) -> float | None:
    """Zeiss writes magnification as text: '20.00 K X', '1.50 KX', '500 X'."""
    if isinstance(value, (int, float)):
        return _pos(value)
    if not isinstance(value, str):
        return None
    m = re.match(r"\s*([0-9.]+)\s*([kKmM]?)\s*[xX]?\s*$", value)
    if not m:
        return None
    scale = {"": 1.0, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    return _pos(float(m.group(1)) * scale)


# --- TESCAN, JEOL, Hitachi (text) ------------------------------------------------------------

def parse_tescan_text(text: str, image_rows: int | None = None) -> SemMetadata | None:
    """TESCAN ``[MAIN]``/``[SEM]`` ``key=value`` text (SI units), from tag 50431 or a ``-tif.hdr`` file.

    ``ImageStripSize`` is the height of TESCAN's info strip, so with ``image_rows`` (the file's
    height) it gives ``scan_rows``.
    """
    md = _key_values(text)
    if not md:
        return None
    strip = md.get("ImageStripSize")
    scan_rows = image_rows - strip if isinstance(strip, int) and image_rows and 0 < strip < image_rows else None
    return SemMetadata(
        vendor="TESCAN",
        instrument=_str(md.get("Device")),
        magnification=_pos(md.get("Magnification")),
        pixel_size_m=_pos(md.get("PixelSizeX")),
        high_voltage_v=_pos(md.get("HV")),
        working_distance_m=_pos(md.get("WD")),
        detector=_str(md.get("Detector")),
        acquired=_parse_datetime(md.get("Date"), md.get("Time")),
        scan_rows=scan_rows,
        raw=md,
    )


def parse_jeol_text(text: str) -> SemMetadata | None:
    """A JEOL SEM ``.txt`` sidecar (``$CM_FORMAT JEOL/SEM``): ``$KEY value`` lines; None if not one.

    kV (``$CM_ACCEL_VOLT``), mm (``$$SM_WD``); the pixel size is the scale bar's length
    (``$$SM_MICRON_MARKER``, e.g. ``5um``) over its pixels (``$$SM_MICRON_BAR``); ``$CM_FULL_SIZE``
    is the scanned width and height, above any data bar the file carries.
    """
    md: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, val = line.strip().partition(" ")
        if key.startswith("$") and key.lstrip("$"):
            md[key.lstrip("$")] = _number(val.strip())
    if not any(k.startswith("CM_") for k in md):
        return None
    marker_m, bar_px = _si(md.get("SM_MICRON_MARKER"), _LENGTH), _pos(md.get("SM_MICRON_BAR"))
    return SemMetadata(
        vendor="JEOL",
        instrument=_str(md.get("CM_INSTRUMENT")),
        magnification=_pos(md.get("CM_MAG")),
        pixel_size_m=marker_m / bar_px if marker_m and bar_px else None,
        high_voltage_v=_si(md.get("CM_ACCEL_VOLT"), _VOLTAGE, "kv"),
        working_distance_m=_si(md.get("SM_WD"), _LENGTH, "mm"),
        detector=_str(md.get("CM_SIGNAL")),
        acquired=_parse_datetime(md.get("CM_DATE"), md.get("CM_TIME")),
        scan_rows=_size_rows(md.get("CM_FULL_SIZE"), " "),
        raw=md,
    )


def parse_hitachi_text(text: str) -> SemMetadata | None:
    """A Hitachi ``.txt`` sidecar (``[SemImageFile]``, S-4800/SU/TM series); None if not one.

    ``PixelSize`` in nm, ``AcceleratingVoltage=15000 Volt``, ``WorkingDistance=8100 um``,
    ``DataSize=1280x960`` (the scanned image, above any data bar the file carries).
    """
    md = _key_values(text)
    if "[SemImageFile]" not in text and not {"InstructName", "AcceleratingVoltage", "PixelSize"} & md.keys():
        return None
    return SemMetadata(
        vendor="Hitachi",
        instrument=_str(md.get("InstructName")),
        magnification=_pos(md.get("Magnification")),
        pixel_size_m=_si(md.get("PixelSize"), _LENGTH, "nm"),
        high_voltage_v=_si(md.get("AcceleratingVoltage"), _VOLTAGE, "v"),
        working_distance_m=_si(md.get("WorkingDistance"), _LENGTH),
        detector=_str(md.get("SignalName")),
        acquired=_parse_datetime(md.get("Date"), md.get("Time")),
        scan_rows=_size_rows(md.get("DataSize"), "x"),
        raw=md,
    )


def _key_values(text: str) -> dict[str, Any]:
    """``key=value`` lines of INI-like text, sections ignored (vendors do not repeat keys)."""
    md: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, val = line.partition("=")
        if sep and key.strip() and not key.strip().startswith("["):
            md[key.strip()] = _number(val.strip())
    return md


def _si(value: Any, units: dict[str, float], default_unit: str = "") -> float | None:
    """``15000 Volt`` / ``8100 um`` / ``5um`` / a bare number (in ``default_unit``) → SI, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = value, ""
    else:
        m = re.match(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9]*)\s*$", str(value or ""))
        if not m:
            return None
        number, unit = float(m.group(1)), m.group(2)
    v, factor = _pos(number), units.get((unit or default_unit).lower())
    return v * factor if v is not None and factor is not None else None


def _size_rows(value: Any, sep: str) -> int | None:
    """Rows of a ``W H`` / ``WxH`` size text; None when it is not two positive integers."""
    parts = str(value or "").lower().split(sep)
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts) and int(parts[1]) > 0:
        return int(parts[1])
    return None


# --- writing vendor tags (values → text) ------------------------------------------------------

def zeiss_tag_payload(*, pixel_size_m: float, magnification: float, high_voltage_v: float,
                      working_distance_m: float, detector: str, acquired: datetime,
                      serial_number: str | None = None, columns: int = 1024) -> str:
    """Text of a Zeiss ``CZ_SEM`` tag (34118) as SmartSEM writes it; write it with tifffile as
    ``extratags=[(34118, "s", 0, text, True)]``.

    Upper-case key lines, each followed by ``Label = value unit``. Reading it back returns the
    arguments up to Zeiss's rounding: 4 significant digits, magnification as ``20.00 K X``.
    ``detector`` must be one word (``InLens``, ``SE2``), as Zeiss names its channels.
    ``pixel_size_m`` is the stored image's pixel (``columns`` wide); like SmartSEM, the unlabelled
    leading numbers and ``Pixel Size`` give the pixel of a 1024-column scan of the same field,
    ``Image Pixel Size`` the stored one.
    """
    mag = f"{magnification / 1e3:.2f} K X" if magnification >= 1e3 else f"{magnification:.0f} X"
    ref = pixel_size_m * columns / 1024
    lines = [
        "0", "0", "0", f"{ref:.7g}", f"{magnification:.7g}",
        "AP_PIXEL_SIZE", f"Pixel Size = {ref * 1e9:.4g} nm",
        "AP_IMAGE_PIXEL_SIZE", f"Image Pixel Size = {pixel_size_m * 1e9:.4g} nm",
        "AP_MAG", f"Mag = {mag}",
        "AP_WD", f"WD = {working_distance_m * 1e3:.4g} mm",
        "AP_ACTUALKV", f"EHT = {high_voltage_v / 1e3:.2f} kV",
        "DP_DETECTOR_CHANNEL", f"Signal A = {detector}",
        "AP_DATE", f"Date :{acquired.day:02d} {_MONTHS[acquired.month - 1]} {acquired.year}",
        "AP_TIME", f"Time :{acquired:%H:%M:%S}",
    ]
    if serial_number:
        lines += ["SV_SERIAL_NUMBER", f"Serial No. = {serial_number}"]
    return "\r\n".join([*lines, ""])


def fei_tag_payload(*, pixel_size_m: float, columns: int, scan_rows: int, high_voltage_v: float,
                    working_distance_m: float, detector: str, acquired: datetime, mode: str = "SE",
                    system_type: str = "Quanta 250 FEG", display_width_m: float = DISPLAY_WIDTH_M) -> str:
    """Text of an FEI/Thermo tag (34682, or 34680 on older instruments) as xT writes it.

    INI sections with SI values. The field width is ``pixel_size_m * columns`` and magnification
    follows from ``display_width_m`` as FEI defines it; ``scan_rows`` is the scanned height, so
    any rows of the file below it are the data bar.
    """
    hfw = pixel_size_m * columns
    sections: dict[str, dict[str, Any]] = {
        "User": {"Date": f"{acquired:%m/%d/%Y}",
                 "Time": f"{acquired.hour % 12 or 12:02d}:{acquired:%M:%S} {'PM' if acquired.hour >= 12 else 'AM'}"},
        "System": {"Type": "SEM", "SystemType": system_type, "DisplayWidth": display_width_m},
        "Beam": {"HV": high_voltage_v, "Beam": "EBeam", "Scan": "EScan"},
        "EBeam": {"HV": high_voltage_v, "WD": working_distance_m},
        "Scan": {"PixelWidth": pixel_size_m, "PixelHeight": pixel_size_m, "HorFieldsize": hfw,
                 "VerFieldsize": pixel_size_m * scan_rows},  # xT repeats [Scan] as [EScan]/[IScan]
        "EScan": {"PixelWidth": pixel_size_m, "PixelHeight": pixel_size_m, "HorFieldsize": hfw,
                  "VerFieldsize": pixel_size_m * scan_rows},
        "Stage": {"WorkingDistance": working_distance_m},
        "Image": {"ResolutionX": int(columns), "ResolutionY": int(scan_rows)},
        "Detectors": {"Name": detector, "Mode": mode},
    }
    lines = []
    for name, entries in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in entries.items()]
    return "\r\n".join([*lines, ""])


# --- shared helpers ------------------------------------------------------------------------

def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _pos(value: Any) -> float | None:
    """A finite positive float, else None (vendors write 0 or text for 'unknown')."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        v = float(value)
    except OverflowError:  # a 400-digit integer in vendor text
        return None
    return v if math.isfinite(v) and v > 0 else None


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    s = str(value).strip()
    return s or None


def _length(value: Any, unit: str) -> float | None:
    v = _pos(value)
    factor = _LENGTH.get(unit.strip().lower())
    return v * factor if v is not None and factor is not None else None


def _voltage(value: Any, unit: str) -> float | None:
    v = _pos(value)
    factor = _VOLTAGE.get(unit.strip().lower())
    return v * factor if v is not None and factor is not None else None


_DATE_FORMATS = ("%m/%d/%Y", "%d %b %Y", "%Y-%m-%d", "%d.%m.%Y", "%Y.%m.%d", "%d/%m/%Y", "%Y/%m/%d")
_TIME_FORMATS = ("%I:%M:%S %p", "%H:%M:%S", "%H:%M")


def _parse_datetime(day: Any, clock: Any) -> datetime | None:
    """Combine vendor date and time text; None when the date cannot be read."""
    d = _parse_with(str(day).strip(), _DATE_FORMATS) if day not in (None, "") else None
    if d is None:
        return None
    t = _parse_with(str(clock).strip(), _TIME_FORMATS) if clock not in (None, "") else None
    return datetime.combine(d.date(), t.time() if t else time())


def _parse_with(text: str, formats: tuple[str, ...]) -> datetime | None:
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)
