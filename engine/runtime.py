"""Process-wide runtime settings: Numba's thread count and the parallel backend."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def parallel_available() -> bool:
    """True when kernels are compiled with ``parallel=True`` (not on 32-bit ARM)."""
    from edgebnn.kernels._jit import PARALLEL

    return PARALLEL


def set_threads(n: int | None) -> int:
    """Set the number of threads parallel kernels use (None: all cores); returns it.

    Call it from the thread that runs inference (Numba's default threading layer is not
    re-entrant: parallel kernels must be called from one thread only).
    """
    import numba

    if not parallel_available():
        log.info("numba parallel backend unavailable on this platform: kernels run serially")
        return 1
    limit = numba.config.NUMBA_NUM_THREADS
    wanted = limit if n is None else max(1, min(int(n), limit))
    numba.set_num_threads(wanted)
    return wanted


def _glibc():  # type: ignore[no-untyped-def]
    """glibc as a ctypes library, or None (musl, macOS, ...)."""
    import ctypes
    import ctypes.util

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
    import ctypes

    lib = _glibc()
    if lib is None:
        return False
    lib.malloc_trim.argtypes = [ctypes.c_size_t]
    lib.malloc_trim(0)
    return True


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
