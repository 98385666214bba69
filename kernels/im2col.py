"""k x k float convolutions as gathered patches times a weight matrix (BLAS ``sgemm``).

Taps are (kernel row, kernel column, channel); the first ``lead`` kernel rows and columns
are zero (the builder's encoding of asymmetric "same" padding) and are skipped. BLAS sums
in its own order: results agree with the reference to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, PJIT, prange
from edgebnn.kernels.blas import NO_TRANS, ROW_MAJOR, sgemm
from edgebnn.kernels.epilogue import chain_into, interior
from numba import njit


def leading_zero_taps(weights: np.ndarray) -> int:
    """How many leading kernel rows *and* columns of (F, k, k, C) weights are all zero."""
    k = weights.shape[1]
    lead = 0
    while lead < k - 1 and not weights[:, lead, :, :].any() and not weights[:, :, lead, :].any():
        lead += 1
    return lead


def im2col_weights_layout(weights: np.ndarray, lead: int) -> np.ndarray:
    """(F, k, k, C) -> (taps, F) over the taps from ``lead`` on, for :func:`im2col_sgemm_chain`."""
    w = weights[:, lead:, lead:, :]
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T, dtype=np.float32)


@njit(**HOT_JIT)
def gather_im2col_row(x, r, k, lead, stride, cols, prow):
    """Output row ``r``'s receptive fields, taps from ``lead`` on, into ``prow`` (cols * taps):
    each kernel row's taps are one contiguous slice of ``x``."""
    cin = x.shape[2]
    span = (k - lead) * cin
    taps = (k - lead) * span
    for i in range(lead, k):
        line = x[r * stride + i].reshape(-1)
        for c in range(cols):
            src = line[(c * stride + lead) * cin : (c * stride + lead) * cin + span]
            dst = prow[c * taps + (i - lead) * span : c * taps + (i - lead + 1) * span]
            for e in range(span):
                dst[e] = src[e]


@njit(**PJIT)
def im2col_sgemm_chain(
    x, w2, k, lead, stride, patches, y_rows, block, out, pad, codes, params, alpha
):
    """A k x k convolution as gathered patches times ``w2`` (taps, F), on Numba's threads.

    ``patches`` (rows, cols * taps) and ``y_rows`` (rows, cols * F) are scratch; taps are
    (kernel row, kernel column, channel) from ``lead`` on (leading zero taps skipped).
    """
    rows = y_rows.shape[0]
    taps, f = w2.shape
    cols = y_rows.shape[1] // f
    tasks = (rows + block - 1) // block
    for t in prange(tasks):
        r0 = t * block
        r1 = min(rows, r0 + block)
        for r in range(r0, r1):
            gather_im2col_row(x, r, k, lead, stride, cols, patches[r])
        sgemm(
            ROW_MAJOR,
            NO_TRANS,
            NO_TRANS,
            (r1 - r0) * cols,
            f,
            taps,
            np.float32(1.0),
            patches.ctypes.data + r0 * cols * taps * 4,
            taps,
            w2.ctypes.data,
            f,
            np.float32(0.0),
            y_rows.ctypes.data + r0 * cols * f * 4,
            f,
        )
        for r in range(r0, r1):
            row = y_rows[r]
            chain_into(row, interior(out, r, pad, row.shape[0]), r, codes, params, alpha)
