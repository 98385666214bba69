"""Set the thread count of NumPy's BLAS (OpenBLAS) without extra dependencies.

The pointwise convolutions run as BLAS GEMMs (:mod:`edgebnn.kernels.mobile`); the BLAS has
its own thread pool beside Numba's, sized to every core by default. Benchmarks at one
thread and services that leave a core free must size both. This finds the OpenBLAS that
NumPy loaded (``/proc/self/maps``) and calls its ``*set_num_threads*``, as threadpoolctl
does; without OpenBLAS (another BLAS, not Linux) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

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
    import numpy as np

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
