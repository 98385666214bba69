"""Threads: Numba's threading layer and thread count, NumPy's BLAS threads, the cores.

The one module that decides how many threads kernels run on.

Threading layer: applied on ``import edgebnn``, before any kernel is launched. Numba picks its threading layer when the first parallel kernel runs, from
``numba.config.THREADING_LAYER_PRIORITY`` (TBB first by default). Set only when a kernel
module was imported, the order came too late for a program that touched Numba's threads
first (``numba.set_num_threads`` before building a network): it got TBB, and the headline
network ran at 3.2 ms/frame instead of 2.5 at 2 threads here. So the package sets it on
import; a user's ``NUMBA_THREADING_LAYER(_PRIORITY)``, ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` still wins. Numba itself is not imported here (the CLI's light commands
stay light); if it is already loaded, its config is updated too.

OpenMP first with a short spin, TBB last. Measured here, ms/frame at 2 threads, idle and
with both cores busy with other processes (headline d-series / EfficientNet-Lite0):
  OpenMP, libgomp's default long spin        4.1-5.3 / 6.3  | busy: 38-128 / 16
  OpenMP, GOMP_SPINCOUNT=3000 (our default)   4.3     / 6.6  | busy: 10    / 17
  OpenMP, OMP_WAIT_POLICY=PASSIVE             5.2-5.8 / 10.7 | busy: 15-17 / 13
  workqueue                                   6.3-6.9        | busy: 31
  TBB                                         8.5 at 1 and 2 threads; kept ~7 KB per launch
A device that also decodes video never has its cores to itself: a spinning barrier that
waits for a descheduled thread is what made the busy case collapse.

BLAS threads: the pointwise convolutions run as BLAS GEMMs (:mod:`edgebnn.kernels.pointwise`);
the BLAS has its own thread pool beside Numba's, sized to every core by default.
Benchmarks at one thread and services that leave a core free must size both. This finds
the OpenBLAS that NumPy loaded (``/proc/self/maps``) and calls its ``*set_num_threads*``,
as threadpoolctl does; without OpenBLAS (another BLAS, not Linux) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import struct
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Threading layers in order of preference.
PRIORITY = ("omp", "workqueue", "tbb")

#: True when kernels are compiled with ``parallel=True``. Decided by the Python process's
#: pointer size, not ``platform.machine()``: 32-bit Raspberry Pi OS on a 64-bit kernel
#: reports ``aarch64`` while its numba 0.56 has no parallel backend. ``EDGEBNN_SERIAL=1``
#: forces the serial build.
PARALLEL: bool = (
    struct.calcsize("P") == 8
    and platform.machine().lower() not in ("armv6l", "armv7l", "armv8l", "arm")
    and os.environ.get("EDGEBNN_SERIAL", "") in ("", "0")
)


def apply_defaults() -> None:
    """Prefer OpenMP with a short spin unless the user chose a layer or a wait policy."""
    if (
        "NUMBA_THREADING_LAYER" not in os.environ
        and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ
    ):
        os.environ["NUMBA_THREADING_LAYER_PRIORITY"] = " ".join(PRIORITY)
        numba = sys.modules.get("numba")
        if numba is not None:
            numba.config.THREADING_LAYER_PRIORITY = list(PRIORITY)
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "3000")  # read by libgomp when its pool starts


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def numba_threads() -> int:
    """Numba's thread limit (the most threads a parallel kernel can be given)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def set_threads(n: int | None) -> int:
    """Set the number of threads parallel kernels use (None: all cores); returns it.

    Call it from the thread that runs inference (Numba's default threading layer is not
    re-entrant: parallel kernels must be called from one thread only).
    """
    import numba

    if not PARALLEL:
        log.info("numba parallel backend unavailable on this platform: kernels run serially")
        return 1
    limit = numba.config.NUMBA_NUM_THREADS
    wanted = limit if n is None else max(1, min(int(n), limit))
    numba.set_num_threads(wanted)
    return wanted


_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)


@functools.lru_cache(maxsize=1)
def _openblas() -> tuple[Callable[[int], None], Callable[[], int]] | None:
    import numpy as np  # loads the BLAS

    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # make sure the BLAS is loaded
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        getter = next((getattr(lib, g) for g in _GETTERS if hasattr(lib, g)), None)
        if setter is not None and getter is not None:
            setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
            return setter, getter
    return None


def set_blas_threads(n: int) -> bool:
    """Use ``n`` BLAS threads; False when NumPy's BLAS is not a controllable OpenBLAS."""
    found = _openblas()
    if found is None:
        log.info("NumPy's BLAS is not OpenBLAS: its thread count is left as it is")
        return False
    found[0](max(1, int(n)))
    return True


def blas_threads() -> int | None:
    """The BLAS thread count, or None when unknown."""
    found = _openblas()
    return None if found is None else int(found[1]())


apply_defaults()
