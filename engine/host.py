"""The host process: the machine line printed with every figure, resident memory, C heap.

One place for what benchmarks, load reports and the daemon's stats say about the machine
and the process (Linux ``/proc`` first, portable fallbacks elsewhere).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import resource
import sys
from pathlib import Path

from edgebnn.kernels.threads import cpu_count

_STATUS = Path("/proc/self/status")
_STATM = Path("/proc/self/statm")


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
    """The CPU's feature flags from /proc/cpuinfo (empty where unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_line() -> str:
    """One line: OS, architecture, CPU, cores, SIMD, library versions."""
    import numba  # here, not at the top: `import edgebnn` does not load Numba
    import numpy

    simd = [f for f in ("avx512f", "avx2", "neon", "asimd") if f in cpu_flags()]
    return (
        f"{platform.system()} {platform.machine()}, {cpu_model()}, {cpu_count()} cores"
        f"{' (' + '/'.join(simd) + ')' if simd else ''}, Python {platform.python_version()}, "
        f"numba {numba.__version__}, numpy {numpy.__version__}"
    )


def rss_bytes() -> int:
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        pages = int(_STATM.read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _ru_maxrss_bytes()


def current_rss_mb() -> float:
    """Resident set size now, in MiB."""
    return rss_bytes() / 2**20


def peak_rss_mb() -> float:
    """The peak resident set size (since start, or since :func:`reset_peak`), in MiB."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return _ru_maxrss_bytes() / 2**20


def process_memory(pid: int) -> dict[str, int]:
    """Rss, Pss and Uss (private clean + dirty) of process ``pid`` in bytes, from Linux's
    /proc/PID/smaps_rollup (Pss shares each shared page among the processes mapping it)."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            values[key] = int(rest.split()[0]) * 1024
    return {
        "rss": values.get("Rss", 0),
        "pss": values.get("Pss", 0),
        "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so a later peak is one step's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _glibc() -> ctypes.CDLL | None:
    """glibc as a ctypes library, or None (musl, macOS, ...)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.malloc_trim, lib.mallopt  # noqa: B018  (both must exist: glibc)
    except (OSError, AttributeError):
        return None
    return lib


#: glibc ``mallopt`` parameter: the size from which blocks are mmap-ed.
M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(size: int = 16 << 20) -> bool:
    """Pin glibc's mmap threshold (default: it rises each time a large block is freed);
    False if not glibc, or if ``MALLOC_MMAP_THRESHOLD_`` is set (that wins).

    Call it before starting threads. With the moving threshold, the daemon's capture,
    inference and OpenMP threads kept ~30 MB more in their arenas at 450 frames/s than at
    250: steady RSS 255 MB. Pinned, blocks below ``size`` (frames, inputs: < 1 MB) come from
    the arenas and are reused, and the arenas are trimmed as usual: 224-228 MB and
    266-271 frames/s sustained (``edgebnn bench --daemon``; pinned at 128 KB instead, every
    frame is an mmap/munmap: 224 MB but 240 frames/s). 16 MB is within glibc's limit on
    32-bit too.
    """
    lib = _glibc()
    if lib is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return bool(lib.mallopt(M_MMAP_THRESHOLD, int(size)))


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim``); False elsewhere.

    Compiling or loading Numba kernels frees tens of MB inside glibc's arenas that the
    process would otherwise keep: measured here, 219 -> 191 MB RSS after warming up the
    headline network.
    """
    lib = _glibc()
    if lib is None:
        return False
    lib.malloc_trim.argtypes = [ctypes.c_size_t]
    lib.malloc_trim(0)
    return True
