"""The one place for Numba options and the popcount primitive.

Every kernel is compiled with ``cache=True`` (the service points ``NUMBA_CACHE_DIR`` at its
cache directory). Parallel kernels use ``prange``; on platforms where Numba has no parallel
backend (32-bit ARM: Raspbian's numba 0.56 has no ``parallel=True``) they are compiled
serially (:data:`edgebnn.kernels.threads.PARALLEL`).
"""

from __future__ import annotations

import numba
from edgebnn.kernels._cpu import log_baseline
from edgebnn.kernels.threads import PARALLEL
from numba import (
    prange,  # noqa: F401  (re-exported for kernels)
    types,
)
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: Options for element-wise and integer kernels: exact float32, no fast-math.
JIT = {"cache": True, "nogil": True, "boundscheck": False}
#: Options for parallel kernels.
PJIT = {**JIT, "parallel": PARALLEL}

log_baseline()


def _numba_version() -> tuple[int, int]:
    major, minor = numba.__version__.split(".")[:2]
    return int(major), int(minor)


#: Options for small helpers called in kernels' inner loops: Numba-IR inlined (LLVM does not
#: inline across Numba's per-function modules) where that compiles quickly. Measured:
#: EfficientNet-Lite0 11.4 -> 9.0 ms/frame at 1 thread on numba 0.68; numba 0.56's inliner
#: (Raspberry Pi OS, Debian bookworm) took over 10 minutes and 3.5 GB on the MBConv kernel,
#: so there they stay ordinary calls.
HOT_JIT = {**JIT, "inline": "always"} if _numba_version() >= (0, 58) else JIT


def popcount64(x: int) -> int:
    """Number of set bits of a uint64 (pure-Python fallback; jitted code uses ``ctpop``)."""
    return (int(x) & 0xFFFFFFFFFFFFFFFF).bit_count()


@intrinsic
def _ctpop64(typingctx, x):
    """LLVM's ``ctpop`` on a 64-bit integer: one POPCNT (vectorisable in loops)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        (val,) = args
        fn = cgutils.get_or_insert_function(
            builder.module, cgutils.ir.FunctionType(val.type, [val.type]), "llvm.ctpop.i64"
        )
        return builder.call(fn, [val])

    return sig, codegen


@overload(popcount64, jit_options={"cache": True})
def _popcount64_overload(x):
    def impl(x):
        return _ctpop64(numba.uint64(x))

    return impl
