"""What machine a benchmark ran on: printed with every figure."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe() -> str:
    """One line: OS, architecture, CPU, cores, SIMD, library versions."""
    import numba
    import numpy

    simd = [f for f in ("avx512f", "avx2", "neon", "asimd") if f in cpu_flags()]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 1
    return (
        f"{platform.system()} {platform.machine()}, {cpu_model()}, {cores} cores"
        f"{' (' + '/'.join(simd) + ')' if simd else ''}, Python {platform.python_version()}, "
        f"numba {numba.__version__}, numpy {numpy.__version__}"
    )


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
