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
from edgebnn.kernels._jit import PJIT, prange
from edgebnn.kernels.elementwise import apply_chain, store_row
from numba import njit


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
        t = 0
        for i in range(k):
            for j in range(k):
                for ch in range(cin):
                    src = x[r * stride + i]
                    dst = table[t]
                    for c in range(cols):
                        dst[c] = src[c * stride + j, ch]
                    t += 1
        acc = np.zeros((filters, cols), np.float32)
        for t in range(taps):
            src = table[t]
            for f in range(filters):
                wv = wf[t, f]
                a = acc[f]
                for c in range(cols):
                    a[c] += src[c] * wv
        row = np.empty(cols * filters, np.float32)
        for c in range(cols):
            for f in range(filters):
                row[c * filters + f] = acc[f, c]
        apply_chain(row, r, codes, params, alpha)
        store_row(row, out, r, pad)
