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
from edgebnn.kernels._jit import HOT_JIT, PJIT, prange
from edgebnn.kernels.blas import NO_TRANS, ROW_MAJOR, sgemm
from edgebnn.kernels.elementwise import apply_chain, store_row
from edgebnn.kernels.epilogue import chain_into, interior
from numba import njit


@njit(**HOT_JIT)
def store_interior(row, out, r, pad):  # type: ignore[no-untyped-def]
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
            store_interior(row, out, r, pad)


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


@njit(**PJIT)
def pointwise_sgemm_chain(x_rows, w, y_rows, block, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
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
def pointwise_sgemm_columns_chain(x_rows, w, y_rows, parts, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
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


def im2col_weights_layout(weights: np.ndarray, lead: int) -> np.ndarray:
    """(F, k, k, C) -> (taps, F) over the taps from ``lead`` on, for :func:`im2col_sgemm_chain`."""
    w = weights[:, lead:, lead:, :]
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T, dtype=np.float32)


@njit(**HOT_JIT)
def gather_im2col_row(x, r, k, lead, stride, cols, prow):  # type: ignore[no-untyped-def]
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
):  # type: ignore[no-untyped-def]
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


@njit(**PJIT)
def gemv_chain(x, w, out, codes, params, alpha):  # type: ignore[no-untyped-def]
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
