"""One line naming the machine, for benchmark and reliability figures (numbers mean little without it)."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_description() -> str:
    """CPU model, its vector instruction sets, logical CPUs, OS and Python version, e.g. for a
    results file's header: inference speed depends on AVX2 vs AVX-512/VNNI/AMX as much as on cores."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({instruction_sets()}), {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


_ISA_NAMES = (  # (display name, any of these /proc/cpuinfo flags)
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx_vnni")),
    ("AMX", ("amx_tile",)),
    ("bf16", ("avx512_bf16", "amx_bf16")),
)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def instruction_sets(flags: set[str] | None = None) -> str:
    """The vector instruction sets that decide inference speed, e.g. ``AVX2 AVX-512 VNNI``.

    AMX/AVX-512 bf16 matter because OpenVINO would otherwise run bf16 on them (semcat asks for f32).
    """
    flags = cpu_flags() if flags is None else flags
    found = [name for name, keys in _ISA_NAMES if flags.intersection(keys)]
    return " ".join(found) if found else "none of AVX2/AVX-512/VNNI/AMX/bf16"


INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
"""Any of these gives int8 dot-product instructions, where ``--precision auto`` picks int8 (issue 21's
rule). Without them (AVX2 only) int8 still ran ~1.5x fp32 end to end where oneDNN was capped to AVX2
on an AVX-512 CPU (benchmarks/results/int8_speed-avx2.md), against ~2.3x with VNNI: auto keeps fp32
there, ``--precision int8`` is the user's choice."""


def has_int8_acceleration() -> bool:
    """Whether the CPU has VNNI or AMX int8 instructions (where int8 inference pays off)."""
    return bool(cpu_flags() & INT8_FLAGS)
