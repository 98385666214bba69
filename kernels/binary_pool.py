"""A binary convolution block in one pass: XNOR/popcount, its chain, max-pool and sign.

The d-series blocks compute ``sign(post(maxpool(chain(binary_conv(x)))))`` where ``chain``
is bias + PReLU (any element-wise ops, per-element alpha included) and ``post`` is a
monotone per-channel chain (batch-norm as ELL's three layers). Written as separate steps,
the first block writes and re-reads a 4 MB float tensor per frame. Here each thread takes a
band of pooled rows and keeps only the last ``size`` rows of ``chain(conv)`` (ring columns
and rows included, as ELL's padded tensor holds them), recomputing one row where bands meet.

The bit is exact: the window maximum ``m`` is taken as ELL takes it (cells past the tensor
count as −FLT_MAX; a cell wins only when greater, so NaN never does), and
``post(m) > 0`` is ``lo <= m <= hi`` for finite ``m`` (bounds from
:mod:`edgebnn.engine.thresholds`), NaN and ±inf by the ``specials`` flags.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from edgebnn.kernels.binary import binary_counts, binary_row
from edgebnn.kernels.elementwise import apply_chain_call
from edgebnn.kernels.pool import FLT_MAX, has_nonfinite, nonfinite_bit
from numba import njit

#: Multiplying eight 0/1 bytes (a little-endian uint64) by this brings byte i's bit to bit
#: 56 + i, with no carries between them: ``(x * PACK_MAGIC) >> 56`` packs 8 bytes to 8 bits.
PACK_MAGIC = np.uint64(0x0102040810204080)


@njit(**HOT_JIT)
def _pack_bytes(on, words):
    """``words[i]`` bit b = ``on[64 i + b]`` (0/1 bytes): 64 sign bits per word, 8 at a time."""
    groups = on.view(np.uint64)
    for i in range(words.shape[0]):
        word = np.uint64(0)
        for g in range(8):
            word |= ((groups[i * 8 + g] * PACK_MAGIC) >> np.uint64(56)) << np.uint64(8 * g)
        words[i] = word


@njit(**HOT_JIT)
def _pack_tests(on, filters, dst):
    """Pack 0/1 bytes ``on`` (pixels x filters) into ``dst`` (pixels, words): channel f of a
    pixel at bit f % 64 of its word f // 64."""
    pixels, words = dst.shape
    if filters % 64 == 0:
        _pack_bytes(on, dst.reshape(-1))
        return
    for c in range(pixels):
        for w in range(words):
            word = np.uint64(0)
            for f in range(w * 64, min(filters, (w + 1) * 64)):
                word |= np.uint64(on[c * filters + f]) << np.uint64(f - w * 64)
            dst[c, w] = word


@njit(**HOT_JIT)
def _band(band, bands, rows):
    """Pooled rows [p0, p1) of ``band`` when ``rows`` are split into ``bands``."""
    per = -(-rows // bands)
    return band * per, min(rows, (band + 1) * per)


@njit(**PJIT)
def binary_conv_pool_bits(
    bits,
    chans,
    k,
    stride,
    masks,
    nvalid,
    wt,
    scale,
    use_scale,
    windows,
    conv_rows,
    conv_cols,
    codes,
    params,
    alpha,
    ring,
    size,
    pool_stride,
    rows,
    cols,
    lo,
    hi,
    specials,
    out_bits,
    out_pad,
    bands,
):
    """Packed sign bits of the pooled block output into ``out_bits`` (ring left as filled).

    ``ring`` is the chain's ring-filled output tensor (conv_rows + 2p, conv_cols + 2p, F):
    only its ring cells are read. ``bands`` (>= 1) splits the pooled rows among threads.
    """
    bands = max(1, min(rows, bands))
    for band in prange(bands):
        p0, p1 = _band(band, bands, rows)
        binary_conv_pool_bits_rows(
            p0,
            p1,
            bits,
            chans,
            k,
            stride,
            masks,
            nvalid,
            wt,
            scale,
            use_scale,
            windows,
            conv_rows,
            conv_cols,
            codes,
            params,
            alpha,
            ring,
            size,
            pool_stride,
            rows,
            cols,
            lo,
            hi,
            specials,
            out_bits,
            out_pad,
            bands,
        )


@njit(**JIT)
def binary_conv_pool_bits_rows(
    p0,
    p1,
    bits,
    chans,
    k,
    stride,
    masks,
    nvalid,
    wt,
    scale,
    use_scale,
    windows,
    conv_rows,
    conv_cols,
    codes,
    params,
    alpha,
    ring,
    size,
    pool_stride,
    rows,
    cols,
    lo,
    hi,
    specials,
    out_bits,
    out_pad,
    bands,
):
    """Pooled rows [p0, p1) of :func:`binary_conv_pool_bits` (one band, one thread)."""
    blocks, filters = wt.shape
    rows_u, width, _ = ring.shape
    upad = (rows_u - conv_rows) // 2
    if p0 < p1:
        patches = np.empty((conv_cols, blocks), np.uint64)
        acc = np.empty(conv_cols * filters, np.int64)
        slots = np.empty((size, width * filters), np.float32)
        colmax = np.empty(width * filters, np.float32)
        pooled = np.empty(cols * filters, np.float32)
        on = np.empty(cols * filters, np.uint8)
        lo_row = np.empty(cols * filters, np.float32)
        hi_row = np.empty(cols * filters, np.float32)
        for c in range(cols):
            lo_row[c * filters : (c + 1) * filters] = lo
            hi_row[c * filters : (c + 1) * filters] = hi
        start = upad * filters
        end = start + conv_cols * filters
        done = p0 * pool_stride  # padded rows below this one are in the slots (or skipped)
        for pr in range(p0, p1):
            q_lo = pr * pool_stride
            for q in range(max(done, q_lo), q_lo + size):
                slot = slots[q % size]
                r = q - upad
                if q >= rows_u:  # past the tensor: never wins a window
                    for e in range(width * filters):
                        slot[e] = -FLT_MAX
                elif 0 <= r < conv_rows:
                    row = slot[start:end]
                    binary_row(
                        bits,
                        chans,
                        k,
                        stride,
                        masks,
                        nvalid,
                        wt,
                        scale,
                        use_scale,
                        windows,
                        r,
                        patches,
                        acc,
                        row,
                    )
                    apply_chain_call(row, r, codes, params, alpha)
                    src = ring[q].reshape(-1)
                    for e in range(start):  # ring columns
                        slot[e] = src[e]
                    for e in range(end, width * filters):
                        slot[e] = src[e]
                else:  # a ring row
                    src = ring[q].reshape(-1)
                    for e in range(width * filters):
                        slot[e] = src[e]
            done = q_lo + size
            # Window maximum, rows first then columns (a cell wins only when greater).
            for e in range(width * filters):
                colmax[e] = -FLT_MAX
            for i in range(size):
                other = slots[(q_lo + i) % size]
                for e in range(width * filters):
                    v = other[e]
                    colmax[e] = v if v > colmax[e] else colmax[e]  # noqa: FURB136  (std::max: NaN never wins)
            for c in range(cols):
                c0 = c * pool_stride
                m = pooled[c * filters : (c + 1) * filters]
                if size == 3 and c0 + 2 < width:  # the d-series' 3x3 windows, inside the row
                    a0 = colmax[c0 * filters : (c0 + 1) * filters]
                    a1 = colmax[(c0 + 1) * filters : (c0 + 2) * filters]
                    a2 = colmax[(c0 + 2) * filters : (c0 + 3) * filters]
                    for f in range(filters):
                        v = a0[f]
                        v = a1[f] if a1[f] > v else v  # noqa: FURB136  (colmax holds no NaN)
                        m[f] = a2[f] if a2[f] > v else v  # noqa: FURB136
                else:
                    for f in range(filters):
                        m[f] = -FLT_MAX
                    for j in range(size):
                        cc = c0 + j
                        if cc < width:
                            cell = colmax[cc * filters : (cc + 1) * filters]
                            for f in range(filters):
                                v = cell[f]
                                m[f] = v if v > m[f] else m[f]  # noqa: FURB136
            for e in range(cols * filters):
                v = pooled[e]
                on[e] = np.uint8((v >= lo_row[e]) & (v <= hi_row[e]))
            if has_nonfinite(pooled):  # rare: ±inf reached the sign test (NaN never wins)
                for e in range(cols * filters):
                    v = pooled[e]
                    if not abs(v) <= FLT_MAX:
                        on[e] = np.uint8(nonfinite_bit(v, specials[e % filters]))
            _pack_tests(on, filters, out_bits[pr + out_pad, out_pad : out_pad + cols])


@njit(**PJIT)
def binary_conv_pool_counts(
    bits,
    chans,
    k,
    stride,
    masks,
    wt,
    windows,
    conv_rows,
    conv_cols,
    limits,
    ring_words,
    flip,
    keep,
    force,
    size,
    pool_stride,
    rows,
    cols,
    out_bits,
    out_pad,
    bands,
):
    """The same block as :func:`binary_conv_pool_bits` on integers only (see
    :mod:`edgebnn.engine.count_thresholds`): each cell's test is ``d <= limits[p, f]`` on
    its count of differing bits, packed 64 to a word; a pooled word is the OR of its
    window's words, then ``((pooled ^ flip) & keep) | force``.
    """
    bands = max(1, min(rows, bands))
    for band in prange(bands):
        p0, p1 = _band(band, bands, rows)
        binary_conv_pool_counts_rows(
            p0,
            p1,
            bits,
            chans,
            k,
            stride,
            masks,
            wt,
            windows,
            conv_rows,
            conv_cols,
            limits,
            ring_words,
            flip,
            keep,
            force,
            size,
            pool_stride,
            rows,
            cols,
            out_bits,
            out_pad,
            bands,
        )


@njit(**JIT)
def binary_conv_pool_counts_rows(
    p0,
    p1,
    bits,
    chans,
    k,
    stride,
    masks,
    wt,
    windows,
    conv_rows,
    conv_cols,
    limits,
    ring_words,
    flip,
    keep,
    force,
    size,
    pool_stride,
    rows,
    cols,
    out_bits,
    out_pad,
    bands,
):
    """Pooled rows [p0, p1) of :func:`binary_conv_pool_counts` (one band, one thread)."""
    blocks, filters = wt.shape
    rows_u, width, words = ring_words.shape
    upad = (rows_u - conv_rows) // 2
    if p0 < p1:
        patches = np.empty((conv_cols, blocks), np.uint64)
        acc = np.empty(conv_cols * filters, np.int64)
        on = np.empty(conv_cols * filters, np.uint8)
        slots = np.empty((size, width, words), np.uint64)
        rowor = np.empty(width * words, np.uint64)
        done = p0 * pool_stride  # padded rows below this one are in the slots (or skipped)
        for pr in range(p0, p1):
            q_lo = pr * pool_stride
            for q in range(max(done, q_lo), q_lo + size):
                slot = slots[q % size]
                r = q - upad
                if q >= rows_u:  # past the tensor: -FLT_MAX, whose tests are off
                    slot[:, :] = np.uint64(0)
                    continue
                slot[:, :] = ring_words[q]
                if 0 <= r < conv_rows:
                    binary_counts(bits, chans, k, stride, masks, wt, windows, r, patches, acc)
                    lim = limits[r * conv_cols : (r + 1) * conv_cols].reshape(-1)
                    for e in range(conv_cols * filters):
                        on[e] = np.uint8(acc[e] <= lim[e])
                    _pack_tests(on, filters, slot[upad : upad + conv_cols])
            done = q_lo + size
            # The window's rows ORed first (one long loop), then its columns.
            rowor[:] = slots[q_lo % size].reshape(-1)
            for i in range(1, size):
                other = slots[(q_lo + i) % size].reshape(-1)
                for e in range(width * words):
                    rowor[e] |= other[e]
            dst = out_bits[pr + out_pad]
            for c in range(cols):
                c0 = c * pool_stride
                last = min(width, c0 + size)
                for w in range(words):
                    pooled = np.uint64(0)
                    for cc in range(c0, last):
                        pooled |= rowor[cc * words + w]
                    dst[c + out_pad, w] = ((pooled ^ flip[w]) & keep[w]) | force[w]
