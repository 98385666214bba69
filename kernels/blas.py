"""NumPy's own CBLAS ``sgemm`` as a function Numba kernels can call.

Pointwise convolutions are GEMMs, which a BLAS does best; but calling ``np.matmul`` from
Python lets the BLAS start its own thread pool next to Numba's, and on a 2-core board the
two pools fight (a frame went from 20 ms to hundreds). Calling ``sgemm`` from inside a
``prange`` instead runs every GEMM on Numba's threads, one row block per task, with the
BLAS kept at one thread by the caller.

The symbol is looked up once in the BLAS that NumPy loaded (``/proc/self/maps``) and
registered with LLVM under :data:`SYMBOL`, so cached kernels link against it by name.
``AVAILABLE`` is False where no CBLAS ``sgemm`` is found (the callers then use
``np.matmul``). ``ILP64`` says whether its integers are 64-bit (NumPy's wheels).
"""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm
from numba import types

SYMBOL = "edgebnn_cblas_sgemm"
ROW_MAJOR, NO_TRANS = 101, 111
_CANDIDATES = (
    ("scipy_cblas_sgemm64_", True),
    ("cblas_sgemm64_", True),
    ("scipy_cblas_sgemm", False),
    ("cblas_sgemm", False),
)


def _find_sgemm() -> tuple[int, bool] | None:
    """(address, ilp64) of the CBLAS sgemm in a BLAS this process loaded, or None."""
    import numpy as np

    np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # BLAS loaded
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = sorted({ln.split()[-1] for ln in f if "blas" in ln.lower() and "/" in ln})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name, ilp64 in _CANDIDATES:
            if hasattr(lib, name):
                address = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                if address:
                    return address, ilp64
    return None


_FOUND = _find_sgemm()
AVAILABLE: bool = _FOUND is not None
ILP64: bool = True if _FOUND is None else _FOUND[1]
if _FOUND is not None:
    llvm.add_symbol(SYMBOL, _FOUND[0])

_INT = types.int64 if ILP64 else types.int32
#: ``sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)``;
#: the matrices are passed as addresses (``arr.ctypes.data``).
sgemm = types.ExternalFunction(
    SYMBOL,
    types.void(
        types.int32,
        types.int32,
        types.int32,
        _INT,
        _INT,
        _INT,
        types.float32,
        types.intp,
        _INT,
        types.intp,
        _INT,
        types.float32,
        types.intp,
        _INT,
    ),
)
