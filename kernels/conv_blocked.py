"""Real-valued convolution vectorised along output columns, for layers with few filters.

The generic kernel (:func:`edgebnn.kernels.conv.conv2d_chain`) vectorises over filters,
which wastes its time in loop overheads when there are only a few (the 16-filter stem
convolution of the d-series). This one gathers, per output row, every tap's input values
into a (taps, columns) table and accumulates ``acc[f, :] += table[t, :] * w[t, f]``: long
contiguous loops. Each (pixel, filter) still sums its terms one at a time in (kernel row,
kernel column, channel) order, each product and sum rounded to float32: the result is
bit-identical to the generic kernel and to the NumPy reference.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, PJIT, prange
from edgebnn.kernels.elementwise import apply_chain, store_row
from edgebnn.kernels.pool import FLT_MAX, nonfinite_bit
from numba import njit


@njit(**HOT_JIT)
def _conv_row(x, wf, k, cin, stride, r, table, acc):  # type: ignore[no-untyped-def]
    """Convolution output row ``r`` into ``acc`` (filters, cols), via the tap table."""
    taps, cols = table.shape
    filters = wf.shape[1]
    t = 0
    for i in range(k):
        for j in range(k):
            for ch in range(cin):
                src = x[r * stride + i]
                dst = table[t]
                for c in range(cols):
                    dst[c] = src[c * stride + j, ch]
                t += 1
    for f in range(filters):
        a = acc[f]
        for c in range(cols):
            a[c] = np.float32(0.0)
    for t in range(taps):
        src = table[t]
        for f in range(filters):
            wv = wf[t, f]
            a = acc[f]
            for c in range(cols):
                a[c] += src[c] * wv


@njit(**PJIT)
def conv2d_columns_chain(x, w, stride, rows, cols, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
    """``out[interior] = chain(conv(x, w))``; ``w`` is (k, k, C, F)."""
    k = w.shape[0]
    cin = w.shape[2]
    filters = w.shape[3]
    taps = k * k * cin
    wf = w.reshape(taps, filters)
    for r in prange(rows):
        table = np.empty((taps, cols), np.float32)
        acc = np.empty((filters, cols), np.float32)
        _conv_row(x, wf, k, cin, stride, r, table, acc)
        row = np.empty(cols * filters, np.float32)
        for c in range(cols):
            for f in range(filters):
                row[c * filters + f] = acc[f, c]
        apply_chain(row, r, codes, params, alpha)
        store_row(row, out, r, pad)


@njit(**PJIT)
def conv2d_columns_pool_bits(x, w, stride, conv_rows, conv_cols, size, pool_stride, rows, cols, lo, hi, specials, bits, pad):  # type: ignore[no-untyped-def]
    """Convolution, monotone chain, max-pool and sign in one pass, writing packed bits.

    ELL computes ``sign(maxpool(chain(conv(x))))``. A max-pooled value is > 0 iff one of
    its window's values is, and ``chain(v) > 0`` is ``lo[f] <= v <= hi[f]`` for finite
    convolution outputs v (``specials`` flags 1, 2, 4 give NaN, +inf, -inf), so each bit is
    the OR of that test over the window: exact, and no float tensor is written. Window
    cells past the convolution's output hold −FLT_MAX in ELL and never set a bit.
    """
    k = w.shape[0]
    cin = w.shape[2]
    filters = w.shape[3]
    taps = k * k * cin
    wf = w.reshape(taps, filters)
    words = bits.shape[2]
    for r in prange(rows):
        table = np.empty((taps, conv_cols), np.float32)
        acc = np.empty((filters, conv_cols), np.float32)
        on = np.zeros((filters, cols), np.uint8)
        hit = np.empty(conv_cols, np.uint8)
        for pr in range(size):
            cr = r * pool_stride + pr
            if cr >= conv_rows:
                continue
            _conv_row(x, wf, k, cin, stride, cr, table, acc)
            for f in range(filters):
                a = acc[f]
                lof = lo[f]
                hif = hi[f]
                finite = True
                for c in range(conv_cols):
                    v = a[c]
                    hit[c] = np.uint8(1) if (v >= lof) & (v <= hif) else np.uint8(0)
                    finite &= abs(v) <= FLT_MAX
                if not finite:  # rare: NaN or inf out of the convolution
                    for c in range(conv_cols):
                        v = a[c]
                        if not abs(v) <= FLT_MAX:
                            hit[c] = np.uint8(1) if nonfinite_bit(v, specials[f]) else np.uint8(0)
                of = on[f]
                for c in range(cols):
                    for pc in range(size):
                        cc = c * pool_stride + pc
                        if cc < conv_cols:
                            of[c] |= hit[cc]
        for c in range(cols):
            for wd in range(words):
                word = np.uint64(0)
                for f in range(wd * 64, min(filters, (wd + 1) * 64)):
                    word |= np.uint64(on[f, c]) << np.uint64(f - wd * 64)
                bits[r + pad, c + pad, wd] = word
