"""One line naming the machine, for benchmark and reliability figures (numbers mean little without it)."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_description() -> str:
    """CPU model, logical CPUs, OS and Python version, e.g. for a results file's header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def instruction_sets() -> str:
    """The SIMD instruction sets the CPU reports (e.g. ``sse4_2 avx2 avx512f``): vectorised
    timings depend on them."""
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "neon", "asimd")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return " ".join(w for w in wanted if w in have) or "none of " + ", ".join(wanted)
    except OSError:
        pass
    return "unknown"
