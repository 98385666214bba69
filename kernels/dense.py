"""Fully connected layers: one output per weight row (ELL's order) or per weight column."""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import PJIT, prange
from edgebnn.kernels.elementwise import apply_chain
from numba import njit


@njit(**PJIT)
def gemv_chain(x, w, out, codes, params, alpha):
    """``out = chain(x @ w)`` for a single pixel (the classifier): ``x`` (C,), ``w`` (C, F),
    ``out`` (F,). BLAS ``sgemm`` with one row packs all of ``w`` first (0.3 ms for
    1280x1000); here each task sums its block of outputs over ``C`` in order, vectorised
    along the outputs, reading ``w`` once."""
    cin, f = w.shape
    block = 256
    for t in prange((f + block - 1) // block):
        f0 = t * block
        f1 = min(f, f0 + block)
        acc = out[f0:f1]
        for e in range(f1 - f0):
            acc[e] = np.float32(0.0)
        for c in range(cin):
            xc = x[c]
            wr = w[c, f0:f1]
            for e in range(f1 - f0):
                acc[e] += xc * wr[e]
    apply_chain(out, 0, codes, params, alpha)


@njit(**PJIT)
def fully_connected(x, weights, out_flat):
    """``out_flat = weights @ x.ravel()`` in float32, one output per row of ``weights``."""
    flat = x.reshape(-1)
    n_out, n_in = weights.shape
    for o in prange(n_out):
        acc = np.float32(0.0)
        for i in range(n_in):
            acc += weights[o, i] * flat[i]
        out_flat[o] = acc
