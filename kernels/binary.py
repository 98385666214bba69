"""XNOR/popcount binary convolution on bit-packed activations.

Bit convention (ELL's, spec 4.7): a set bit is +1 (value > 0), a clear bit is −1 (value
<= 0, so 0 maps to −1). Activations are packed along channels, 64 per uint64 word, LSB
first (``bits[r, c, w]`` holds channels 64w .. 64w+63). For the convolution each output
pixel's receptive field is gathered into ELL's filter-volume order, ``v = (i*k + j)*C + ch``,
so that a 3x3x16 field takes 3 words instead of 9 (``patches[p, b]``), and a per-pixel
``mask`` clears the bits of padding positions, which contribute 0 (ELL's zero-padding mask).

With ``n`` valid bits and ``d`` differing bits among them, ``sum sign(w) sign(x) = n − 2d``,
so ``dot = nvalid[p] − 2 · Σ_b popcount((x_b XOR w_b) AND mask_b)``: exact integers.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, popcount64, prange
from edgebnn.kernels.elementwise import apply_chain_call, store_row
from numba import njit


def words_for(channels: int) -> int:
    """uint64 words per pixel for ``channels`` packed channels."""
    return -(-channels // 64)


SHIFTS = np.arange(64, dtype=np.uint64)


def pack_words(bits: np.ndarray) -> np.ndarray:
    """(..., n) 0/1 values -> (..., ceil(n / 64)) uint64, bit i at bit i % 64 of word i // 64
    (ELL's LSB-first packing; plan-time NumPy)."""
    *lead, n = bits.shape
    words = words_for(n)
    padded = np.zeros((*lead, words * 64), np.uint64)
    padded[..., :n] = bits
    return np.ascontiguousarray(
        (padded.reshape(*lead, words, 64) << SHIFTS).sum(axis=-1, dtype=np.uint64)
    )


def unpack_words(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_words`: (..., words) uint64 -> (..., n) uint64 0/1 values."""
    *lead, _ = words.shape
    return ((words[..., None] >> SHIFTS) & np.uint64(1)).reshape(*lead, -1)[..., :n]


@njit(**PJIT)
def sign_pack(x, bits):
    """Pack a whole float tensor (ring included): bit set iff x > 0."""
    for r in prange(x.shape[0]):
        sign_pack_rows(r, r + 1, x, bits)


@njit(**JIT)
def sign_pack_rows(r0, r1, x, bits):
    """Rows [r0, r1) of :func:`sign_pack` (one task of a frame, one thread)."""
    _, cols, chans = x.shape
    words = bits.shape[2]
    for r in range(r0, r1):
        for c in range(cols):
            for w in range(words):
                word = np.uint64(0)
                for k in range(w * 64, min(chans, (w + 1) * 64)):
                    if x[r, c, k] > np.float32(0.0):
                        word |= np.uint64(1) << np.uint64(k - w * 64)
                bits[r, c, w] = word


@njit(**HOT_JIT)
def _gather_row(bits, chans, k, stride, r, cols, patches):
    """Receptive fields of output row ``r`` in ELL's volume order: ``patches[c, :]``."""
    words = bits.shape[2]
    blocks = patches.shape[1]
    if chans == 64 * words:  # whole words: the field is the k x k pixels' words in order
        run = k * words  # kernel row i's words: one contiguous run of the input row
        for i in range(k):
            src = bits[r * stride + i].reshape(-1)
            for c in range(cols):
                s0 = c * stride * words
                d0 = i * run
                for t in range(run):
                    patches[c, d0 + t] = src[s0 + t]
        return
    for c in range(cols):
        for b in range(blocks):
            patches[c, b] = np.uint64(0)
        pos = 0
        for i in range(k):
            for j in range(k):
                for w in range(words):
                    nb = min(64, chans - w * 64)
                    word = bits[r * stride + i, c * stride + j, w]
                    blk = pos >> 6
                    off = pos & 63
                    patches[c, blk] |= word << np.uint64(off)
                    if off + nb > 64:
                        patches[c, blk + 1] |= word >> np.uint64(64 - off)
                    pos += nb


@njit(**PJIT)
def gather_patches(bits, chans, k, stride, rows, cols, patches):
    """All receptive fields, ``patches[r*cols + c, :]`` (the convolution gathers per row)."""
    for r in prange(rows):
        _gather_row(bits, chans, k, stride, r, cols, patches[r * cols : (r + 1) * cols])


def _valid_taps(
    rows_in: int, cols_in: int, k: int, stride: int, rows: int, cols: int, pad: int
) -> np.ndarray:
    """(rows, cols, k, k): which taps of each output pixel read the interior (not the ring)."""
    taps_r = (np.arange(rows) * stride)[:, None, None, None] + np.arange(k)[None, None, :, None]
    taps_c = (np.arange(cols) * stride)[None, :, None, None] + np.arange(k)[None, None, None, :]
    if not pad:
        return np.ones((rows, cols, k, k), bool)
    valid_r = (taps_r >= pad) & (taps_r < rows_in - pad)
    valid_c = (taps_c >= pad) & (taps_c < cols_in - pad)
    return valid_r & valid_c


def patch_masks(
    rows_in: int, cols_in: int, chans: int, k: int, stride: int, rows: int, cols: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel masks of valid bits and their counts (geometry only: built once per plan).

    A bit is valid when it belongs to the volume and, if ``pad`` > 0, its tap does not fall
    in the ring of width ``pad`` (ELL masks zero padding only).
    """
    valid = _valid_taps(rows_in, cols_in, k, stride, rows, cols, pad)
    per_bit = np.repeat(valid.reshape(rows * cols, k * k), chans, axis=1)  # (P, volume)
    return pack_words(per_bit), per_bit.sum(axis=1).astype(np.int64)


def binary_weights_layout(bits: np.ndarray) -> np.ndarray:
    """ELL's (F, blocks) -> (blocks, F): filters innermost, so popcounts vectorise."""
    return np.ascontiguousarray(bits.T, dtype=np.uint64)


def row_windows(chans: int, k: int) -> bool:
    """True when one kernel row's receptive field (k pixels x ``chans`` bits) fits a word.

    Then the convolution reads its input as *row windows*: word ``i`` of a pixel's field
    holds kernel row ``i``'s ``k * chans`` bits in ELL's volume order (bit ``j*C + ch``), made
    from ``k`` neighbouring input words by shifts that vectorise along the row, instead of
    packing the field bit by bit into 64-bit blocks. The d-series' first binary layer
    (3x3x16: three 48-bit words) is the case this is for.
    """
    return k * chans <= 64


def window_weights_layout(bits: np.ndarray, chans: int, k: int) -> np.ndarray:
    """ELL's (F, blocks) packing -> (k, F) row-window words (see :func:`row_windows`)."""
    flat = unpack_words(bits, k * k * chans)
    words = pack_words(flat.reshape(bits.shape[0], k, k * chans))[:, :, 0]  # (F, k)
    return np.ascontiguousarray(words.T)


def window_masks(
    rows_in: int, cols_in: int, chans: int, k: int, stride: int, rows: int, cols: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`patch_masks` for the row-window layout: (rows * cols, k) masks, valid counts."""
    valid = _valid_taps(rows_in, cols_in, k, stride, rows, cols, pad)  # (rows, cols, k, k)
    per_bit = np.repeat(valid.reshape(rows * cols, k, k), chans, axis=2)  # (P, k, k * C)
    masks = pack_words(per_bit)[:, :, 0]  # one word per kernel row (k * C <= 64)
    return np.ascontiguousarray(masks), per_bit.reshape(rows * cols, -1).sum(axis=1).astype(
        np.int64
    )


@njit(**HOT_JIT)
def _gather_windows(bits, chans, k, stride, r, windows):
    """Row windows of output row ``r``: ``windows[i, c]`` (see :func:`row_windows`)."""
    cols = windows.shape[1]
    for i in range(k):
        src = bits[r * stride + i].reshape(-1)  # one word per pixel
        dst = windows[i]
        for c in range(cols):
            dst[c] = np.uint64(0)
        for j in range(k):
            shift = np.uint64(j * chans)
            if stride == 1:
                run = src[j : j + cols]
                for c in range(cols):
                    dst[c] |= run[c] << shift
            else:
                for c in range(cols):
                    dst[c] |= src[c * stride + j] << shift


@njit(**HOT_JIT)
def _counts_windows3(windows, masks, wt, r, acc):
    """A 3-row-window field: three popcounts per (pixel, filter), summed in registers.

    A pixel whose masks keep every bit any filter has (off the zero-padded ring) has
    ``(x ^ w) & m == (x & m) ^ w``: its mask is applied once, not once per filter.
    """
    filters = wt.shape[1]
    cols = windows.shape[1]
    w0, w1, w2 = wt[0], wt[1], wt[2]
    used0, used1, used2 = np.uint64(0), np.uint64(0), np.uint64(0)
    for f in range(filters):
        used0 |= w0[f]
        used1 |= w1[f]
        used2 |= w2[f]
    for c in range(cols):
        p = r * cols + c
        m0, m1, m2 = masks[p, 0], masks[p, 1], masks[p, 2]
        a = acc[c * filters : (c + 1) * filters]
        if (used0 & ~m0) | (used1 & ~m1) | (used2 & ~m2):  # a ring pixel
            x0, x1, x2 = windows[0, c], windows[1, c], windows[2, c]
            for f in range(filters):
                a[f] = np.int64(
                    popcount64((x0 ^ w0[f]) & m0)
                    + popcount64((x1 ^ w1[f]) & m1)
                    + popcount64((x2 ^ w2[f]) & m2)
                )
        else:
            x0, x1, x2 = windows[0, c] & m0, windows[1, c] & m1, windows[2, c] & m2
            for f in range(filters):
                a[f] = np.int64(
                    popcount64(x0 ^ w0[f]) + popcount64(x1 ^ w1[f]) + popcount64(x2 ^ w2[f])
                )


@njit(**HOT_JIT)
def _all_set(words, full):
    """True if every word of ``words`` is ``full`` (all bits set)."""
    for w in words:
        if w != full:
            return False
    return True


@njit(**HOT_JIT)
def _nine_words(x, wt, g, a, add):
    """``a[f]`` (``add``: ``a[f] +``) the differing bits of words ``g .. g + 8`` of a field
    ``x`` none of whose bits is masked: one pass over the filters, nine popcounts summed in
    registers (LLVM adds their byte counts before one horizontal sum per four words)."""
    x0, x1, x2 = x[g], x[g + 1], x[g + 2]
    x3, x4, x5 = x[g + 3], x[g + 4], x[g + 5]
    x6, x7, x8 = x[g + 6], x[g + 7], x[g + 8]
    w0, w1, w2 = wt[g], wt[g + 1], wt[g + 2]
    w3, w4, w5 = wt[g + 3], wt[g + 4], wt[g + 5]
    w6, w7, w8 = wt[g + 6], wt[g + 7], wt[g + 8]
    for f in range(a.shape[0]):
        d = np.int64(
            popcount64(x0 ^ w0[f])
            + popcount64(x1 ^ w1[f])
            + popcount64(x2 ^ w2[f])
            + popcount64(x3 ^ w3[f])
            + popcount64(x4 ^ w4[f])
            + popcount64(x5 ^ w5[f])
            + popcount64(x6 ^ w6[f])
            + popcount64(x7 ^ w7[f])
            + popcount64(x8 ^ w8[f])
        )
        a[f] = a[f] + d if add else d


@njit(**HOT_JIT)
def _nine_words2(x, y, wt, g, a, b):
    """``a[f] +=``, ``b[f] +=`` :func:`_nine_words`' counts of two pixels' fields ``x`` and
    ``y`` in one pass: each weight vector is loaded once for both, and the loop's set-up
    (bounds, overlap checks, broadcasts) is paid once per pair. Streaming the 72 x 1024
    weights of the d-series' last block from L2 once per pair instead of once per pixel
    made its counts 15-20% faster (Zen 4); for weights in L1 it gained nothing."""
    x0, x1, x2 = x[g], x[g + 1], x[g + 2]
    x3, x4, x5 = x[g + 3], x[g + 4], x[g + 5]
    x6, x7, x8 = x[g + 6], x[g + 7], x[g + 8]
    y0, y1, y2 = y[g], y[g + 1], y[g + 2]
    y3, y4, y5 = y[g + 3], y[g + 4], y[g + 5]
    y6, y7, y8 = y[g + 6], y[g + 7], y[g + 8]
    v0, v1, v2 = wt[g], wt[g + 1], wt[g + 2]
    v3, v4, v5 = wt[g + 3], wt[g + 4], wt[g + 5]
    v6, v7, v8 = wt[g + 6], wt[g + 7], wt[g + 8]
    for f in range(a.shape[0]):
        w0, w1, w2 = v0[f], v1[f], v2[f]
        w3, w4, w5 = v3[f], v4[f], v5[f]
        w6, w7, w8 = v6[f], v7[f], v8[f]
        d = np.int64(
            popcount64(x0 ^ w0)
            + popcount64(x1 ^ w1)
            + popcount64(x2 ^ w2)
            + popcount64(x3 ^ w3)
            + popcount64(x4 ^ w4)
            + popcount64(x5 ^ w5)
            + popcount64(x6 ^ w6)
            + popcount64(x7 ^ w7)
            + popcount64(x8 ^ w8)
        )
        e = np.int64(
            popcount64(y0 ^ w0)
            + popcount64(y1 ^ w1)
            + popcount64(y2 ^ w2)
            + popcount64(y3 ^ w3)
            + popcount64(y4 ^ w4)
            + popcount64(y5 ^ w5)
            + popcount64(y6 ^ w6)
            + popcount64(y7 ^ w7)
            + popcount64(y8 ^ w8)
        )
        a[f] += d
        b[f] += e


@njit(**HOT_JIT)
def _listed_triple(x, wt, i0, i1, i2, a):
    """``a[f] +=`` the differing bits of words ``i0``, ``i1``, ``i2`` of ``x`` (unmasked)."""
    x0, x1, x2 = x[i0], x[i1], x[i2]
    w0, w1, w2 = wt[i0], wt[i1], wt[i2]
    for f in range(a.shape[0]):
        a[f] += np.int64(popcount64(x0 ^ w0[f]) + popcount64(x1 ^ w1[f]) + popcount64(x2 ^ w2[f]))


@njit(**HOT_JIT)
def _masked_words(x, m, wt, b0, b1, a, listed):
    """``a[f] +=`` the differing bits of words ``b0 .. b1 - 1`` of ``x`` under masks ``m``.

    On the zero-padded ring whole taps are masked: a word with no valid bit is skipped,
    and a word whose mask keeps all its bits is counted unmasked, three at a time
    (``listed``: scratch for their indices). A corner pixel of a 3x3 field of whole
    64-channel words counts 4 of its 9 taps, an edge pixel 6.
    """
    full = ~np.uint64(0)
    n = 0
    for b in range(b0, b1):
        mb = m[b]
        if mb == full:
            listed[n] = b
            n += 1
        elif mb != 0:  # some bits valid: masked
            xb = x[b]
            wrow = wt[b]
            for f in range(a.shape[0]):
                a[f] += np.int64(popcount64((xb ^ wrow[f]) & mb))
    triples = n - n % 3
    for j in range(0, triples, 3):
        _listed_triple(x, wt, listed[j], listed[j + 1], listed[j + 2], a)
    for j in range(triples, n):
        xb = x[listed[j]]
        wrow = wt[listed[j]]
        for f in range(a.shape[0]):
            a[f] += np.int64(popcount64(xb ^ wrow[f]))


@njit(**JIT)  # an ordinary call (once per row): inlined, it tripled the kernels' compile time
def binary_counts(bits, chans, k, stride, masks, wt, windows, r, patches, acc):
    """Output row ``r``'s differing-bit counts: ``acc[c * F + f] = popcount((x XOR w) AND mask)``.

    ``windows``: the input is read as row windows (``wt``, ``masks`` in that layout, see
    :func:`row_windows`). ``patches`` (cols, blocks) is the caller's scratch.
    """
    blocks, filters = wt.shape
    cols = patches.shape[0]
    if windows:
        fields = patches.reshape(blocks, cols)
        _gather_windows(bits, chans, k, stride, r, fields)
        if k == 3:
            _counts_windows3(fields, masks, wt, r, acc)
            return
        words = fields.copy()  # other kernel sizes: back to (cols, blocks) order
        for c in range(cols):
            for b in range(blocks):
                patches[c, b] = words[b, c]
    else:
        _gather_row(bits, chans, k, stride, r, cols, patches)
    for e in range(cols * filters):
        acc[e] = 0
    # Large weight sets (deep layers: 72 blocks x 1024 filters) are streamed once per output
    # row for all its pixels, nine words at a time; small ones stay in L1 and each pixel runs
    # over them in turn. A pixel whose nine words are all valid (a 3x3 field of whole
    # 64-channel words off the zero-padded ring: most pixels) sums them unmasked in one pass
    # over the filters (streamed: two such neighbours per pass, :func:`_nine_words2`); the
    # others skip their padded taps (:func:`_masked_words`).
    full = ~np.uint64(0)
    nines = blocks % 9 == 0
    listed = np.empty(blocks, np.int64)
    if blocks * filters > 8192:
        step = 9 if nines else blocks
        for g in range(0, blocks, step):
            c = 0
            while c < cols:
                p = r * cols + c
                a = acc[c * filters : (c + 1) * filters]
                whole = nines and _all_set(masks[p, g : g + 9], full)  # no bit masked
                if whole and c + 1 < cols and _all_set(masks[p + 1, g : g + 9], full):
                    b = acc[(c + 1) * filters : (c + 2) * filters]
                    _nine_words2(patches[c], patches[c + 1], wt, g, a, b)
                    c += 2
                    continue
                if whole:
                    _nine_words(patches[c], wt, g, a, True)
                else:
                    _masked_words(patches[c], masks[p], wt, g, g + step, a, listed)
                c += 1
    else:
        for c in range(cols):
            a = acc[c * filters : (c + 1) * filters]
            p = r * cols + c
            if nines and _all_set(masks[p], full):  # a 3x3 field off the ring
                for g in range(0, blocks, 9):
                    _nine_words(patches[c], wt, g, a, g > 0)
            else:
                _masked_words(patches[c], masks[p], wt, 0, blocks, a, listed)


@njit(**JIT)
def binary_row(
    bits, chans, k, stride, masks, nvalid, wt, scale, use_scale, windows, r, patches, acc, row
):
    """Output row ``r`` before its chain: ``row[c * F + f] = scale_f * (n − 2·popcount)``.

    ``acc`` (cols * F, int64) is scratch for the counts (:func:`binary_counts`).
    """
    filters = wt.shape[1]
    cols = patches.shape[0]
    binary_counts(bits, chans, k, stride, masks, wt, windows, r, patches, acc)
    for c in range(cols):
        n = nvalid[r * cols + c]
        a = acc[c * filters : (c + 1) * filters]
        v = row[c * filters : (c + 1) * filters]
        if use_scale:
            for f in range(filters):
                v[f] = np.float32(n - 2 * a[f]) * scale[f]
        else:
            for f in range(filters):
                v[f] = np.float32(n - 2 * a[f])


@njit(**PJIT)
def binary_conv_chain(
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
    rows,
    cols,
    out,
    pad,
    codes,
    params,
    alpha,
):
    """``out[interior] = chain(scale_f * (nvalid − 2·popcount((x XOR w) AND mask)))``.

    ``bits`` are the channel-packed input (ring included); each output row gathers its
    receptive fields first (:func:`_gather_row`), then runs the popcount product.
    """
    for r in prange(rows):
        binary_conv_chain_rows(
            r,
            r + 1,
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
            rows,
            cols,
            out,
            pad,
            codes,
            params,
            alpha,
        )


@njit(**JIT)
def binary_conv_chain_rows(
    r0,
    r1,
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
    rows,
    cols,
    out,
    pad,
    codes,
    params,
    alpha,
):
    """Rows [r0, r1) of :func:`binary_conv_chain` (one task of a frame, one thread)."""
    blocks, filters = wt.shape
    patches = np.empty((cols, blocks), np.uint64)
    acc = np.empty(cols * filters, np.int64)
    row = np.empty(cols * filters, np.float32)
    for r in range(r0, r1):
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
        store_row(row, out, r, pad)
