"""Max and mean pooling over ELL's padded windows, with a fused chain or a fused sign-pack.

Windows start at padded (0, 0) with no offset (spec 4.8). Cells inside the input tensor,
its ring included, are read as stored; cells past its edge count as −FLT_MAX (max) or 0
(mean). Max keeps ``acc`` unless ``v > acc`` (C++ ``std::max``); mean sums in window order
in float32 and divides by size², padding cells included.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from edgebnn.kernels.elementwise import apply_chain, store_row
from numba import njit

FLT_MAX = np.float32(np.finfo(np.float32).max)


@njit(inline="always", **JIT)
def _pool_pixel(x, acc, is_max, size, stride, r, c):
    rows_in, cols_in, chans = x.shape
    if is_max:
        for k in range(chans):
            acc[k] = -FLT_MAX
    else:
        for k in range(chans):
            acc[k] = np.float32(0.0)
    for i in range(size):
        rr = r * stride + i
        for j in range(size):
            cc = c * stride + j
            inside = rr < rows_in and cc < cols_in
            if is_max:
                if inside:
                    for k in range(chans):
                        v = x[rr, cc, k]
                        acc[k] = max(acc[k], v)
            else:
                if inside:
                    for k in range(chans):
                        acc[k] = acc[k] + x[rr, cc, k]
                else:
                    for k in range(chans):
                        acc[k] = acc[k] + np.float32(0.0)
    if not is_max:
        div = np.float32(size * size)
        for k in range(chans):
            acc[k] = acc[k] / div


@njit(**PJIT)
def pool_chain(x, is_max, size, stride, rows, cols, out, pad, codes, params, alpha):
    """``out[interior] = chain(pool(x))``."""
    for r in prange(rows):
        pool_chain_rows(
            r, r + 1, x, is_max, size, stride, rows, cols, out, pad, codes, params, alpha
        )


@njit(**JIT)
def pool_chain_rows(r0, r1, x, is_max, size, stride, rows, cols, out, pad, codes, params, alpha):
    """Rows [r0, r1) of :func:`pool_chain` (one task of a frame, one thread)."""
    chans = x.shape[2]
    for r in range(r0, r1):
        row = np.empty(cols * chans, np.float32)
        for c in range(cols):
            _pool_pixel(x, row[c * chans : (c + 1) * chans], is_max, size, stride, r, c)
        apply_chain(row, r, codes, params, alpha)
        store_row(row, out, r, pad)


@njit(inline="always", **JIT)
def nonfinite_bit(v, flags):
    """The sign bit for a NaN or ±inf value: flag 1 (NaN), 2 (+inf) or 4 (-inf) of ``flags``."""
    flag = 1 if np.isnan(v) else (2 if v > 0 else 4)
    return (flags & flag) != 0


@njit(**HOT_JIT)
def has_nonfinite(x):
    """True if the float32 array ``x`` holds a NaN or ±inf: an integer max over the float
    bits, which vectorises where a float test per element does not."""
    bits = x.reshape(-1).view(np.uint32)
    top = np.uint32(0)
    for e in range(bits.shape[0]):
        top = max(top, bits[e] & np.uint32(0x7FFFFFFF))
    return top >= np.uint32(0x7F800000)


@njit(**PJIT)
def pool_to_bits(x, do_pool, is_max, size, stride, rows, cols, lo, hi, specials, bits, pad):
    """Pool (or read) then binarise into channel-packed words, without float output.

    Channel k's bit is set iff the float value that ELL would compute after the following
    monotone chain is > 0. For finite pooled values that is ``lo[k] <= v <= hi[k]``, exact
    bounds found at plan time (``edgebnn.engine.thresholds``); NaN, +inf and -inf take their
    bit from the ``specials`` flags 1, 2 and 4. ``bits`` is (rows + 2 pad, cols + 2 pad,
    words); its ring was filled at plan time.
    """
    for r in prange(rows):
        pool_to_bits_rows(
            r, r + 1, x, do_pool, is_max, size, stride, rows, cols, lo, hi, specials, bits, pad
        )


@njit(**JIT)
def pool_to_bits_rows(
    r0, r1, x, do_pool, is_max, size, stride, rows, cols, lo, hi, specials, bits, pad
):
    """Rows [r0, r1) of :func:`pool_to_bits` (one task of a frame, one thread)."""
    chans = x.shape[2]
    words = bits.shape[2]
    for r in range(r0, r1):
        acc = np.empty(chans, np.float32)
        on = np.empty(chans, np.uint64)
        for c in range(cols):
            if do_pool:
                _pool_pixel(x, acc, is_max, size, stride, r, c)
            else:
                for k in range(chans):
                    acc[k] = x[r, c, k]
            finite = True
            for k in range(chans):
                v = acc[k]
                on[k] = np.uint64(1) if (v >= lo[k]) & (v <= hi[k]) else np.uint64(0)
                finite &= abs(v) <= FLT_MAX
            if not finite:  # rare: NaN or inf reached the sign test
                for k in range(chans):
                    v = acc[k]
                    if not abs(v) <= FLT_MAX:
                        on[k] = np.uint64(1) if nonfinite_bit(v, specials[k]) else np.uint64(0)
            for w in range(words):
                word = np.uint64(0)
                top = min(chans, (w + 1) * 64)
                for k in range(w * 64, top):
                    word |= on[k] << np.uint64(k - w * 64)
                bits[r + pad, c + pad, w] = word
