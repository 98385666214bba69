"""Kernels for mobile networks (EfficientNet-Lite, MobileNet): pointwise and depthwise conv.

Pointwise (1x1, stride 1, no ring) convolution is a GEMM over pixels: ``(rows * cols, C)
@ (C, F)``. :func:`pointwise_conv_chain` hands it to NumPy's BLAS (``np.matmul`` with
``out=``: no allocation, multithreaded by the BLAS) and then applies the fused element-wise
chain row by row in Numba. BLAS sums in its own order: results agree with the reference
to float32 rounding, not bit for bit (as ELL's BLAS-based methods do, spec 4.6).

:func:`depthwise_conv2d_rows_chain` computes a depthwise convolution one output row at a
time, channels innermost, each pixel's accumulators kept hot over its taps, starting at tap ``lead``: the
first ``lead`` kernel rows and columns must be zero (the builder's encoding of asymmetric
"same" padding) and are skipped. Every (pixel, channel) sums its taps in (kernel row,
kernel column) order, product and sum rounded to float32, as the NumPy reference does:
bit-identical for finite inputs.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import PJIT, prange
from edgebnn.kernels.elementwise import apply_chain, store_row
from numba import njit


def pointwise_weights_layout(weights: np.ndarray) -> np.ndarray:
    """(F, 1, 1, C) -> (C, F) for :func:`pointwise_conv_chain`."""
    return np.ascontiguousarray(weights[:, 0, 0, :].T, dtype=np.float32)


def leading_zero_taps(weights: np.ndarray) -> int:
    """How many leading kernel rows *and* columns of (F, k, k, C) weights are all zero."""
    k = weights.shape[1]
    lead = 0
    while lead < k - 1 and not weights[:, lead, :, :].any() and not weights[:, :, lead, :].any():
        lead += 1
    return lead


def pointwise_conv_chain(x2d, w, y2d, out, pad, codes, params, alpha) -> None:  # type: ignore[no-untyped-def]
    """``out[interior] = chain(x2d @ w)``: x2d (rows * cols, C), w (C, F), y2d (rows * cols, F).

    ``y2d`` is scratch, or a view of ``out`` itself when ``pad`` is 0 (no copy then).
    """
    np.matmul(x2d, w, out=y2d)
    rows = out.shape[0] - 2 * pad
    _chain_rows(y2d.reshape(rows, -1), out, pad, codes, params, alpha, pad != 0)


@njit(**PJIT)
def _chain_rows(y, out, pad, codes, params, alpha, store):  # type: ignore[no-untyped-def]
    """Apply the chain to each row of ``y`` (rows, cols * F) in place, then store it."""
    for r in prange(y.shape[0]):
        row = y[r]
        apply_chain(row, r, codes, params, alpha)
        if store:
            store_row(row, out, r, pad)


@njit(**PJIT)
def depthwise_conv2d_rows_chain(x, w, stride, lead, rows, cols, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
    """Depthwise convolution, weights (k, k, F); taps before ``lead`` are zero and skipped."""
    k = w.shape[0]
    chans = w.shape[2]
    for r in prange(rows):
        row = np.zeros(cols * chans, np.float32)
        for c in range(cols):
            acc = row[c * chans : (c + 1) * chans]
            for i in range(lead, k):
                for j in range(lead, k):
                    for f in range(chans):
                        acc[f] += x[r * stride + i, c * stride + j, f] * w[i, j, f]
        apply_chain(row, r, codes, params, alpha)
        store_row(row, out, r, pad)
