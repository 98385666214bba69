"""Real-valued convolution vectorised along output columns, for layers with few filters.

The generic kernel (:func:`edgebnn.kernels.conv.conv2d_chain`) vectorises over filters,
which wastes its time in loop overheads when there are only a few (the 16-filter stem
convolution of the d-series). These kernels copy, per output row, the k input rows it reads
into planar form (``planes[i, ch, column]``), so that every tap is a contiguous run of
columns, and accumulate one filter's row at a time. Each (pixel, filter) still sums its
terms one at a time in (kernel row, kernel column, channel) order from 0.0, each product
and sum rounded to float32 (no fused multiply-add): the result is bit-identical to the
generic kernel and to the NumPy reference.

The 3x3, 3-channel, stride-1 case (every RGB stem) has its own row kernel whose 27 taps
are written out, so that each output's running sum stays in a register instead of making a
round trip through memory per tap (1.4 -> 1.1 ms per 256x256x16 frame on one core here).
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from edgebnn.kernels.elementwise import apply_chain, store_row
from edgebnn.kernels.pool import FLT_MAX, has_nonfinite, nonfinite_bit
from numba import njit


@njit(**HOT_JIT)
def _input_planes(x, k, stride, r, planes):
    """``planes[i, ch, :] = x[r * stride + i, :, ch]``: output row ``r``'s input rows, planar."""
    cin = x.shape[2]
    width = x.shape[1]
    for i in range(k):
        src = x[r * stride + i]
        for ch in range(cin):
            dst = planes[i, ch]
            for col in range(width):
                dst[col] = src[col, ch]


@njit(**HOT_JIT)
def _conv_row_3x3x3(planes, wf, cols, acc):
    """``acc[f, c]``: a 3x3 stride-1 convolution on 3 channels, taps written out."""
    p00, p01, p02 = planes[0, 0], planes[0, 1], planes[0, 2]
    p10, p11, p12 = planes[1, 0], planes[1, 1], planes[1, 2]
    p20, p21, p22 = planes[2, 0], planes[2, 1], planes[2, 2]
    for f in range(wf.shape[1]):
        a = acc[f]
        for c in range(cols):
            s = np.float32(0.0)
            for j in range(3):
                s += p00[c + j] * wf[j * 3, f]
                s += p01[c + j] * wf[j * 3 + 1, f]
                s += p02[c + j] * wf[j * 3 + 2, f]
            for j in range(3):
                s += p10[c + j] * wf[9 + j * 3, f]
                s += p11[c + j] * wf[9 + j * 3 + 1, f]
                s += p12[c + j] * wf[9 + j * 3 + 2, f]
            for j in range(3):
                s += p20[c + j] * wf[18 + j * 3, f]
                s += p21[c + j] * wf[18 + j * 3 + 1, f]
                s += p22[c + j] * wf[18 + j * 3 + 2, f]
            a[c] = s


@njit(**JIT)  # an ordinary call, once per row: keeps the kernels' compile time down
def _conv_row(x, wf, k, stride, r, planes, acc):
    """Convolution output row ``r`` into ``acc`` (filters, cols); ``wf`` is (taps, filters)."""
    cin = x.shape[2]
    filters, cols = acc.shape
    _input_planes(x, k, stride, r, planes)
    if k == 3 and cin == 3 and stride == 1:
        _conv_row_3x3x3(planes, wf, cols, acc)
        return
    for f in range(filters):
        a = acc[f]
        for c in range(cols):
            a[c] = np.float32(0.0)
        t = 0
        for i in range(k):
            for j in range(k):
                for ch in range(cin):
                    wv = wf[t, f]
                    src = planes[i, ch]
                    if stride == 1:
                        run = src[j : j + cols]
                        for c in range(cols):
                            a[c] += run[c] * wv
                    else:
                        for c in range(cols):
                            a[c] += src[j + c * stride] * wv
                    t += 1


@njit(**JIT)
def window_hits(acc, lo, hi, specials, hits):
    """``hits[c]`` bit f = the sign test of convolution output ``acc[f, c]``: ``lo[f] <= v
    <= hi[f]`` for finite v, ``specials[f]``'s flag for NaN and ±inf."""
    filters, cols = acc.shape
    for c in range(cols):
        hits[c] = np.uint32(0)
    for f in range(filters):
        a = acc[f]
        lof = lo[f]
        hif = hi[f]
        shift = np.uint32(f)
        for c in range(cols):
            v = a[c]
            hits[c] |= np.uint32((v >= lof) & (v <= hif)) << shift
    if has_nonfinite(acc):  # rare: NaN or inf out of the convolution
        for f in range(filters):
            bit = np.uint32(1) << np.uint32(f)
            for c in range(cols):
                v = acc[f, c]
                if not abs(v) <= FLT_MAX:
                    hits[c] &= ~bit
                    if nonfinite_bit(v, specials[f]):
                        hits[c] |= bit


@njit(**PJIT)
def conv2d_columns_chain(x, w, stride, rows, cols, out, pad, codes, params, alpha):
    """``out[interior] = chain(conv(x, w))``; ``w`` is (k, k, C, F)."""
    for r in prange(rows):
        conv2d_columns_chain_rows(
            r, r + 1, x, w, stride, rows, cols, out, pad, codes, params, alpha
        )


@njit(**JIT)
def conv2d_columns_chain_rows(r0, r1, x, w, stride, rows, cols, out, pad, codes, params, alpha):
    """Rows [r0, r1) of :func:`conv2d_columns_chain` (one task of a frame, one thread)."""
    k = w.shape[0]
    cin = w.shape[2]
    filters = w.shape[3]
    wf = w.reshape(k * k * cin, filters)
    planes = np.empty((k, cin, x.shape[1]), np.float32)
    acc = np.empty((filters, cols), np.float32)
    row = np.empty(cols * filters, np.float32)
    for r in range(r0, r1):
        _conv_row(x, wf, k, stride, r, planes, acc)
        for c in range(cols):
            for f in range(filters):
                row[c * filters + f] = acc[f, c]
        apply_chain(row, r, codes, params, alpha)
        store_row(row, out, r, pad)


@njit(**PJIT)
def conv2d_columns_pool_bits(
    x, w, stride, conv_rows, conv_cols, size, pool_stride, rows, cols, lo, hi, specials, bits, pad
):
    """Convolution, monotone chain, max-pool and sign in one pass, writing packed bits.

    ELL computes ``sign(maxpool(chain(conv(x))))``. A max-pooled value is > 0 iff one of
    its window's values is, and ``chain(v) > 0`` is ``lo[f] <= v <= hi[f]`` for finite
    convolution outputs v (``specials`` flags 1, 2, 4 give NaN, +inf, -inf), so each bit is
    the OR of that test over the window: exact, and no float tensor is written. Window
    cells past the convolution's output hold −FLT_MAX in ELL and never set a bit. At most
    32 filters (one word per pixel).
    """
    for r in prange(rows):
        conv2d_columns_pool_bits_rows(
            r,
            r + 1,
            x,
            w,
            stride,
            conv_rows,
            conv_cols,
            size,
            pool_stride,
            rows,
            cols,
            lo,
            hi,
            specials,
            bits,
            pad,
        )


@njit(**JIT)
def conv2d_columns_pool_bits_rows(
    r0,
    r1,
    x,
    w,
    stride,
    conv_rows,
    conv_cols,
    size,
    pool_stride,
    rows,
    cols,
    lo,
    hi,
    specials,
    bits,
    pad,
):
    """Rows [r0, r1) of :func:`conv2d_columns_pool_bits` (one task of a frame, one thread)."""
    k = w.shape[0]
    cin = w.shape[2]
    filters = w.shape[3]
    wf = w.reshape(k * k * cin, filters)
    planes = np.empty((k, cin, x.shape[1]), np.float32)
    acc = np.empty((filters, conv_cols), np.float32)
    hits = np.empty(conv_cols, np.uint32)  # bit f: filter f's test at that column
    words = np.empty(cols, np.uint64)
    for r in range(r0, r1):
        words[:] = np.uint64(0)
        for pr in range(size):
            cr = r * pool_stride + pr
            if cr >= conv_rows:
                continue
            _conv_row(x, wf, k, stride, cr, planes, acc)
            window_hits(acc, lo, hi, specials, hits)
            for c in range(cols):
                for pc in range(size):
                    cc = c * pool_stride + pc
                    if cc < conv_cols:
                        words[c] |= np.uint64(hits[cc])
        for c in range(cols):
            bits[r + pad, c + pad, 0] = words[c]
