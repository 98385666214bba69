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


#: Filters per block of :func:`conv1x1_filters_chain` (a 512-byte weight run per channel).
FILTER_BLOCK = 128


def filter_blocks_layout(weights: np.ndarray) -> np.ndarray:
    """(F, 1, 1, C) ELL order -> (blocks, C, FILTER_BLOCK), the last block zero-padded: each
    block's weights are one contiguous run that a thread streams once."""
    filters, _, _, cin = weights.shape
    blocks = -(-filters // FILTER_BLOCK)
    out = np.zeros((blocks * FILTER_BLOCK, cin), np.float32)
    out[:filters] = weights.reshape(filters, cin)
    return np.ascontiguousarray(out.reshape(blocks, FILTER_BLOCK, cin).transpose(0, 2, 1))


@njit(**PJIT)
def conv1x1_filters_chain(x, wb, filters, rows, cols, out, pad, codes, params, alpha):
    """``out[interior] = chain(conv1x1(x, w))`` split by filter blocks, not rows.

    For a 1x1 convolution over a few pixels with many filters (the d-series' classifier:
    2x2 pixels, 1024 -> 1000, 4 MB of weights) a row task reads every weight, once per
    row and thread; here each task reads only its blocks' weights (``wb`` from
    :func:`filter_blocks_layout`), once for all pixels. Each output sums its channels in
    the same order, with the same operations, as :func:`conv2d_chain`: the same bits.
    """
    for b in prange(wb.shape[0]):
        conv1x1_filters_chain_rows(
            b, b + 1, x, wb, filters, rows, cols, out, pad, codes, params, alpha
        )


@njit(**JIT)
def conv1x1_filters_chain_rows(b0, b1, x, wb, filters, rows, cols, out, pad, codes, params, alpha):
    """Filter blocks [b0, b1) of :func:`conv1x1_filters_chain` (one task, one thread)."""
    cin = wb.shape[1]
    pixels = rows * cols
    xt = np.empty((cin, pixels), np.float32)  # each channel's pixels side by side
    for p in range(pixels):
        xt[:, p] = x[p // cols, p % cols]
    acc = np.empty((pixels, FILTER_BLOCK), np.float32)
    for b in range(b0, b1):
        f0 = b * FILTER_BLOCK
        n = min(filters, f0 + FILTER_BLOCK) - f0
        acc[:, :] = np.float32(0.0)
        wblock = wb[b]
        for ch in range(cin):
            wv = wblock[ch]
            xs = xt[ch]
            for p in range(pixels):
                xv = xs[p]
                a = acc[p]
                for f in range(FILTER_BLOCK):
                    a[f] += xv * wv[f]
        for p in range(pixels):
            r = p // cols
            lo = (p % cols) * filters + f0
            v = acc[p, :n]
            apply_chain(v, r, codes, params[:, :, lo : lo + n], alpha[:, lo : lo + n])
            dst = out[r + pad, p % cols + pad]
            for f in range(n):
                dst[f0 + f] = v[f]
