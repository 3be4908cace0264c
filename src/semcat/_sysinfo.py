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


_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that decide how fast fp32, int8 and bf16 inference can run."""
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""Any of these gives int8 dot-product instructions; without them int8 gains little over fp32."""


def instruction_sets() -> list[str]:
    """The inference-relevant instruction sets of this CPU (Linux /proc/cpuinfo; [] elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in _ISA_FLAGS if f in flags]


def has_int8_acceleration() -> bool:
    """Whether the CPU has VNNI or AMX int8 instructions (where int8 inference pays off)."""
    return any(f in INT8_FLAGS for f in instruction_sets())
