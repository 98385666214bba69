"""One-pass epilogues for the EfficientNet GEMM and depthwise kernels.

:func:`~edgebnn.kernels.elementwise.apply_chain` runs a chain op by op, one pass over the
row each, and the result is then copied into a ringed output: three passes for the usual
bias + ReLU6. :func:`chain_into` recognises bias + ReLU6 and bias alone and does them in
the copy's single pass, with the very same float32 operations (bias added and rounded,
then ``max(0, .)``, then ``min(6, .)``): identical bits. Any other chain falls back to
``apply_chain`` (an ordinary call, once per row) and a copy: inlined, the eleven ops of the
fallback, in each of the MBConv kernel's four epilogues, were half of its compile time.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT
from edgebnn.kernels.elementwise import OP_BIAS, OP_RELU6, apply_chain_call
from numba import njit


@njit(**HOT_JIT)
def chain_into(row, dst, r, codes, params, alpha):
    """``dst = chain(row)`` for output row ``r``; ``dst`` may be ``row`` itself."""
    n = row.shape[0]
    ops = codes.shape[0]
    if ops >= 1 and ops <= 2 and codes[0] == OP_BIAS and (ops == 1 or codes[1] == OP_RELU6):
        p0 = params[0, 0]
        if ops == 2:
            zero = np.float32(0.0)
            six = np.float32(6.0)
            for e in range(n):
                x = max(zero, row[e] + p0[e])
                dst[e] = min(six, x)
        else:
            for e in range(n):
                dst[e] = row[e] + p0[e]
        return
    apply_chain_call(row, r, codes, params, alpha)
    if dst.ctypes.data != row.ctypes.data:
        for e in range(n):
            dst[e] = row[e]


@njit(**HOT_JIT)
def interior(out, r, pad, n):
    """``out``'s interior row ``r`` (the first ``n`` values after the ring), flattened."""
    start = pad * out.shape[2]
    return out[r + pad].reshape(-1)[start : start + n]
