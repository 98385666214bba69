"""Larq Compute Engine's binary operators, bit-exact: quantize, binary conv, binary max pool.

LCE's bit convention, written here once: **bit 1 ⇔ x < 0 (−1); bit 0 ⇔ +1**, so 0 and −0
binarize to +1. Channels are packed innermost, LSB first. LCE stores int32 words; edgebnn keeps
packed activations as uint64 words (channels 64w .. 64w+63), which on a little-endian machine
is the same bits as two consecutive int32 words. Bits past the channel count are zero.

The binary convolution computes LCE's accumulator exactly: ``acc = Σ popcount(x XOR w)``
over the receptive field, with positions outside the input read as bits 0 (LCE's "one
padding": +1). Then, as LCE's output transform does,

- float output: ``float(clamp(2·acc)) · (−m) + (b + K·m)`` (the fused multiplier and bias,
  computed once in double and rounded to float32), plus, for 'same' zero padding, LCE's
  correction ``(−m) · Σ_{taps outside} (C − 2·popcount(w))`` added afterwards;
- bitpacked output: bit ``acc > threshold[c]``.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, popcount64, prange
from edgebnn.kernels.tflite_float import clamp_row
from numba import njit

#: Bits per packed word in edgebnn's layout.
WORD_BITS = 64


def words_for(channels: int) -> int:
    """uint64 words per pixel for ``channels`` packed channels."""
    return -(-channels // WORD_BITS)


def binarize_bits(x: np.ndarray) -> np.ndarray:
    """LCE's convention as NumPy booleans: True (bit 1, −1) where x < 0; 0 and −0 are +1."""
    return np.asarray(x) < 0


def lce_words_to_u64(words: np.ndarray) -> np.ndarray:
    """LCE int32 words (..., n) -> edgebnn uint64 words (..., ceil(n / 2)), same bits."""
    words = np.ascontiguousarray(words, dtype="<i4")
    if words.shape[-1] % 2:
        pad = np.zeros((*words.shape[:-1], 1), "<i4")
        words = np.concatenate([words, pad], axis=-1)
    return np.ascontiguousarray(words.view("<u8"))


def u64_to_lce_words(words: np.ndarray, channels: int) -> np.ndarray:
    """edgebnn uint64 words -> LCE int32 words (..., ceil(channels / 32))."""
    as32 = np.ascontiguousarray(words, dtype="<u8").view("<i4")
    return np.ascontiguousarray(as32[..., : -(-channels // 32)])


def pack_reference(x: np.ndarray) -> np.ndarray:
    """NumPy reference of :func:`quantize`: (H, W, C) float -> (H, W, words) uint64."""
    bits = binarize_bits(x)
    *lead, chans = bits.shape
    n = words_for(chans)
    padded = np.zeros((*lead, n * WORD_BITS), np.uint64)
    padded[..., :chans] = bits
    shifts = np.arange(WORD_BITS, dtype=np.uint64)
    return (padded.reshape(*lead, n, WORD_BITS) << shifts).sum(axis=-1, dtype=np.uint64)


@njit(**HOT_JIT)
def pack_pixel(src, dst):
    """One pixel's floats -> its packed words (bit set iff x < 0), as :func:`quantize`."""
    chans = src.shape[0]
    for w in range(dst.shape[0]):
        word = np.uint64(0)
        for k in range(w * 64, min(chans, (w + 1) * 64)):
            if src[k] < np.float32(0.0):
                word |= np.uint64(1) << np.uint64(k - w * 64)
        dst[w] = word


@njit(**JIT)
def quantize_rows(r0, r1, x, bits):
    """Rows [r0, r1) of :func:`quantize`."""
    for r in range(r0, r1):
        for c in range(x.shape[1]):
            pack_pixel(x[r, c], bits[r, c])


@njit(**PJIT)
def quantize(x, bits):
    """LceQuantize: (H, W, C) float32 -> (H, W, words) uint64, bit set iff x < 0."""
    for r in prange(x.shape[0]):
        quantize_rows(r, r + 1, x, bits)


@njit(**PJIT)
def dequantize(bits, out):
    """LceDequantize: bit 1 -> −1.0, bit 0 -> +1.0."""
    rows, cols, chans = out.shape
    for r in prange(rows):
        for c in range(cols):
            for k in range(chans):
                bit = (bits[r, c, k // 64] >> np.uint64(k % 64)) & np.uint64(1)
                out[r, c, k] = np.float32(-1.0) if bit else np.float32(1.0)


@njit(**PJIT)
def bmaxpool(bits, fh, fw, sh, sw, pad_top, pad_left, out):
    """LceBMaxPool2d: max of ±1 values is −1 only if all are −1: AND of the bits over the
    window's in-bounds positions (padding is ignored, as TFLite's max pool does)."""
    rows, cols, words = bits.shape
    out_rows, out_cols, _ = out.shape
    for oy in prange(out_rows):
        for ox in range(out_cols):
            y0 = oy * sh - pad_top
            x0 = ox * sw - pad_left
            for w in range(words):
                acc = ~np.uint64(0)
                for ky in range(fh):
                    y = y0 + ky
                    if y < 0 or y >= rows:
                        continue
                    for kx in range(fw):
                        x = x0 + kx
                        if 0 <= x < cols:
                            acc &= bits[y, x, w]
                out[oy, ox, w] = acc


@njit(**HOT_JIT)
def _gather(bits, oy, ox, kh, kw, sh, sw, dh, dw, pad_top, pad_left, patch):
    """The receptive field of one output pixel as (kh*kw*words) words; outside reads 0."""
    rows, cols, words = bits.shape
    i = 0
    for ky in range(kh):
        y = oy * sh - pad_top + ky * dh
        for kx in range(kw):
            x = ox * sw - pad_left + kx * dw
            if 0 <= y < rows and 0 <= x < cols:
                for w in range(words):
                    patch[i + w] = bits[y, x, w]
            else:
                for w in range(words):
                    patch[i + w] = np.uint64(0)
            i += words


@njit(**HOT_JIT)
def _accumulate(p0, p1, wt, a0, a1):
    """a0[o] = Σ_d popcount(p0[d] XOR wt[d, o]), a1 likewise for p1.

    Two pixels share each weight load and four taps share each accumulator update; the
    loop over filters vectorises (SIMD popcount). Measured 15-25 % faster than one
    accumulator update per tap on 56x56x64 and 28x28x128 layers."""
    depth, filters = wt.shape
    for o in range(filters):
        a0[o] = 0
        a1[o] = 0
    d = 0
    while d + 4 <= depth:
        x0, x1, x2, x3 = p0[d], p0[d + 1], p0[d + 2], p0[d + 3]
        y0, y1, y2, y3 = p1[d], p1[d + 1], p1[d + 2], p1[d + 3]
        w0, w1, w2, w3 = wt[d], wt[d + 1], wt[d + 2], wt[d + 3]
        for o in range(filters):
            a0[o] += (popcount64(x0 ^ w0[o]) + popcount64(x1 ^ w1[o])
                      + popcount64(x2 ^ w2[o]) + popcount64(x3 ^ w3[o]))  # fmt: skip
            a1[o] += (popcount64(y0 ^ w0[o]) + popcount64(y1 ^ w1[o])
                      + popcount64(y2 ^ w2[o]) + popcount64(y3 ^ w3[o]))  # fmt: skip
        d += 4
    while d < depth:
        x0, y0, w0 = p0[d], p1[d], wt[d]
        for o in range(filters):
            a0[o] += popcount64(x0 ^ w0[o])
            a1[o] += popcount64(y0 ^ w0[o])
        d += 1


@njit(**HOT_JIT)
def _store_float(acc, clamp_lo, clamp_hi, mul, bias, dst):
    """LCE's float output transform of one pixel: float(clamp(2·acc))·mul + bias. The
    clamped value is within [0, 2K], so it converts through int32 (a SIMD conversion)."""
    for o in range(acc.shape[0]):
        v = min(max(2 * acc[o], clamp_lo), clamp_hi)
        dst[o] = np.float32(np.int32(v)) * mul[o] + bias[o]


@njit(**HOT_JIT)
def _add_clamp(dst, residual, lo, hi):
    """TFLite's ADD with a fused clamp, in place: dst = clamp(dst + residual) (NaN kept)."""
    for o in range(dst.shape[0]):
        dst[o] += residual[o]
    clamp_row(dst, lo, hi)


@njit(**HOT_JIT)
def _count_pair(bits, wt, geometry, out_cols, q0, q1, p0, p1, a0, a1):
    """The counts of output pixels q0 and q1 (row-major; the same pixel twice at the end
    of a range) into a0 and a1, through their gathered patches p0 and p1."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left = geometry
    _gather(bits, q0 // out_cols, q0 % out_cols, kh, kw, sh, sw, dh, dw, pad_top, pad_left, p0)
    _gather(bits, q1 // out_cols, q1 % out_cols, kh, kw, sh, sw, dh, dw, pad_top, pad_left, p1)
    _accumulate(p0, p1, wt, a0, a1)


@njit(**JIT)
def bconv_float_pixels(first, last, bits, wt, geometry, clamp_lo, clamp_hi, mul, bias,
                       correction, residual, add_lo, add_hi, out, packed):  # fmt: skip
    """Output pixels [first, last) (row-major) of :func:`bconv_float_fused`."""
    out_cols, filters = out.shape[1], out.shape[2]
    depth = wt.shape[0]
    corrected = correction.shape[0] > 0
    add = residual.shape[0] > 0
    pack = packed.shape[0] > 0
    # separate allocations: LLVM then knows they do not alias, and vectorises
    p0, p1 = np.empty(depth, np.uint64), np.empty(depth, np.uint64)
    a0, a1 = np.empty(filters, np.int64), np.empty(filters, np.int64)
    for q in range(first, last, 2):
        n = min(2, last - q)
        _count_pair(bits, wt, geometry, out_cols, q, q + n - 1, p0, p1, a0, a1)
        for i in range(n):
            oy, ox = (q + i) // out_cols, (q + i) % out_cols
            _store_float(a0 if i == 0 else a1, clamp_lo, clamp_hi, mul, bias, out[oy, ox])
            if corrected:
                for o in range(filters):
                    out[oy, ox, o] += correction[oy, ox, o]
            if add:
                _add_clamp(out[oy, ox], residual[oy, ox], add_lo, add_hi)
            if pack:
                pack_pixel(out[oy, ox], packed[oy, ox])


@njit(**PJIT)
def bconv_float_fused(bits, wt, geometry, clamp_lo, clamp_hi, mul, bias, correction,
                      residual, add_lo, add_hi, out, packed):  # fmt: skip
    """LceBconv2d with float output, optionally followed by the ADD of a residual (with
    the ADD's fused clamp ``[add_lo, add_hi]``) and the LceQuantize of the sum: the three
    operators of a QuickNet block in one pass, each value rounded as the operators round
    it. ``residual`` (out's shape) and ``packed`` (out_rows, out_cols, words) may be empty
    (0, 0, 0): no ADD, no packed output."""
    pixels = out.shape[0] * out.shape[1]
    chunks = min(pixels, 64)
    for t in prange(chunks):
        bconv_float_pixels(pixels * t // chunks, pixels * (t + 1) // chunks, bits, wt, geometry,
                           clamp_lo, clamp_hi, mul, bias, correction, residual, add_lo, add_hi,
                           out, packed)  # fmt: skip


#: An empty float tensor: "no residual / no correction".
NO_FLOATS = np.zeros((0, 0, 0), np.float32)
#: An empty packed tensor: "no packed output".
NO_BITS = np.zeros((0, 0, 0), np.uint64)


def bconv_float(bits, wt, geometry, clamp_lo, clamp_hi, mul, bias, correction, out) -> None:
    """LceBconv2d with float output. ``geometry`` = (kh, kw, sh, sw, dh, dw, pad_top,
    pad_left); ``correction`` is (out_rows, out_cols, filters) or empty (0, 0, 0)."""
    inf = np.float32(np.inf)
    bconv_float_fused(bits, wt, geometry, clamp_lo, clamp_hi, mul, bias, correction,
                      NO_FLOATS, -inf, inf, out, NO_BITS)  # fmt: skip


@njit(**JIT)
def bconv_bits_pixels(first, last, bits, wt, geometry, thresholds, out):
    """Output pixels [first, last) (row-major) of :func:`bconv_bits`."""
    out_cols, out_words = out.shape[1], out.shape[2]
    depth, filters = wt.shape
    # separate allocations: LLVM then knows they do not alias, and vectorises
    p0, p1 = np.empty(depth, np.uint64), np.empty(depth, np.uint64)
    a0, a1 = np.empty(filters, np.int64), np.empty(filters, np.int64)
    for q in range(first, last, 2):
        n = min(2, last - q)
        _count_pair(bits, wt, geometry, out_cols, q, q + n - 1, p0, p1, a0, a1)
        for i in range(n):
            acc = a0 if i == 0 else a1
            oy, ox = (q + i) // out_cols, (q + i) % out_cols
            for w in range(out_words):
                word = np.uint64(0)
                for o in range(w * 64, min(filters, (w + 1) * 64)):
                    if acc[o] > thresholds[o]:
                        word |= np.uint64(1) << np.uint64(o - w * 64)
                out[oy, ox, w] = word


@njit(**PJIT)
def bconv_bits(bits, wt, geometry, thresholds, out):
    """LceBconv2d with bitpacked output: bit o set iff acc[o] > thresholds[o]."""
    pixels = out.shape[0] * out.shape[1]
    chunks = min(pixels, 64)
    for t in prange(chunks):
        bconv_bits_pixels(pixels * t // chunks, pixels * (t + 1) // chunks, bits, wt, geometry,
                          thresholds, out)  # fmt: skip


def bconv_reference(
    bits: np.ndarray, filters_u64: np.ndarray, geometry: tuple[int, ...], out_hw: tuple[int, int]
) -> np.ndarray:
    """NumPy reference accumulator (out_rows, out_cols, filters) int64 of LCE's bconv,
    one padding; ``filters_u64`` is (O, kh, kw, words)."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left = geometry
    rows, cols, words = bits.shape
    out_rows, out_cols = out_hw
    padded_rows = max(rows, (out_rows - 1) * sh + (kh - 1) * dh + 1 - pad_top) + pad_top
    padded_cols = max(cols, (out_cols - 1) * sw + (kw - 1) * dw + 1 - pad_left) + pad_left
    padded = np.zeros((padded_rows, padded_cols, words), np.uint64)
    padded[pad_top : pad_top + rows, pad_left : pad_left + cols] = bits
    as_bytes = lambda a: np.unpackbits(a.view(np.uint8), axis=-1)
    acc = np.zeros((out_rows, out_cols, filters_u64.shape[0]), np.int64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            window = padded[y0 : y0 + (out_rows - 1) * sh + 1 : sh,
                            x0 : x0 + (out_cols - 1) * sw + 1 : sw]  # fmt: skip
            xbits = as_bytes(np.ascontiguousarray(window)).astype(np.int64)
            wbits = as_bytes(np.ascontiguousarray(filters_u64[:, ky, kx])).astype(np.int64)
            diff = xbits[:, :, None, :] ^ wbits[None, None, :, :]
            acc += diff.sum(axis=-1)
    return acc
