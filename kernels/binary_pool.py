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
from edgebnn.kernels._jit import PJIT, prange
from edgebnn.kernels.binary import binary_row
from edgebnn.kernels.elementwise import apply_chain
from edgebnn.kernels.pool import FLT_MAX, nonfinite_bit
from numba import njit


@njit(**PJIT)
def binary_conv_pool_bits(bits, chans, k, stride, masks, nvalid, wt, scale, use_scale, windows, conv_rows, conv_cols, codes, params, alpha, ring, size, pool_stride, rows, cols, lo, hi, specials, out_bits, out_pad, bands):  # type: ignore[no-untyped-def]
    """Packed sign bits of the pooled block output into ``out_bits`` (ring left as filled).

    ``ring`` is the chain's ring-filled output tensor (conv_rows + 2p, conv_cols + 2p, F):
    only its ring cells are read. ``bands`` (>= 1) splits the pooled rows among threads.
    """
    blocks, filters = wt.shape
    rows_u, width, _ = ring.shape
    upad = (rows_u - conv_rows) // 2
    words = out_bits.shape[2]
    bands = max(1, min(rows, bands))
    per = -(-rows // bands)
    for band in prange(bands):
        p0 = band * per
        p1 = min(rows, p0 + per)
        patches = np.empty((conv_cols, blocks), np.uint64)
        acc = np.empty(conv_cols * filters, np.int64)
        slots = np.empty((size, width * filters), np.float32)
        colmax = np.empty(width * filters, np.float32)
        m = np.empty(filters, np.float32)
        on = np.empty(filters, np.uint64)
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
                    binary_row(bits, chans, k, stride, masks, nvalid, wt, scale, use_scale, windows, r, patches, acc, row)
                    apply_chain(row, r, codes, params, alpha)
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
                finite = 0
                for f in range(filters):
                    v = m[f]
                    on[f] = np.uint64((v >= lo[f]) & (v <= hi[f]))
                    finite += np.int64(abs(v) <= FLT_MAX)
                if finite != filters:  # rare: NaN or inf reached the sign test
                    for f in range(filters):
                        v = m[f]
                        if not abs(v) <= FLT_MAX:
                            on[f] = np.uint64(1) if nonfinite_bit(v, specials[f]) else np.uint64(0)
                for w in range(words):
                    word = np.uint64(0)
                    for f in range(w * 64, min(filters, (w + 1) * 64)):
                        word |= on[f] << np.uint64(f - w * 64)
                    out_bits[pr + out_pad, c + out_pad, w] = word
