"""Softmax over a whole tensor, in ELL's order (max, exponentials, sequential sum)."""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import JIT
from numba import njit


@njit(**JIT)
def softmax(x, out, pad):
    """Softmax over the whole tensor: max, ``exp(x - max)``, sequential sum, divide."""
    rows, cols, chans = x.shape
    m = x[0, 0, 0]
    for r in range(rows):
        for c in range(cols):
            for k in range(chans):
                m = max(m, x[r, c, k])
    total = np.float32(0.0)
    for r in range(rows):
        for c in range(cols):
            for k in range(chans):
                e = np.exp(x[r, c, k] - m)
                out[r + pad, c + pad, k] = e
                total += e
    for r in range(rows):
        for c in range(cols):
            for k in range(chans):
                out[r + pad, c + pad, k] = out[r + pad, c + pad, k] / total


@njit(**JIT)
def softmax_rows(r0, r1, x, out, pad):
    """:func:`softmax` as a frame's single task (``[r0, r1)`` is always ``[0, 1)``)."""
    softmax(x, out, pad)
