"""Depthwise 3x3 and 5x5 rows with each output's sum kept in a register over its taps.

The generic depthwise loop (``acc[f] += x * w`` per tap) loads and stores the accumulator
row once per tap and, indexed as ``row[b + f]``, does not vectorise at all (Numba's
negative-index wrap-around hides the stride from LLVM). These helpers slice every tap's
input and weight vector first, then run one channel loop that sums all taps into a
scalar: one store per output, loads only of inputs and weights, vectorised.

Three shapes: :func:`_cols3`/:func:`_cols5` (any stride) walk output pixels, channels
innermost; :func:`_pairs3`/:func:`_pairs5` (stride 1) do two neighbouring pixels at once,
each input vector loaded once for both (1.5-2x faster); :func:`_flat3`/:func:`_flat5`
(stride 1, few channels) walk the whole output row as one flat (column, channel) vector
against weights tiled along the row (:func:`tile_taps`): no per-pixel overhead. Every (pixel, channel) sums its taps
in (kernel row, kernel column) order, product and sum rounded to float32, from 0: the
same result, bit for bit, as the NumPy reference. Taps before ``lead`` are zero (the
builder's asymmetric "same" padding) and skipped. :func:`depthwise_conv2d_rows_chain` is
the generic loop, for any kernel size.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from edgebnn.kernels.elementwise import apply_chain, store_row
from edgebnn.kernels.epilogue import chain_into
from numba import njit

#: Most channels for which a stride-1 row runs flat (tiled weights: taps * cols * chans floats).
FLAT_MAX_CHANNELS = 64
NO_TILES = np.zeros((1, 1), np.float32)


def taps_supported(k: int, lead: int) -> bool:
    """Whether :func:`depthwise_row` handles a ``k`` kernel with ``lead`` zero taps."""
    return k - lead in (3, 5)


def tile_taps(w: np.ndarray, lead: int, stride: int, cols: int) -> np.ndarray:
    """(k, k, C) weights -> (taps * taps, cols * C) tiled along a row, for the flat helpers;
    :data:`NO_TILES` when the layer does not run flat (stride 2, or many channels)."""
    chans = w.shape[2]
    if stride != 1 or chans > FLAT_MAX_CHANNELS:
        return NO_TILES
    taps = w[lead:, lead:, :].reshape(-1, chans)
    return np.ascontiguousarray(np.tile(taps, (1, cols)), dtype=np.float32)


@njit(**HOT_JIT)
def _flat3(l0, l1, l2, wt, lead, chans, acc):  # type: ignore[no-untyped-def]
    """Stride 1, 3x3 taps: ``acc[e] = sum(x[e + tap offset] * wt[tap, e])`` over the row."""
    n = acc.shape[0]
    x00 = l0[(lead + 0) * chans : (lead + 0) * chans + n]
    w00 = wt[0]
    x01 = l0[(lead + 1) * chans : (lead + 1) * chans + n]
    w01 = wt[1]
    x02 = l0[(lead + 2) * chans : (lead + 2) * chans + n]
    w02 = wt[2]
    x10 = l1[(lead + 0) * chans : (lead + 0) * chans + n]
    w10 = wt[3]
    x11 = l1[(lead + 1) * chans : (lead + 1) * chans + n]
    w11 = wt[4]
    x12 = l1[(lead + 2) * chans : (lead + 2) * chans + n]
    w12 = wt[5]
    x20 = l2[(lead + 0) * chans : (lead + 0) * chans + n]
    w20 = wt[6]
    x21 = l2[(lead + 1) * chans : (lead + 1) * chans + n]
    w21 = wt[7]
    x22 = l2[(lead + 2) * chans : (lead + 2) * chans + n]
    w22 = wt[8]
    for e in range(n):
        s = np.float32(0.0)
        s += x00[e] * w00[e]
        s += x01[e] * w01[e]
        s += x02[e] * w02[e]
        s += x10[e] * w10[e]
        s += x11[e] * w11[e]
        s += x12[e] * w12[e]
        s += x20[e] * w20[e]
        s += x21[e] * w21[e]
        s += x22[e] * w22[e]
        acc[e] = s


@njit(**HOT_JIT)
def _flat5(l0, l1, l2, l3, l4, wt, lead, chans, acc):  # type: ignore[no-untyped-def]
    """Stride 1, 5x5 taps: ``acc[e] = sum(x[e + tap offset] * wt[tap, e])`` over the row."""
    n = acc.shape[0]
    x00 = l0[(lead + 0) * chans : (lead + 0) * chans + n]
    w00 = wt[0]
    x01 = l0[(lead + 1) * chans : (lead + 1) * chans + n]
    w01 = wt[1]
    x02 = l0[(lead + 2) * chans : (lead + 2) * chans + n]
    w02 = wt[2]
    x03 = l0[(lead + 3) * chans : (lead + 3) * chans + n]
    w03 = wt[3]
    x04 = l0[(lead + 4) * chans : (lead + 4) * chans + n]
    w04 = wt[4]
    x10 = l1[(lead + 0) * chans : (lead + 0) * chans + n]
    w10 = wt[5]
    x11 = l1[(lead + 1) * chans : (lead + 1) * chans + n]
    w11 = wt[6]
    x12 = l1[(lead + 2) * chans : (lead + 2) * chans + n]
    w12 = wt[7]
    x13 = l1[(lead + 3) * chans : (lead + 3) * chans + n]
    w13 = wt[8]
    x14 = l1[(lead + 4) * chans : (lead + 4) * chans + n]
    w14 = wt[9]
    x20 = l2[(lead + 0) * chans : (lead + 0) * chans + n]
    w20 = wt[10]
    x21 = l2[(lead + 1) * chans : (lead + 1) * chans + n]
    w21 = wt[11]
    x22 = l2[(lead + 2) * chans : (lead + 2) * chans + n]
    w22 = wt[12]
    x23 = l2[(lead + 3) * chans : (lead + 3) * chans + n]
    w23 = wt[13]
    x24 = l2[(lead + 4) * chans : (lead + 4) * chans + n]
    w24 = wt[14]
    x30 = l3[(lead + 0) * chans : (lead + 0) * chans + n]
    w30 = wt[15]
    x31 = l3[(lead + 1) * chans : (lead + 1) * chans + n]
    w31 = wt[16]
    x32 = l3[(lead + 2) * chans : (lead + 2) * chans + n]
    w32 = wt[17]
    x33 = l3[(lead + 3) * chans : (lead + 3) * chans + n]
    w33 = wt[18]
    x34 = l3[(lead + 4) * chans : (lead + 4) * chans + n]
    w34 = wt[19]
    x40 = l4[(lead + 0) * chans : (lead + 0) * chans + n]
    w40 = wt[20]
    x41 = l4[(lead + 1) * chans : (lead + 1) * chans + n]
    w41 = wt[21]
    x42 = l4[(lead + 2) * chans : (lead + 2) * chans + n]
    w42 = wt[22]
    x43 = l4[(lead + 3) * chans : (lead + 3) * chans + n]
    w43 = wt[23]
    x44 = l4[(lead + 4) * chans : (lead + 4) * chans + n]
    w44 = wt[24]
    for e in range(n):
        s = np.float32(0.0)
        s += x00[e] * w00[e]
        s += x01[e] * w01[e]
        s += x02[e] * w02[e]
        s += x03[e] * w03[e]
        s += x04[e] * w04[e]
        s += x10[e] * w10[e]
        s += x11[e] * w11[e]
        s += x12[e] * w12[e]
        s += x13[e] * w13[e]
        s += x14[e] * w14[e]
        s += x20[e] * w20[e]
        s += x21[e] * w21[e]
        s += x22[e] * w22[e]
        s += x23[e] * w23[e]
        s += x24[e] * w24[e]
        s += x30[e] * w30[e]
        s += x31[e] * w31[e]
        s += x32[e] * w32[e]
        s += x33[e] * w33[e]
        s += x34[e] * w34[e]
        s += x40[e] * w40[e]
        s += x41[e] * w41[e]
        s += x42[e] * w42[e]
        s += x43[e] * w43[e]
        s += x44[e] * w44[e]
        acc[e] = s


@njit(**HOT_JIT)
def _cols3(l0, l1, l2, w, lead, stride, cols, chans, acc):  # type: ignore[no-untyped-def]
    """Any stride, 3x3 taps: per output pixel, the channel loop with its sum in a register."""
    w00 = w[lead + 0, lead + 0]
    w01 = w[lead + 0, lead + 1]
    w02 = w[lead + 0, lead + 2]
    w10 = w[lead + 1, lead + 0]
    w11 = w[lead + 1, lead + 1]
    w12 = w[lead + 1, lead + 2]
    w20 = w[lead + 2, lead + 0]
    w21 = w[lead + 2, lead + 1]
    w22 = w[lead + 2, lead + 2]
    for c in range(cols):
        b = (c * stride + lead) * chans
        a = acc[c * chans : (c + 1) * chans]
        x00 = l0[b + 0 * chans : b + 1 * chans]
        x01 = l0[b + 1 * chans : b + 2 * chans]
        x02 = l0[b + 2 * chans : b + 3 * chans]
        x10 = l1[b + 0 * chans : b + 1 * chans]
        x11 = l1[b + 1 * chans : b + 2 * chans]
        x12 = l1[b + 2 * chans : b + 3 * chans]
        x20 = l2[b + 0 * chans : b + 1 * chans]
        x21 = l2[b + 1 * chans : b + 2 * chans]
        x22 = l2[b + 2 * chans : b + 3 * chans]
        for f in range(chans):
            s = np.float32(0.0)
            s += x00[f] * w00[f]
            s += x01[f] * w01[f]
            s += x02[f] * w02[f]
            s += x10[f] * w10[f]
            s += x11[f] * w11[f]
            s += x12[f] * w12[f]
            s += x20[f] * w20[f]
            s += x21[f] * w21[f]
            s += x22[f] * w22[f]
            a[f] = s


@njit(**HOT_JIT)
def _cols5(l0, l1, l2, l3, l4, w, lead, stride, cols, chans, acc):  # type: ignore[no-untyped-def]
    """Any stride, 5x5 taps: per output pixel, the channel loop with its sum in a register."""
    w00 = w[lead + 0, lead + 0]
    w01 = w[lead + 0, lead + 1]
    w02 = w[lead + 0, lead + 2]
    w03 = w[lead + 0, lead + 3]
    w04 = w[lead + 0, lead + 4]
    w10 = w[lead + 1, lead + 0]
    w11 = w[lead + 1, lead + 1]
    w12 = w[lead + 1, lead + 2]
    w13 = w[lead + 1, lead + 3]
    w14 = w[lead + 1, lead + 4]
    w20 = w[lead + 2, lead + 0]
    w21 = w[lead + 2, lead + 1]
    w22 = w[lead + 2, lead + 2]
    w23 = w[lead + 2, lead + 3]
    w24 = w[lead + 2, lead + 4]
    w30 = w[lead + 3, lead + 0]
    w31 = w[lead + 3, lead + 1]
    w32 = w[lead + 3, lead + 2]
    w33 = w[lead + 3, lead + 3]
    w34 = w[lead + 3, lead + 4]
    w40 = w[lead + 4, lead + 0]
    w41 = w[lead + 4, lead + 1]
    w42 = w[lead + 4, lead + 2]
    w43 = w[lead + 4, lead + 3]
    w44 = w[lead + 4, lead + 4]
    for c in range(cols):
        b = (c * stride + lead) * chans
        a = acc[c * chans : (c + 1) * chans]
        x00 = l0[b + 0 * chans : b + 1 * chans]
        x01 = l0[b + 1 * chans : b + 2 * chans]
        x02 = l0[b + 2 * chans : b + 3 * chans]
        x03 = l0[b + 3 * chans : b + 4 * chans]
        x04 = l0[b + 4 * chans : b + 5 * chans]
        x10 = l1[b + 0 * chans : b + 1 * chans]
        x11 = l1[b + 1 * chans : b + 2 * chans]
        x12 = l1[b + 2 * chans : b + 3 * chans]
        x13 = l1[b + 3 * chans : b + 4 * chans]
        x14 = l1[b + 4 * chans : b + 5 * chans]
        x20 = l2[b + 0 * chans : b + 1 * chans]
        x21 = l2[b + 1 * chans : b + 2 * chans]
        x22 = l2[b + 2 * chans : b + 3 * chans]
        x23 = l2[b + 3 * chans : b + 4 * chans]
        x24 = l2[b + 4 * chans : b + 5 * chans]
        x30 = l3[b + 0 * chans : b + 1 * chans]
        x31 = l3[b + 1 * chans : b + 2 * chans]
        x32 = l3[b + 2 * chans : b + 3 * chans]
        x33 = l3[b + 3 * chans : b + 4 * chans]
        x34 = l3[b + 4 * chans : b + 5 * chans]
        x40 = l4[b + 0 * chans : b + 1 * chans]
        x41 = l4[b + 1 * chans : b + 2 * chans]
        x42 = l4[b + 2 * chans : b + 3 * chans]
        x43 = l4[b + 3 * chans : b + 4 * chans]
        x44 = l4[b + 4 * chans : b + 5 * chans]
        for f in range(chans):
            s = np.float32(0.0)
            s += x00[f] * w00[f]
            s += x01[f] * w01[f]
            s += x02[f] * w02[f]
            s += x03[f] * w03[f]
            s += x04[f] * w04[f]
            s += x10[f] * w10[f]
            s += x11[f] * w11[f]
            s += x12[f] * w12[f]
            s += x13[f] * w13[f]
            s += x14[f] * w14[f]
            s += x20[f] * w20[f]
            s += x21[f] * w21[f]
            s += x22[f] * w22[f]
            s += x23[f] * w23[f]
            s += x24[f] * w24[f]
            s += x30[f] * w30[f]
            s += x31[f] * w31[f]
            s += x32[f] * w32[f]
            s += x33[f] * w33[f]
            s += x34[f] * w34[f]
            s += x40[f] * w40[f]
            s += x41[f] * w41[f]
            s += x42[f] * w42[f]
            s += x43[f] * w43[f]
            s += x44[f] * w44[f]
            a[f] = s


@njit(**HOT_JIT)
def _pairs3(l0, l1, l2, w, lead, pairs, chans, acc):  # type: ignore[no-untyped-def]
    """Stride 1, 3x3 taps, output columns two at a time: each loaded input vector
    serves both columns (12 input loads for two outputs instead of 18)."""
    w00 = w[lead + 0, lead + 0]
    w01 = w[lead + 0, lead + 1]
    w02 = w[lead + 0, lead + 2]
    w10 = w[lead + 1, lead + 0]
    w11 = w[lead + 1, lead + 1]
    w12 = w[lead + 1, lead + 2]
    w20 = w[lead + 2, lead + 0]
    w21 = w[lead + 2, lead + 1]
    w22 = w[lead + 2, lead + 2]
    for q in range(pairs):
        c = 2 * q
        b = (c + lead) * chans
        a0 = acc[c * chans : (c + 1) * chans]
        a1 = acc[(c + 1) * chans : (c + 2) * chans]
        x00 = l0[b + 0 * chans : b + 1 * chans]
        x01 = l0[b + 1 * chans : b + 2 * chans]
        x02 = l0[b + 2 * chans : b + 3 * chans]
        x03 = l0[b + 3 * chans : b + 4 * chans]
        x10 = l1[b + 0 * chans : b + 1 * chans]
        x11 = l1[b + 1 * chans : b + 2 * chans]
        x12 = l1[b + 2 * chans : b + 3 * chans]
        x13 = l1[b + 3 * chans : b + 4 * chans]
        x20 = l2[b + 0 * chans : b + 1 * chans]
        x21 = l2[b + 1 * chans : b + 2 * chans]
        x22 = l2[b + 2 * chans : b + 3 * chans]
        x23 = l2[b + 3 * chans : b + 4 * chans]
        for f in range(chans):
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s0 += x00[f] * w00[f]
            s1 += x01[f] * w00[f]
            s0 += x01[f] * w01[f]
            s1 += x02[f] * w01[f]
            s0 += x02[f] * w02[f]
            s1 += x03[f] * w02[f]
            s0 += x10[f] * w10[f]
            s1 += x11[f] * w10[f]
            s0 += x11[f] * w11[f]
            s1 += x12[f] * w11[f]
            s0 += x12[f] * w12[f]
            s1 += x13[f] * w12[f]
            s0 += x20[f] * w20[f]
            s1 += x21[f] * w20[f]
            s0 += x21[f] * w21[f]
            s1 += x22[f] * w21[f]
            s0 += x22[f] * w22[f]
            s1 += x23[f] * w22[f]
            a0[f] = s0
            a1[f] = s1


@njit(**HOT_JIT)
def _pairs5(l0, l1, l2, l3, l4, w, lead, pairs, chans, acc):  # type: ignore[no-untyped-def]
    """Stride 1, 5x5 taps, output columns two at a time: each loaded input vector
    serves both columns (30 input loads for two outputs instead of 50)."""
    w00 = w[lead + 0, lead + 0]
    w01 = w[lead + 0, lead + 1]
    w02 = w[lead + 0, lead + 2]
    w03 = w[lead + 0, lead + 3]
    w04 = w[lead + 0, lead + 4]
    w10 = w[lead + 1, lead + 0]
    w11 = w[lead + 1, lead + 1]
    w12 = w[lead + 1, lead + 2]
    w13 = w[lead + 1, lead + 3]
    w14 = w[lead + 1, lead + 4]
    w20 = w[lead + 2, lead + 0]
    w21 = w[lead + 2, lead + 1]
    w22 = w[lead + 2, lead + 2]
    w23 = w[lead + 2, lead + 3]
    w24 = w[lead + 2, lead + 4]
    w30 = w[lead + 3, lead + 0]
    w31 = w[lead + 3, lead + 1]
    w32 = w[lead + 3, lead + 2]
    w33 = w[lead + 3, lead + 3]
    w34 = w[lead + 3, lead + 4]
    w40 = w[lead + 4, lead + 0]
    w41 = w[lead + 4, lead + 1]
    w42 = w[lead + 4, lead + 2]
    w43 = w[lead + 4, lead + 3]
    w44 = w[lead + 4, lead + 4]
    for q in range(pairs):
        c = 2 * q
        b = (c + lead) * chans
        a0 = acc[c * chans : (c + 1) * chans]
        a1 = acc[(c + 1) * chans : (c + 2) * chans]
        x00 = l0[b + 0 * chans : b + 1 * chans]
        x01 = l0[b + 1 * chans : b + 2 * chans]
        x02 = l0[b + 2 * chans : b + 3 * chans]
        x03 = l0[b + 3 * chans : b + 4 * chans]
        x04 = l0[b + 4 * chans : b + 5 * chans]
        x05 = l0[b + 5 * chans : b + 6 * chans]
        x10 = l1[b + 0 * chans : b + 1 * chans]
        x11 = l1[b + 1 * chans : b + 2 * chans]
        x12 = l1[b + 2 * chans : b + 3 * chans]
        x13 = l1[b + 3 * chans : b + 4 * chans]
        x14 = l1[b + 4 * chans : b + 5 * chans]
        x15 = l1[b + 5 * chans : b + 6 * chans]
        x20 = l2[b + 0 * chans : b + 1 * chans]
        x21 = l2[b + 1 * chans : b + 2 * chans]
        x22 = l2[b + 2 * chans : b + 3 * chans]
        x23 = l2[b + 3 * chans : b + 4 * chans]
        x24 = l2[b + 4 * chans : b + 5 * chans]
        x25 = l2[b + 5 * chans : b + 6 * chans]
        x30 = l3[b + 0 * chans : b + 1 * chans]
        x31 = l3[b + 1 * chans : b + 2 * chans]
        x32 = l3[b + 2 * chans : b + 3 * chans]
        x33 = l3[b + 3 * chans : b + 4 * chans]
        x34 = l3[b + 4 * chans : b + 5 * chans]
        x35 = l3[b + 5 * chans : b + 6 * chans]
        x40 = l4[b + 0 * chans : b + 1 * chans]
        x41 = l4[b + 1 * chans : b + 2 * chans]
        x42 = l4[b + 2 * chans : b + 3 * chans]
        x43 = l4[b + 3 * chans : b + 4 * chans]
        x44 = l4[b + 4 * chans : b + 5 * chans]
        x45 = l4[b + 5 * chans : b + 6 * chans]
        for f in range(chans):
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s0 += x00[f] * w00[f]
            s1 += x01[f] * w00[f]
            s0 += x01[f] * w01[f]
            s1 += x02[f] * w01[f]
            s0 += x02[f] * w02[f]
            s1 += x03[f] * w02[f]
            s0 += x03[f] * w03[f]
            s1 += x04[f] * w03[f]
            s0 += x04[f] * w04[f]
            s1 += x05[f] * w04[f]
            s0 += x10[f] * w10[f]
            s1 += x11[f] * w10[f]
            s0 += x11[f] * w11[f]
            s1 += x12[f] * w11[f]
            s0 += x12[f] * w12[f]
            s1 += x13[f] * w12[f]
            s0 += x13[f] * w13[f]
            s1 += x14[f] * w13[f]
            s0 += x14[f] * w14[f]
            s1 += x15[f] * w14[f]
            s0 += x20[f] * w20[f]
            s1 += x21[f] * w20[f]
            s0 += x21[f] * w21[f]
            s1 += x22[f] * w21[f]
            s0 += x22[f] * w22[f]
            s1 += x23[f] * w22[f]
            s0 += x23[f] * w23[f]
            s1 += x24[f] * w23[f]
            s0 += x24[f] * w24[f]
            s1 += x25[f] * w24[f]
            s0 += x30[f] * w30[f]
            s1 += x31[f] * w30[f]
            s0 += x31[f] * w31[f]
            s1 += x32[f] * w31[f]
            s0 += x32[f] * w32[f]
            s1 += x33[f] * w32[f]
            s0 += x33[f] * w33[f]
            s1 += x34[f] * w33[f]
            s0 += x34[f] * w34[f]
            s1 += x35[f] * w34[f]
            s0 += x40[f] * w40[f]
            s1 += x41[f] * w40[f]
            s0 += x41[f] * w41[f]
            s1 += x42[f] * w41[f]
            s0 += x42[f] * w42[f]
            s1 += x43[f] * w42[f]
            s0 += x43[f] * w43[f]
            s1 += x44[f] * w43[f]
            s0 += x44[f] * w44[f]
            s1 += x45[f] * w44[f]
            a0[f] = s0
            a1[f] = s1


@njit(**HOT_JIT)
def depthwise_row(l0, l1, l2, l3, l4, w, wt, lead, stride, cols, acc):  # type: ignore[no-untyped-def]
    """One output row into ``acc`` (cols * C) from input rows ``l0..`` (padded rows,
    flattened; the kernel rows from ``lead`` on; ``l3``, ``l4`` unused for 3x3)."""
    chans = w.shape[2]
    taps = w.shape[0] - lead
    flat = wt.shape[0] == taps * taps
    if flat:
        if taps == 3:
            _flat3(l0, l1, l2, wt, lead, chans, acc)
        else:
            _flat5(l0, l1, l2, l3, l4, wt, lead, chans, acc)
        return
    done = 0
    if stride == 1:
        done = cols - cols % 2
        if taps == 3:
            _pairs3(l0, l1, l2, w, lead, done // 2, chans, acc)
        else:
            _pairs5(l0, l1, l2, l3, l4, w, lead, done // 2, chans, acc)
    if done < cols:
        # The remaining columns (all of them at stride 2, the odd last one at stride 1).
        o = done * stride * chans
        m0, m1, m2, m3, m4 = l0[o:], l1[o:], l2[o:], l3[o:], l4[o:]
        rest = acc[done * chans :]
        if taps == 3:
            _cols3(m0, m1, m2, w, lead, stride, cols - done, chans, rest)
        else:
            _cols5(m0, m1, m2, m3, m4, w, lead, stride, cols - done, chans, rest)


@njit(**PJIT)
def depthwise_rows_chain(x, w, wt, stride, lead, rows, cols, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
    """Depthwise 3x3/5x5 (after ``lead`` zero taps) + chain, written straight into ``out``'s
    interior; ``w`` (k, k, C), ``wt`` from :func:`tile_taps`."""
    for r in prange(rows):
        depthwise_rows_chain_rows(
            r, r + 1, x, w, wt, stride, lead, rows, cols, out, pad, codes, params, alpha
        )


@njit(**JIT)
def depthwise_rows_chain_rows(
    t0, t1, x, w, wt, stride, lead, rows, cols, out, pad, codes, params, alpha
):  # type: ignore[no-untyped-def]
    """Iterations [t0, t1) of :func:`depthwise_rows_chain`'s parallel loop (one task of a frame)."""
    chans = w.shape[2]
    five = w.shape[0] - lead == 5
    for r in range(t0, t1):
        p = r * stride + lead
        l0 = x[p].reshape(-1)
        l1 = x[p + 1].reshape(-1)
        l2 = x[p + 2].reshape(-1)
        l3 = x[p + 3].reshape(-1) if five else l0
        l4 = x[p + 4].reshape(-1) if five else l0
        dst = out[r + pad].reshape(-1)[pad * chans : (pad + cols) * chans]
        depthwise_row(l0, l1, l2, l3, l4, w, wt, lead, stride, cols, dst)
        chain_into(dst, dst, r, codes, params, alpha)


@njit(**PJIT)
def depthwise_conv2d_rows_chain(x, w, stride, lead, rows, cols, out, pad, codes, params, alpha):  # type: ignore[no-untyped-def]
    """Depthwise convolution, weights (k, k, F); taps before ``lead`` are zero and skipped."""
    k = w.shape[0]
    chans = w.shape[2]
    for r in prange(rows):
        row = np.zeros(cols * chans, np.float32)
        for c in range(cols):
            acc = row[c * chans : (c + 1) * chans]
            for i in range(lead, k):
                for j in range(lead, k):
                    for f in range(chans):
                        acc[f] += x[r * stride + i, c * stride + j, f] * w[i, j, f]
        apply_chain(row, r, codes, params, alpha)
        store_row(row, out, r, pad)
