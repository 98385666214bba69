"""Pointwise (1x1, stride 1) float convolutions as GEMMs over pixels through BLAS ``sgemm``.

A pointwise convolution is ``(rows * cols, C) @ (C, F)``. :func:`pointwise_conv_chain`
hands it to NumPy's BLAS (``np.matmul`` with ``out=``: no allocation, multithreaded by the
BLAS) and then applies the fused element-wise chain row by row in Numba; the ``sgemm``
variants split the product over Numba's threads instead. BLAS sums in its own order:
results agree with the reference to float32 rounding, not bit for bit (as ELL's BLAS-based
methods do).
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, PJIT, prange
from edgebnn.kernels.blas import NO_TRANS, ROW_MAJOR, sgemm
from edgebnn.kernels.elementwise import apply_chain
from edgebnn.kernels.epilogue import chain_into, interior
from numba import njit


@njit(**HOT_JIT)
def store_interior(row, out, r, pad):
    """Copy a finished row (cols * F) into ``out``'s interior row ``r``.

    Both sides are sliced first so the copy is a plain vectorised loop (indexed as
    ``dst[start + e]`` Numba's negative-index check keeps LLVM from vectorising it).
    """
    n = row.shape[0]
    start = pad * out.shape[2]
    dst = out[r + pad].reshape(-1)[start : start + n]
    for e in range(n):
        dst[e] = row[e]


def pointwise_weights_layout(weights: np.ndarray) -> np.ndarray:
    """(F, 1, 1, C) -> (C, F) for :func:`pointwise_conv_chain`."""
    return np.ascontiguousarray(weights[:, 0, 0, :].T, dtype=np.float32)


def pointwise_conv_chain(x2d, w, y2d, out, pad, codes, params, alpha) -> None:
    """``out[interior] = chain(x2d @ w)``: x2d (rows * cols, C), w (C, F), y2d (rows * cols, F).

    ``y2d`` is scratch, or a view of ``out`` itself when ``pad`` is 0 (no copy then).
    """
    np.matmul(x2d, w, out=y2d)
    rows = out.shape[0] - 2 * pad
    _chain_rows(y2d.reshape(rows, -1), out, pad, codes, params, alpha, pad != 0)


@njit(**PJIT)
def _chain_rows(y, out, pad, codes, params, alpha, store):
    """Apply the chain to each row of ``y`` (rows, cols * F) in place, then store it."""
    for r in prange(y.shape[0]):
        row = y[r]
        apply_chain(row, r, codes, params, alpha)
        if store:
            store_interior(row, out, r, pad)


@njit(**PJIT)
def pointwise_sgemm_chain(x_rows, w, y_rows, block, out, pad, codes, params, alpha):
    """:func:`pointwise_conv_chain` on Numba's threads: per task, ``block`` image rows.

    ``x_rows`` (rows, cols * C), ``w`` (C, F), ``y_rows`` (rows, cols * F) scratch or a
    view of ``out`` (pad 0). Each task calls BLAS ``sgemm`` for its rows, then applies
    the chain to them while they are in cache.
    """
    rows = x_rows.shape[0]
    cin, f = w.shape
    cols = x_rows.shape[1] // cin
    tasks = (rows + block - 1) // block
    for t in prange(tasks):
        r0 = t * block
        r1 = min(rows, r0 + block)
        sgemm(
            ROW_MAJOR,
            NO_TRANS,
            NO_TRANS,
            (r1 - r0) * cols,
            f,
            cin,
            np.float32(1.0),
            x_rows.ctypes.data + r0 * cols * cin * 4,
            cin,
            w.ctypes.data,
            f,
            np.float32(0.0),
            y_rows.ctypes.data + r0 * cols * f * 4,
            f,
        )
        for r in range(r0, r1):
            row = y_rows[r]
            chain_into(
                row,
                interior(out, r, pad, row.shape[0]) if pad != 0 else row,
                r,
                codes,
                params,
                alpha,
            )


@njit(**PJIT)
def pointwise_sgemm_columns_chain(x_rows, w, y_rows, parts, out, pad, codes, params, alpha):
    """:func:`pointwise_sgemm_chain` for small images (7x7: too few rows to share out):
    each task computes every pixel for its slice of the ``F`` outputs (one ``sgemm`` with
    the full pixel count, slices of 16 columns), then the rows' epilogues are shared out."""
    rows = x_rows.shape[0]
    cin, f = w.shape
    cols = x_rows.shape[1] // cin
    width = ((f + parts - 1) // parts + 15) // 16 * 16
    for t in prange(parts):
        f0 = min(f, t * width)
        f1 = min(f, f0 + width)
        if f1 > f0:
            sgemm(
                ROW_MAJOR,
                NO_TRANS,
                NO_TRANS,
                rows * cols,
                f1 - f0,
                cin,
                np.float32(1.0),
                x_rows.ctypes.data,
                cin,
                w.ctypes.data + f0 * 4,
                f,
                np.float32(0.0),
                y_rows.ctypes.data + f0 * 4,
                f,
            )
    for r in prange(rows):
        row = y_rows[r]
        chain_into(
            row, interior(out, r, pad, row.shape[0]) if pad != 0 else row, r, codes, params, alpha
        )
