"""Real-valued convolutions (cross-correlation over the padded input) with a fused chain.

``weights`` are laid out ``(k, k, in_channels, filters)`` (filters innermost, contiguous)
so that the innermost loop updates one accumulator vector per output pixel and vectorises.
The summation order differs from ELL's im2col + BLAS, as ELL's own methods differ from one
another (spec 4.6): results agree to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import JIT, PJIT, prange
from edgebnn.kernels.elementwise import apply_chain, store_row
from numba import njit


def conv_weights_layout(weights: np.ndarray) -> np.ndarray:
    """(F, k, k, C) ELL order -> (k, k, C, F) for :func:`conv2d_chain`."""
    return np.ascontiguousarray(np.transpose(weights, (1, 2, 3, 0)), dtype=np.float32)


def depthwise_weights_layout(weights: np.ndarray) -> np.ndarray:
    """(F, k, k, 1) -> (k, k, F) for the depthwise kernels (:mod:`.depthwise`)."""
    return np.ascontiguousarray(np.transpose(weights[:, :, :, 0], (1, 2, 0)), dtype=np.float32)


@njit(**PJIT)
def conv2d_chain(x, w, stride, rows, cols, out, pad, codes, params, alpha):
    """``out[interior] = chain(conv(x, w))`` for output ``rows`` x ``cols``."""
    for r in prange(rows):
        conv2d_chain_rows(r, r + 1, x, w, stride, rows, cols, out, pad, codes, params, alpha)


@njit(**JIT)
def conv2d_chain_rows(r0, r1, x, w, stride, rows, cols, out, pad, codes, params, alpha):
    """Rows [r0, r1) of :func:`conv2d_chain` (one task of a frame, one thread)."""
    k = w.shape[0]
    cin = w.shape[2]
    filters = w.shape[3]
    for r in range(r0, r1):
        row = np.zeros(cols * filters, np.float32)
        # Taps outside, pixels inside: each weight vector is read once per output row.
        for i in range(k):
            for j in range(k):
                for ch in range(cin):
                    wv = w[i, j, ch]
                    for c in range(cols):
                        xv = x[r * stride + i, c * stride + j, ch]
                        acc = row[c * filters : (c + 1) * filters]
                        for f in range(filters):
                            acc[f] += xv * wv[f]
        apply_chain(row, r, codes, params, alpha)
        store_row(row, out, r, pad)
