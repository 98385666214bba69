"""Depthwise 3x3 and 5x5 rows with each output's sum kept in a register over its taps.

The generic depthwise loop (``acc[f] += x * w`` per tap) loads and stores the accumulator
row once per tap and, indexed as ``row[b + f]``, does not vectorise at all (Numba's
negative-index wrap-around hides the stride from LLVM). These helpers slice every tap's
input and weight vector first, then run one channel loop that sums all taps into a
scalar: one store per output, loads only of inputs and weights, vectorised.

Three shapes: :func:`_cols3`/:func:`_cols5` (any stride) walk output pixels, channels
innermost; :func:`_pairs3`/:func:`_pairs5` (stride 1) and :func:`_spairs3`/:func:`_spairs5`
(stride 2) do two neighbouring pixels at once, each input vector loaded once for both and
two independent sums in flight (a pixel's sum is a chain of dependent additions: one chain
leaves the adders idle; 1.1-2x faster, most at stride 2: 7x7x672 5x5/s2 0.129 -> 0.065 ms
on one AVX2 core), an odd last pixel again as a pair with its neighbour, which is computed
twice to the same bits; :func:`_flat3`/:func:`_flat5`
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


def _unrolled(taps: int) -> str:
    """The source of ``_flat{taps}``, ``_cols{taps}`` and ``_pairs{taps}``: one statement per
    tap, so every tap's input and weight vector is sliced once and each sum stays in a
    register; the taps are summed in (kernel row, kernel column) order, as the reference."""
    rows = ", ".join(f"l{i}" for i in range(taps))
    grid = [(i, j) for i in range(taps) for j in range(taps)]

    def w_taps(indent: str) -> list[str]:
        return [f"{indent}w{i}{j} = w[lead + {i}, lead + {j}]" for i, j in grid]

    def x_taps(indent: str, width: int) -> list[str]:
        return [
            f"{indent}x{i}{j} = l{i}[b + {j} * chans : b + {j + 1} * chans]"
            for i in range(taps)
            for j in range(width)
        ]

    flat = [
        f"def _flat{taps}({rows}, wt, lead, chans, acc):",
        "    n = acc.shape[0]",
        *(
            line
            for t, (i, j) in enumerate(grid)
            for line in (
                f"    x{i}{j} = l{i}[(lead + {j}) * chans : (lead + {j}) * chans + n]",
                f"    w{i}{j} = wt[{t}]",
            )
        ),
        "    for e in range(n):",
        "        s = np.float32(0.0)",
        *(f"        s += x{i}{j}[e] * w{i}{j}[e]" for i, j in grid),
        "        acc[e] = s",
    ]
    cols = [
        f"def _cols{taps}({rows}, w, lead, stride, cols, chans, acc):",
        *w_taps("    "),
        "    for c in range(cols):",
        "        b = (c * stride + lead) * chans",
        "        a = acc[c * chans : (c + 1) * chans]",
        *x_taps("        ", taps),
        "        for f in range(chans):",
        "            s = np.float32(0.0)",
        *(f"            s += x{i}{j}[f] * w{i}{j}[f]" for i, j in grid),
        "            a[f] = s",
    ]

    def pairs(name: str, stride: int) -> list[str]:
        return [
            f"def {name}{taps}({rows}, w, lead, pairs, chans, acc):",
            *w_taps("    "),
            "    for q in range(pairs):",
            "        c = 2 * q",
            f"        b = (c * {stride} + lead) * chans",
            "        a0 = acc[c * chans : (c + 1) * chans]",
            "        a1 = acc[(c + 1) * chans : (c + 2) * chans]",
            *x_taps("        ", taps + stride),
            "        for f in range(chans):",
            "            s0 = np.float32(0.0)",
            "            s1 = np.float32(0.0)",
            *(
                line
                for i, j in grid
                for line in (
                    f"            s0 += x{i}{j}[f] * w{i}{j}[f]",
                    f"            s1 += x{i}{j + stride}[f] * w{i}{j}[f]",
                )
            ),
            "            a0[f] = s0",
            "            a1[f] = s1",
        ]

    return "\n".join([*flat, "", *cols, "", *pairs("_pairs", 1), "", *pairs("_spairs", 2), ""])


# The helpers are compiled from the generated source as functions of this module (its
# globals, this file's name): Numba caches them like any other kernel, keyed on this file.
exec(compile(_unrolled(3) + _unrolled(5), __file__, "exec"), globals())  # noqa: S102
_flat3 = njit(**HOT_JIT)(globals()["_flat3"])
_flat5 = njit(**HOT_JIT)(globals()["_flat5"])
_cols3 = njit(**HOT_JIT)(globals()["_cols3"])
_cols5 = njit(**HOT_JIT)(globals()["_cols5"])
_pairs3 = njit(**HOT_JIT)(globals()["_pairs3"])
_pairs5 = njit(**HOT_JIT)(globals()["_pairs5"])
_spairs3 = njit(**HOT_JIT)(globals()["_spairs3"])
_spairs5 = njit(**HOT_JIT)(globals()["_spairs5"])


@njit(**JIT)  # an ordinary call (once per row): inlined, its helpers doubled two parts' compile
def depthwise_row(l0, l1, l2, l3, l4, w, wt, lead, stride, cols, acc):
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
    if cols < 2 or stride > 2:
        if taps == 3:
            _cols3(l0, l1, l2, w, lead, stride, cols, chans, acc)
        else:
            _cols5(l0, l1, l2, l3, l4, w, lead, stride, cols, chans, acc)
        return
    # The pairs, then an odd last column as a pair with the one before it, computed
    # again: the same sums in the same order, so the same bits, at the speed of a pair.
    # One call site for both: each inlined copy of the pair helpers costs seconds of
    # compile.
    for part in range(1 + cols % 2):
        pairs = cols // 2 if part == 0 else 1
        c0 = 0 if part == 0 else cols - 2
        o = c0 * stride * chans
        a = acc[c0 * chans :]
        _pairs_of(l0[o:], l1[o:], l2[o:], l3[o:], l4[o:], w, lead, stride, pairs, chans, a)


@njit(**HOT_JIT)
def _pairs_of(l0, l1, l2, l3, l4, w, lead, stride, pairs, chans, acc):
    """``pairs`` pairs of neighbouring output pixels (stride 1 or 2) into ``acc``."""
    taps = w.shape[0] - lead
    if stride == 1:
        if taps == 3:
            _pairs3(l0, l1, l2, w, lead, pairs, chans, acc)
        else:
            _pairs5(l0, l1, l2, l3, l4, w, lead, pairs, chans, acc)
    elif taps == 3:
        _spairs3(l0, l1, l2, w, lead, pairs, chans, acc)
    else:
        _spairs5(l0, l1, l2, l3, l4, w, lead, pairs, chans, acc)


@njit(**PJIT)
def depthwise_rows_chain(x, w, wt, stride, lead, rows, cols, out, pad, codes, params, alpha):
    """Depthwise 3x3/5x5 (after ``lead`` zero taps) + chain, written straight into ``out``'s
    interior; ``w`` (k, k, C), ``wt`` from :func:`tile_taps`."""
    for r in prange(rows):
        depthwise_rows_chain_rows(
            r, r + 1, x, w, wt, stride, lead, rows, cols, out, pad, codes, params, alpha
        )


@njit(**JIT)
def depthwise_rows_chain_rows(
    t0, t1, x, w, wt, stride, lead, rows, cols, out, pad, codes, params, alpha
):
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
def depthwise_conv2d_rows_chain(x, w, stride, lead, rows, cols, out, pad, codes, params, alpha):
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
