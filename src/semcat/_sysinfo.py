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
