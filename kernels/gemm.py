"""Pointwise (1x1) convolutions as GEMMs on weights packed once, at plan time.

:func:`pack_weights` lays a (C, F) weight matrix out in panels of
:data:`~edgebnn.kernels.microkernel.PANEL` output channels (the last panel a multiple of
:data:`~edgebnn.kernels.microkernel.LANES`, zero-padded); :func:`gemm_block` walks a range
of pixels and panels in tiles of the micro-kernel (:mod:`.microkernel`), with the bias,
ReLU6 and a residual add done in its epilogue, writing straight into a ringed output.
Partial tiles (the last rows, a panel wider than the channels left) go through a small
scratch block and are copied out.

Compared with BLAS ``sgemm`` on the same shapes (one thread, this project's build
machine, AVX-512): 196x80x480 0.094 vs 0.28 ms, 196x672x112 0.18 vs 0.20 ms, 49x1152x320
0.23 vs 0.32 ms: no repacking of the weights per call, and no copy pass for the epilogue.

The tile shape, and whether the kernel is used at all (:data:`AVAILABLE`: not on 32-bit
processes), are decided in :mod:`.microkernel`. ``a``, ``c`` and ``res`` are addressed
through raw pointers: they must be C-contiguous (checked by the planner).
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import prange
from edgebnn.kernels.aligned import aligned
from edgebnn.kernels.microkernel import (
    AVAILABLE,  # noqa: F401  (re-exported: False where the planner must not use this GEMM)
    KERNEL_JIT,
    KERNEL_PJIT,
    LANES,
    MID,
    PANEL,
    RELU6,
    RESIDUAL,
    ROWS,
    SMALL,
    tile,
)
from numba import njit


def packed_width(n: int) -> int:
    """Output channels rounded up to whole vectors (the packed panels' total width)."""
    return -(-n // LANES) * LANES


def pack_weights(w: np.ndarray) -> np.ndarray:
    """(C, F) float weights -> flat panels: panel ``p`` (columns ``p * PANEL`` on, its
    width ``PANEL`` or, for the last, the channels left rounded up to a vector) is stored
    as ``C x width`` floats from offset ``p * PANEL * C``; padding columns are zero."""
    k, n = w.shape
    out = np.zeros(k * packed_width(n), np.float32)
    for j0 in range(0, n, PANEL):
        width = min(PANEL, packed_width(n - j0))
        panel = np.zeros((k, width), np.float32)
        panel[:, : min(width, n - j0)] = w[:, j0 : j0 + width]
        out[j0 * k : j0 * k + k * width] = panel.reshape(-1)
    return aligned(out)


def pad_bias(bias: np.ndarray | None, n: int) -> np.ndarray:
    """The bias (zeros when None) padded with zeros to the packed width."""
    out = np.zeros(packed_width(n), np.float32)
    if bias is not None:
        out[:n] = bias
    return aligned(out)


def _tile_rows(pixels: int) -> int:
    """Rows the tiles of :func:`gemm_block` compute for ``pixels`` (the last tile padded)."""
    full, left = divmod(pixels, ROWS)
    return full * ROWS + (
        0 if left == 0 else ROWS if left > MID else MID if left > SMALL else SMALL
    )


def thread_ranges(pixels: int, n: int, threads: int) -> np.ndarray:
    """(threads, 4) int64 rows ``(m0, m1, p0, p1)``: each thread's pixels and panels.

    The split with the least work on the busiest thread (tile rows x panel widths, the
    padding of partial tiles included): by panels (each thread reads only its part of
    the weights; preferred on a tie) or by pixels (every thread reads all of them)."""
    panels = -(-n // PANEL)
    widths = [min(PANEL, packed_width(n - p * PANEL)) for p in range(panels)]
    by_panel_work = max(
        sum(widths[t * panels // threads : (t + 1) * panels // threads]) * _tile_rows(pixels)
        for t in range(threads)
    )
    by_pixel_work = max(
        _tile_rows((t + 1) * pixels // threads - t * pixels // threads) * sum(widths)
        for t in range(threads)
    )
    by_panels = by_panel_work <= by_pixel_work * 1.05
    out = np.zeros((threads, 4), np.int64)
    for t in range(threads):
        if by_panels:
            out[t] = (0, pixels, t * panels // threads, (t + 1) * panels // threads)
        else:
            out[t] = (t * pixels // threads, (t + 1) * pixels // threads, 0, panels)
    return out


def scratch(threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-thread scratch for :func:`gemm_block`: (blocks, pointer tables)."""
    return np.zeros((threads, ROWS, PANEL), np.float32), np.zeros((threads, 3, ROWS), np.int64)


@njit(**KERNEL_JIT)
def gemm_block(a, m0, m1, wpk, bias, n, p0, p1, flags, c, crow, ccol, cols, res, block, ptrs):
    """Pixels ``m0:m1`` and panels ``p0:p1`` of ``epilogue(a @ w)``.

    ``a`` (pixels, C) C-contiguous; ``wpk``/``bias`` from :func:`pack_weights` /
    :func:`pad_bias` for ``n`` outputs; pixel ``m`` is written to
    ``c[crow + m // cols, (ccol + m % cols) * n + j]`` (``c`` 2-D, C-contiguous: a
    ringed output is passed as (rows, cols * n) with its ring offsets); with
    :data:`RESIDUAL` in ``flags``, ``res[m]`` (pixels, n) is added last. ``block``
    (ROWS, PANEL) and ``ptrs`` (3, ROWS) are the caller's scratch.
    """
    k = a.shape[1]
    if m1 <= m0 or k == 0:
        return
    row_len = c.shape[1]
    a0 = a.ctypes.data
    c0 = c.ctypes.data
    r0 = res.ctypes.data
    for p in range(p0, p1):
        j0 = p * PANEL
        valid = min(PANEL, n - j0)
        nv = 2 if valid > LANES else 1
        width = nv * LANES
        b = wpk.ctypes.data + j0 * k * 4
        bb = bias.ctypes.data + j0 * 4
        # While this panel is computed, the next one is prefetched into L2, k lines of 64
        # bytes per tile (the first tiles of a panel; prefetches never fault past the end).
        nxt = b + width * k * 4
        m = m0
        while m < m1:
            left = m1 - m
            rows = ROWS if left >= ROWS else (MID if left > SMALL else SMALL)
            real = min(rows, left)
            direct = real == rows and valid == width
            pf = nxt + (m - m0) // ROWS * k * 64
            r = crow + m // cols
            col = m % cols
            for i in range(rows):
                q = m + min(i, real - 1)
                ptrs[0, i] = a0 + q * k * 4
                if direct:
                    ptrs[1, i] = c0 + (r * row_len + (ccol + col) * n + j0) * 4
                    ptrs[2, i] = r0 + (q * n + j0) * 4
                    col += 1
                    if col == cols:
                        col = 0
                        r += 1
                else:
                    ptrs[1, i] = block.ctypes.data + i * PANEL * 4
            if direct:
                tile(rows, nv, ptrs.ctypes.data, b, bb, k, flags, pf)
            else:
                tile(rows, nv, ptrs.ctypes.data, b, bb, k, flags & RELU6, pf)
                for i in range(real):
                    q = m + i
                    start = (ccol + q % cols) * n + j0
                    dst = c[crow + q // cols, start : start + valid]
                    src = block[i, :valid]
                    if flags & RESIDUAL:
                        rr = res[q, j0 : j0 + valid]
                        for j in range(valid):
                            dst[j] = src[j] + rr[j]
                    else:
                        for j in range(valid):
                            dst[j] = src[j]
            m += real


@njit(**KERNEL_PJIT)
def pointwise_packed(a, wpk, bias, n, flags, c, pad, cols, res, ranges, blocks, ptrs):
    """A whole pointwise layer on Numba's threads: ``a`` (pixels, C) -> ``c``, the output
    as (rows + 2 pad, (cols + 2 pad) * n), its interior written; one range of
    :func:`thread_ranges` per task."""
    for t in prange(ranges.shape[0]):
        pointwise_packed_rows(
            t, t + 1, a, wpk, bias, n, flags, c, pad, cols, res, ranges, blocks, ptrs
        )


@njit(**KERNEL_JIT)
def pointwise_packed_rows(t0, t1, a, wpk, bias, n, flags, c, pad, cols, res, ranges, blocks, ptrs):
    """Iterations [t0, t1) of :func:`pointwise_packed`'s parallel loop (one task of a frame)."""
    for t in range(t0, t1):
        gemm_block(
            a,
            ranges[t, 0],
            ranges[t, 1],
            wpk,
            bias,
            n,
            ranges[t, 2],
            ranges[t, 3],
            flags,
            c,
            pad,
            pad,
            cols,
            res,
            blocks[t],
            ptrs[t],
        )
