"""The RGB stem of binarized networks in one pass: input chain, 3x3 convolution with fused
multiply-adds, monotone chain, max-pool and sign, writing the next layer's packed bits.

Only the sign of ``chain(conv(x))`` after the max-pool is ever used: bit f of a pixel is
``lo[f] <= v <= hi[f]`` for the reference convolution output ``v`` (:mod:`.conv_blocked`
explains the thresholds). The reference sums its 27 products one at a time in (kernel row,
kernel column, channel) order, each product and sum rounded to float32. This kernel sums in
the same order with fused multiply-adds (one rounding per tap) in register tiles of output
pixels x 16 filters (:mod:`.stem_tile`), and proves per value that the test cannot have
changed:

* for a sum of n products computed with any mix of fused and separate multiply-adds,
  ``|computed - exact| <= gamma_n * sum |x_t w_t|`` with ``gamma_n = n u / (1 - n u)`` and
  ``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1). The
  reference obeys the same bound, so the two differ by at most ``2 gamma_27 M S_f``, where
  ``M`` is the largest |input| of the three input rows and ``S_f = sum |w_f|``;
* :data:`ERROR_FACTOR` is twice that constant (the margin covers the float32 rounding of
  the bound itself) and :data:`TINY` covers products in the subnormal range;
* a value farther than that bound from both ``lo[f]`` and ``hi[f]`` gives the reference's
  test result; a pixel with a value within it is recomputed in the reference order.

Rows whose inputs are not finite, or so large that a sum could overflow, run the reference
order throughout (:func:`edgebnn.kernels.conv_blocked.window_hits`), NaN and infinity
rules included. The input chain (the network's input layer and its bias, e.g. mean
subtraction) is applied here to each input row as it is read, op by op as its own kernel
would (:func:`edgebnn.kernels.elementwise.apply_chain`), so the float input tensor is never
written: the result is bit-identical to the separate steps. Each input row is read once per
band into a padded row of interleaved channels (a ring of three rows), where a pixel's nine
taps of a kernel row are nine consecutive floats.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import JIT, PJIT, prange
from edgebnn.kernels.conv_blocked import _conv_row_3x3x3, window_hits
from edgebnn.kernels.elementwise import apply_chain_call
from edgebnn.kernels.stem_tile import PANEL, TAPS, TILE_PIXELS, stem_tile
from numba import njit

#: Row bands of :func:`stem_pool_bits` called as its own kernel (a frame makes its own).
BANDS = 16
#: Twice the largest |FMA sum - reference sum| / (M * S_f) for 27 products: 2 x 2 gamma_27.
ERROR_FACTOR = np.float32(4 * 27 * 2.0**-24 / (1 - 27 * 2.0**-24))
#: Absolute error allowance for products in float32's subnormal range.
TINY = np.float32(1e-36)
#: Inputs up to this (times the largest ``S_f``) take the fused path: no sum can overflow.
SAFE_PRODUCT = 1e30


def stem_weights(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(panels, reference, sums) from ELL's (F, 3, 3, 3) weights: ``panels`` is
    (panels, 27, PANEL) for the register tiles (missing filters zero), ``reference`` (27, F)
    in the reference order, ``sums`` the per-filter ``sum |w|`` (panels * PANEL)."""
    filters = weights.shape[0]
    taps = np.ascontiguousarray(weights.reshape(filters, TAPS).T, dtype=np.float32)  # (27, F)
    count = -(-filters // PANEL)
    padded = np.zeros((TAPS, count * PANEL), np.float32)
    padded[:, :filters] = taps
    panels = np.ascontiguousarray(padded.reshape(TAPS, count, PANEL).transpose(1, 0, 2))
    sums = np.abs(padded.astype(np.float64)).sum(axis=0).astype(np.float32)
    return panels, taps, sums


def padded_bounds(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lo``/``hi`` padded to whole panels with an empty interval (the bit stays 0)."""
    width = -(-lo.shape[0] // PANEL) * PANEL
    lo_p = np.full(width, np.inf, np.float32)
    hi_p = np.full(width, -np.inf, np.float32)
    lo_p[: lo.shape[0]], hi_p[: hi.shape[0]] = lo, hi
    return lo_p, hi_p


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
def _tile_bounds(lo, hi, sums, top, bounds):
    """``bounds[p]`` = (lo + err, hi - err, lo - err, hi + err) of panel p's filters, rounded
    outwards to float32 (the order of :mod:`.stem_tile`), ``err`` the bound on |fused sum -
    reference sum| for inputs of magnitude at most ``top``."""
    scale = np.float64(ERROR_FACTOR) * np.float64(top)
    for f in range(lo.shape[0]):
        p, k = f // PANEL, f % PANEL
        e = scale * np.float64(sums[f]) + np.float64(TINY)
        lo64, hi64 = np.float64(lo[f]), np.float64(hi[f])
        bounds[p, 0, k] = _up(lo64 + e)
        bounds[p, 1, k] = _down(hi64 - e)
        bounds[p, 2, k] = _down(lo64 - e)
        bounds[p, 3, k] = _up(hi64 + e)


@njit(**JIT)
def _reference_pixel(row0, row1, row2, taps, lo, hi, c, acc):
    """The test bits of pixel ``c`` from sums in the reference order (no fused ops; the
    filters side by side in ``acc``, each summed in order as in its own loop)."""
    filters = taps.shape[1]
    base = 3 * c
    for f in range(filters):
        acc[f] = np.float32(0.0)
    for i in range(3):
        row = row0 if i == 0 else (row1 if i == 1 else row2)
        for t in range(9):
            v = row[base + t]
            w = taps[9 * i + t]
            for f in range(filters):
                acc[f] += v * w[f]
    word = np.uint32(0)
    for f in range(filters):
        if acc[f] >= lo[f] and acc[f] <= hi[f]:
            word |= np.uint32(1) << np.uint32(f)
    return word


@njit(**JIT)
def _fused_hits(row0, row1, row2, panels, taps, bounds, lo, hi, cols, hits):
    """``hits[c]`` bit f = the reference test of one convolution row whose inputs are finite
    and at most as large as ``bounds`` allow, for columns ``c < cols``: from the tiles'
    fused sums where they decide it, from sums in the reference order for the tiles where
    they do not. The rows and ``hits`` are padded to whole tiles (the extra pixels' bits
    are not used); ``hits`` bits of filters past the panels are left as they are."""
    a0, a1, a2 = row0.ctypes.data, row1.ctypes.data, row2.ctypes.data
    out = hits.ctypes.data
    for p0 in range(0, cols, TILE_PIXELS):
        unsure = 0
        for p in range(panels.shape[0]):
            unsure |= stem_tile(a0 + 12 * p0, a1 + 12 * p0, a2 + 12 * p0, panels[p].ctypes.data,
                                bounds[p].ctypes.data, out + 4 * p0 + 2 * p)  # fmt: skip
        if unsure:  # a fused sum within the error bound of a threshold
            acc = np.empty(taps.shape[1], np.float32)
            for c in range(p0, min(p0 + TILE_PIXELS, cols)):
                hits[c] = _reference_pixel(row0, row1, row2, taps, lo, hi, c, acc)


@njit(**JIT)
def _load_row(x, pr, in_pad, ring, codes, params, alpha, row):
    """Padded input row ``pr`` after the input chain into ``row`` (interleaved channels;
    floats past the padded width stay as they are); returns its largest |value| (NaN when
    a value is NaN: an integer max over the float bits)."""
    raw = x.shape[1] * 3
    start = 3 * in_pad
    end = start + raw
    width = end + start
    r = pr - in_pad
    if r < 0 or r >= x.shape[0]:
        for e in range(width):
            row[e] = ring
        return np.float32(abs(ring))
    for e in range(start):
        row[e] = ring
    src = x[r].reshape(-1)
    line = row[start:end]
    for e in range(raw):
        line[e] = src[e]
    apply_chain_call(line, r, codes, params, alpha)
    for e in range(end, width):
        row[e] = ring
    bits = row[:width].view(np.uint32)
    top = np.uint32(0)
    for e in range(width):
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
    panels,
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
    ring of ``in_pad`` cells holding ``ring``; ``panels``/``sums`` and ``lo``/``hi`` come
    from :func:`stem_weights` and :func:`padded_bounds`. At most 32 filters (one word per
    pixel)."""
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
            panels,
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
    panels,
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
    tiled = -(-conv_cols // TILE_PIXELS) * TILE_PIXELS
    # A ring of three input rows, long enough for the last tile's extra pixels (zeros).
    ring_rows = np.zeros((3, 3 * (tiled + 2)), np.float32)
    tags = np.full(3, -1, np.int64)  # the padded input row each slot holds
    tops = np.zeros(3, np.float32)
    bounds = np.empty((panels.shape[0], 4, PANEL), np.float32)
    hits = np.zeros(tiled, np.uint32)  # (one panel: the tiles write the low halves)
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
                        x, cr + i, in_pad, ring, codes, params, alpha, ring_rows[slot]
                    )
                    tags[slot] = cr + i
                t = tops[slot]
                if not np.isnan(top) and not (t <= top):  # a NaN stays
                    top = t
            row0, row1, row2 = ring_rows[cr % 3], ring_rows[(cr + 1) % 3], ring_rows[(cr + 2) % 3]
            if np.float64(top) * largest_sum <= SAFE_PRODUCT:
                _tile_bounds(lo, hi, sums, top, bounds)
                _fused_hits(row0, row1, row2, panels, taps, bounds, lo, hi, conv_cols, hits)
            else:  # non-finite or huge inputs: the reference order throughout
                for i in range(3):
                    src = ring_rows[(cr + i) % 3]
                    for col in range(width):
                        for ch in range(3):
                            ordered[i, ch, col] = src[3 * col + ch]
                _conv_row_3x3x3(ordered, taps, conv_cols, acc)
                window_hits(acc, lo, hi, specials, hits)
            for c in range(cols):
                for pc in range(size):
                    cc = c * pool_stride + pc
                    if cc < conv_cols:
                        words[c] |= np.uint64(hits[cc])
        for c in range(cols):
            bits[r + pad, c + pad, 0] = words[c]
