"""The RGB stem of binarized networks in one pass: input chain, 3x3 convolution with fused
multiply-adds, monotone chain, max-pool and sign, writing the next layer's packed bits.

Only the sign of ``chain(conv(x))`` after the max-pool is ever used: bit f of a pixel is
``lo[f] <= v <= hi[f]`` for the reference convolution output ``v`` (:mod:`.conv_blocked`
explains the thresholds). The reference sums its 27 products one at a time in (kernel row,
kernel column, channel) order, each product and sum rounded to float32. This kernel sums in
the same order with fused multiply-adds (one rounding per tap), which is about twice as fast,
and proves per value that the test cannot have changed:

* for a sum of n products computed with any mix of fused and separate multiply-adds,
  ``|computed - exact| <= gamma_n * sum |x_t w_t|`` with ``gamma_n = n u / (1 - n u)`` and
  ``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1). The
  reference obeys the same bound, so the two differ by at most ``2 gamma_27 M S_f``, where
  ``M`` is the largest |input| of the three input rows and ``S_f = sum |w_f|``;
* :data:`ERROR_FACTOR` is twice that constant (the margin covers the float32 rounding of
  the bound itself) and :data:`TINY` covers products in the subnormal range;
* a value farther than that bound from both ``lo[f]`` and ``hi[f]`` gives the reference's
  test result; a column with a value within it is recomputed in the reference order.

Rows whose inputs are not finite, or so large that a sum could overflow, run the reference
order throughout (:func:`edgebnn.kernels.conv_blocked.window_hits`), NaN and infinity
rules included. The input chain (the network's input layer and its bias, e.g. mean
subtraction) is applied here to each input row as it is read, op by op as its own kernel
would (:func:`edgebnn.kernels.elementwise.apply_chain`), so the float input tensor is never
written: the result is bit-identical to the separate steps.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from edgebnn.kernels.conv_blocked import _conv_row_3x3x3, window_hits
from edgebnn.kernels.elementwise import apply_chain_call
from numba import njit

#: Filters per pass of the fused loop (independent accumulators per column vector).
GROUP = 4
#: Row bands of :func:`stem_pool_bits` called as its own kernel (a frame makes its own).
BANDS = 16
#: Twice the largest |FMA sum - reference sum| / (M * S_f) for 27 products: 2 x 2 gamma_27.
ERROR_FACTOR = np.float32(4 * 27 * 2.0**-24 / (1 - 27 * 2.0**-24))
#: Absolute error allowance for products in float32's subnormal range.
TINY = np.float32(1e-36)
#: Inputs up to this (times the largest ``S_f``) take the fused path: no sum can overflow.
SAFE_PRODUCT = 1e30

FMA_JIT = {**JIT, "fastmath": {"contract"}}
FMA_HOT_JIT = {**HOT_JIT, "fastmath": {"contract"}}


def stem_weights(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grouped, reference, sums) from ELL's (F, 3, 3, 3) weights: ``grouped`` is
    (groups, 27, GROUP) for the fused loop (missing filters zero), ``reference`` (27, F) in
    the reference order, ``sums`` the per-filter ``sum |w|`` (groups * GROUP)."""
    filters = weights.shape[0]
    taps = np.ascontiguousarray(weights.reshape(filters, 27).T, dtype=np.float32)  # (27, F)
    groups = -(-filters // GROUP)
    padded = np.zeros((27, groups * GROUP), np.float32)
    padded[:, :filters] = taps
    grouped = np.ascontiguousarray(padded.reshape(27, groups, GROUP).transpose(1, 0, 2))
    sums = np.abs(padded.astype(np.float64)).sum(axis=0).astype(np.float32)
    return grouped, taps, sums


def padded_bounds(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lo``/``hi`` padded to whole groups with an empty interval (the bit stays 0)."""
    groups = -(-lo.shape[0] // GROUP)
    lo4 = np.full(groups * GROUP, np.inf, np.float32)
    hi4 = np.full(groups * GROUP, -np.inf, np.float32)
    lo4[: lo.shape[0]], hi4[: hi.shape[0]] = lo, hi
    return lo4, hi4


@njit(**FMA_HOT_JIT)
def _tap(v, w, a0, a1, a2, a3):
    """One input value times a tap's four weights (a tuple), added to four sums."""
    return a0 + v * w[0], a1 + v * w[1], a2 + v * w[2], a3 + v * w[3]


@njit(**HOT_JIT)
def _four(w, t):
    """Tap ``t``'s four weights as a tuple (kept in registers across the column loop)."""
    return w[t, 0], w[t, 1], w[t, 2], w[t, 3]


@njit(**HOT_JIT)
def _test_bits(a0, a1, a2, a3, lo, hi):
    """Bit k: ``lo[k] <= a_k <= hi[k]``."""
    m = np.uint32((a0 >= lo[0]) & (a0 <= hi[0]))
    m |= np.uint32((a1 >= lo[1]) & (a1 <= hi[1])) << np.uint32(1)
    m |= np.uint32((a2 >= lo[2]) & (a2 <= hi[2])) << np.uint32(2)
    m |= np.uint32((a3 >= lo[3]) & (a3 <= hi[3])) << np.uint32(3)
    return m


@njit(**FMA_JIT)
def _fused_row(planes, s0, s1, s2, w, inner, outer, cols, out, shift):
    """One convolution row for four filters (``w`` is (27, 4)), OR-ed into ``out[c]``: bits
    ``shift``..``shift + 3`` test the fused sums against the intervals ``inner`` (lo + err,
    hi - err), where they pass the reference sums pass; bits 16-19 are set where they fail
    but those against ``outer`` (lo - err, hi + err) pass: the reference may go either way.
    Bounds are (lo, hi) tuples of four; ``planes[s_i, ch]`` is kernel row i's input row,
    channel ch (a ring of three rows). One store per column keeps the loop vectorised."""
    q00, q01, q02 = planes[s0, 0], planes[s0, 1], planes[s0, 2]
    q10, q11, q12 = planes[s1, 0], planes[s1, 1], planes[s1, 2]
    q20, q21, q22 = planes[s2, 0], planes[s2, 1], planes[s2, 2]
    k0 = _four(w, 0)
    k1 = _four(w, 1)
    k2 = _four(w, 2)
    k3 = _four(w, 3)
    k4 = _four(w, 4)
    k5 = _four(w, 5)
    k6 = _four(w, 6)
    k7 = _four(w, 7)
    k8 = _four(w, 8)
    k9 = _four(w, 9)
    k10 = _four(w, 10)
    k11 = _four(w, 11)
    k12 = _four(w, 12)
    k13 = _four(w, 13)
    k14 = _four(w, 14)
    k15 = _four(w, 15)
    k16 = _four(w, 16)
    k17 = _four(w, 17)
    k18 = _four(w, 18)
    k19 = _four(w, 19)
    k20 = _four(w, 20)
    k21 = _four(w, 21)
    k22 = _four(w, 22)
    k23 = _four(w, 23)
    k24 = _four(w, 24)
    k25 = _four(w, 25)
    k26 = _four(w, 26)
    in_lo, in_hi = inner
    out_lo, out_hi = outer
    zero = np.float32(0.0)
    for c in range(cols):
        a0 = a1 = a2 = a3 = zero
        # (kernel row, kernel column, channel) order, as the reference.
        a0, a1, a2, a3 = _tap(q00[c], k0, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q01[c], k1, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q02[c], k2, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q00[c + 1], k3, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q01[c + 1], k4, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q02[c + 1], k5, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q00[c + 2], k6, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q01[c + 2], k7, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q02[c + 2], k8, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q10[c], k9, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q11[c], k10, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q12[c], k11, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q10[c + 1], k12, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q11[c + 1], k13, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q12[c + 1], k14, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q10[c + 2], k15, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q11[c + 2], k16, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q12[c + 2], k17, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q20[c], k18, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q21[c], k19, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q22[c], k20, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q20[c + 1], k21, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q21[c + 1], k22, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q22[c + 1], k23, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q20[c + 2], k24, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q21[c + 2], k25, a0, a1, a2, a3)
        a0, a1, a2, a3 = _tap(q22[c + 2], k26, a0, a1, a2, a3)
        sure = _test_bits(a0, a1, a2, a3, in_lo, in_hi)
        unsure = _test_bits(a0, a1, a2, a3, out_lo, out_hi) & ~sure
        out[c] |= (sure << shift) | (unsure << np.uint32(16))


@njit(**JIT)
def _reference_column(planes, s0, s1, s2, taps, lo, hi, c):
    """The test bits of column ``c`` from sums in the reference order (no fused ops)."""
    word = np.uint32(0)
    for f in range(taps.shape[1]):
        s = np.float32(0.0)
        t = 0
        for i in range(3):
            slot = s0 if i == 0 else (s1 if i == 1 else s2)
            for j in range(3):
                for ch in range(3):
                    s += planes[slot, ch, c + j] * taps[t, f]
                    t += 1
        if s >= lo[f] and s <= hi[f]:
            word |= np.uint32(1) << np.uint32(f)
    return word


@njit(**JIT)
def _up(v):
    """The smallest float32 >= the float64 ``v``."""
    f = np.float32(v)
    return np.nextafter(f, np.float32(np.inf)) if np.float64(f) < v else f


@njit(**JIT)
def _down(v):
    """The largest float32 <= the float64 ``v``."""
    f = np.float32(v)
    return np.nextafter(f, np.float32(-np.inf)) if np.float64(f) > v else f


@njit(**JIT)
def _edges(lo, hi, total, top):
    """(lo + err, hi - err, lo - err, hi + err) rounded outwards to float32, ``err`` the
    bound on |fused sum - reference sum| for weights of ``sum |w| = total``."""
    e = np.float64(ERROR_FACTOR) * np.float64(total) * np.float64(top) + np.float64(TINY)
    lo64, hi64 = np.float64(lo), np.float64(hi)
    return _up(lo64 + e), _down(hi64 - e), _down(lo64 - e), _up(hi64 + e)


@njit(**JIT)
def _fused_hits(planes, s0, s1, s2, grouped, taps, sums, top, lo, hi, codes, hits):
    """``hits[c]`` bit f = the reference test of one convolution row whose inputs are finite
    and at most ``top`` in magnitude: from the fused sums where they decide it, from sums in
    the reference order in the columns where they do not. ``codes`` is (halves, cols): 16
    filters per half (:func:`_fused_row`)."""
    cols = hits.shape[0]
    codes[:] = np.uint32(0)
    for g in range(grouped.shape[0]):
        f = g * GROUP
        a0, b0, c0, d0 = _edges(lo[f], hi[f], sums[f], top)
        a1, b1, c1, d1 = _edges(lo[f + 1], hi[f + 1], sums[f + 1], top)
        a2, b2, c2, d2 = _edges(lo[f + 2], hi[f + 2], sums[f + 2], top)
        a3, b3, c3, d3 = _edges(lo[f + 3], hi[f + 3], sums[f + 3], top)
        inner = ((a0, a1, a2, a3), (b0, b1, b2, b3))
        outer = ((c0, c1, c2, c3), (d0, d1, d2, d3))
        shift = np.uint32(f % 16)
        _fused_row(planes, s0, s1, s2, grouped[g], inner, outer, cols, codes[f // 16], shift)
    low = codes[0]
    if codes.shape[0] == 1:
        for c in range(cols):
            hits[c] = low[c] & np.uint32(0xFFFF)
    else:
        high = codes[1]
        for c in range(cols):
            hits[c] = (low[c] & np.uint32(0xFFFF)) | (high[c] << np.uint32(16))
            low[c] |= high[c] & np.uint32(0xFFFF0000)
    for c in range(cols):
        if low[c] >> np.uint32(16):  # a fused sum within the error bound of a threshold
            hits[c] = _reference_column(planes, s0, s1, s2, taps, lo, hi, c)


@njit(**JIT)
def _load_row(x, pr, in_pad, ring, codes, params, alpha, line, plane):
    """Padded input row ``pr`` after the input chain into ``plane`` (3, width); returns its
    largest |value| (NaN when a value is NaN: an integer max over the float bits)."""
    width = plane.shape[1]
    r = pr - in_pad
    raw_cols = x.shape[1]
    if r < 0 or r >= x.shape[0]:
        for ch in range(3):
            for col in range(width):
                plane[ch, col] = ring
        return np.float32(abs(ring))
    src = x[r].reshape(-1)
    for e in range(src.shape[0]):
        line[e] = src[e]
    apply_chain_call(line, r, codes, params, alpha)
    for ch in range(3):
        dst = plane[ch]
        for col in range(in_pad):
            dst[col] = ring
        for col in range(raw_cols):
            dst[in_pad + col] = line[col * 3 + ch]
        for col in range(in_pad + raw_cols, width):
            dst[col] = ring
    bits = plane.reshape(-1).view(np.uint32)
    top = np.uint32(0)
    for e in range(bits.shape[0]):
        top = max(top, bits[e] & np.uint32(0x7FFFFFFF))
    return np.array([top], np.uint32).view(np.float32)[0]


@njit(**PJIT)
def stem_pool_bits(
    x,
    in_pad,
    ring,
    codes,
    params,
    alpha,
    grouped,
    taps,
    sums,
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
    """Packed bits of ``sign(maxpool(chain(conv3x3(input_chain(x)))))`` (see the module
    docstring). ``x`` is the raw (rows, cols, 3) input; the chain's output is read with a
    ring of ``in_pad`` cells holding ``ring``; ``lo``/``hi`` are padded to whole groups
    (:func:`padded_bounds`). At most 32 filters (one word per pixel)."""
    bands = min(rows, BANDS)  # a band reuses its input rows (a ring of three)
    for b in prange(bands):
        stem_pool_bits_rows(
            rows * b // bands,
            rows * (b + 1) // bands,
            x,
            in_pad,
            ring,
            codes,
            params,
            alpha,
            grouped,
            taps,
            sums,
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
def stem_pool_bits_rows(
    r0,
    r1,
    x,
    in_pad,
    ring,
    codes,
    params,
    alpha,
    grouped,
    taps,
    sums,
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
    """Rows [r0, r1) of :func:`stem_pool_bits` (one task of a frame, one thread)."""
    width = x.shape[1] + 2 * in_pad
    filters = taps.shape[1]
    planes = np.empty((3, 3, width), np.float32)  # a ring of three input rows
    tags = np.full(3, -1, np.int64)  # the padded input row each slot holds
    tops = np.zeros(3, np.float32)
    line = np.empty(x.shape[1] * 3, np.float32)
    hits = np.empty(conv_cols, np.uint32)
    codes4 = np.empty((-(-grouped.shape[0] // 4), conv_cols), np.uint32)
    ordered = np.empty((3, 3, width), np.float32)
    acc = np.empty((filters, conv_cols), np.float32)
    words = np.empty(cols, np.uint64)
    largest_sum = np.float64(sums.max())
    for r in range(r0, r1):
        words[:] = np.uint64(0)
        for pr in range(size):
            cr = r * pool_stride + pr
            if cr >= conv_rows:
                continue
            top = np.float32(0.0)
            for i in range(3):
                slot = (cr + i) % 3
                if tags[slot] != cr + i:
                    tops[slot] = _load_row(
                        x, cr + i, in_pad, ring, codes, params, alpha, line, planes[slot]
                    )
                    tags[slot] = cr + i
                t = tops[slot]
                if not np.isnan(top) and not (t <= top):  # a NaN stays
                    top = t
            s0, s1, s2 = cr % 3, (cr + 1) % 3, (cr + 2) % 3
            if np.float64(top) * largest_sum <= SAFE_PRODUCT:
                _fused_hits(planes, s0, s1, s2, grouped, taps, sums, top, lo, hi, codes4, hits)
            else:  # non-finite or huge inputs: the reference order throughout
                ordered[0] = planes[s0]
                ordered[1] = planes[s1]
                ordered[2] = planes[s2]
                _conv_row_3x3x3(ordered, taps, conv_cols, acc)
                window_hits(acc, lo, hi, specials, hits)
            for c in range(cols):
                for pc in range(size):
                    cc = c * pool_stride + pc
                    if cc < conv_cols:
                        words[c] |= np.uint64(hits[cc])
        for c in range(cols):
            bits[r + pad, c + pad, 0] = words[c]
