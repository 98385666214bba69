"""A whole MBConv block (1x1 expand, depthwise, 1x1 project, residual add) in one step.

Run layer by layer, the 6x-expanded tensor of an EfficientNet block (112x112x96 floats:
4.8 MB) is written by the expand GEMM and read back by the depthwise from main memory,
and so is the depthwise output. Here each thread walks its band of output rows with a
line buffer of ``k`` expanded rows: an expanded row is computed (one ``sgemm`` of a row of
pixels, then its element-wise chain) when the depthwise first needs it, kept while its
window needs it, and the depthwise row goes straight into the project ``sgemm`` and its
epilogue (chain, residual add, the add's chain). Only the block's input and output touch
memory. Rows shared by two bands are computed by both (a few rows per step).

A band is any range of output rows: a frame splits a block into a few bands per thread,
claimed one at a time, so a thread that starts late or is descheduled holds up no more
than one band. Line buffers belong to *slots* (as many as threads can run at once), not
to bands: a band claims a free slot for its duration (an atomic flag per slot). A band
that starts where the slot's previous band ended keeps the rows already in the slot's
line buffer (a thread's bands are neighbours: :func:`~edgebnn.kernels.tasks.run_frame`
hands each thread a contiguous chunk), so its boundary rows are computed once, not by both
bands (with six bands of a 28x28 5x5 block, the expand GEMM's rows were computed 1.9
times); the block's last band to finish clears every slot's record, as the next run
reads a new input.

Arithmetic is the layer-by-layer plan's: the same ``sgemm`` per pixel (BLAS order, as
:mod:`.pointwise`), the depthwise summed per (pixel, channel) in (kernel row, kernel column)
order from tap ``lead`` on, every chain op rounded to float32 on its own.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import JIT, PJIT, prange
from edgebnn.kernels.blas import NO_TRANS, ROW_MAJOR, sgemm
from edgebnn.kernels.depthwise import depthwise_row
from edgebnn.kernels.elementwise import apply_chain_call
from edgebnn.kernels.epilogue import chain_into
from edgebnn.kernels.im2col import gather_im2col_row
from edgebnn.kernels.sync import atomic_add, spin_hint
from numba import njit

#: How :func:`mbconv_chain` makes its depthwise input rows.
COPY, POINTWISE, STEM = 0, 1, 2


#: Slot flags are this many int64 apart (64 bytes: no false sharing between threads).
FLAG_STRIDE = 8
#: Word of a slot's flag line holding the end row of the last band run on it (-1: none).
LAST_ROW = 1
#: Word (in slot 0's line) counting the output rows done in this run of the block.
ROWS_DONE = 2


def line_buffers(
    slots: int, k: int, padded_cols: int, hidden: int, cols_out: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scratch for :func:`mbconv_chain`: (lines, tags, depthwise rows, slot flags), one set
    per slot (``slots``: at least the most threads that run the block at once).

    ``lines`` is zero-filled once: its ring columns are never written and stay zero.
    """
    lines = np.zeros((slots, k, padded_cols * hidden), np.float32)
    tags = np.full((slots, k), -1, np.int64)
    drows = np.zeros((slots, cols_out * hidden), np.float32)
    busy = np.zeros(slots * FLAG_STRIDE, np.int64)
    busy[LAST_ROW::FLAG_STRIDE] = -1
    return lines, tags, drows, busy


@njit(**JIT)
def claim_slot(busy, r0):
    """A free slot's index, marked busy: the one whose last band ended at row ``r0`` if it
    is free, else any (spins while every slot is taken, which only a caller running more
    threads than slots can cause)."""
    slots = busy.shape[0] // FLAG_STRIDE
    for s in range(slots):
        if busy[s * FLAG_STRIDE + LAST_ROW] == r0:
            if atomic_add(busy, s * FLAG_STRIDE, 1) == 0:
                return s
            atomic_add(busy, s * FLAG_STRIDE, -1)
    while True:
        for s in range(slots):
            if atomic_add(busy, s * FLAG_STRIDE, 1) == 0:
                return s
            atomic_add(busy, s * FLAG_STRIDE, -1)
        spin_hint()


@njit(**PJIT)
def mbconv_chain(
    x,
    expand,
    we,
    e_codes,
    e_params,
    e_alpha,
    e_rows,
    e_cols,
    sk,
    slead,
    sstride,
    patches,
    wd,
    wt,
    stride,
    lead,
    ring,
    d_codes,
    d_params,
    d_alpha,
    wp,
    p_codes,
    p_params,
    p_alpha,
    res,
    has_res,
    a_codes,
    a_params,
    a_alpha,
    lines,
    tags,
    drows,
    rows_out,
    cols_out,
    out,
    pad,
    busy,
):
    """``out[interior] = block(x)`` for one MBConv block, row bands on Numba's threads.

    ``expand`` says what makes the depthwise input rows (``e_rows`` x ``e_cols`` before the
    ring): :data:`COPY`: ``x`` is that input, its ``ring`` in place; :data:`POINTWISE`:
    ``x`` is the un-padded block input (H, W, C), ``we`` (C, hidden); :data:`STEM`: ``x``
    is the network input with its ring and ``we`` (taps, hidden) a ``sk`` x ``sk``,
    stride ``sstride`` convolution from tap ``slead`` on (:func:`~edgebnn.kernels.im2col.
    im2col_weights_layout`), gathered row by row into ``patches`` (slots, e_cols * taps).
    ``wd`` is
    (k, k, hidden) with its first ``lead`` rows and columns zero (skipped), 3x3 or 5x5
    after them, ``wt`` its :func:`~edgebnn.kernels.depthwise.tile_taps`; ``wp``
    (hidden, F). With ``has_res`` the un-padded ``res`` (rows_out, cols_out, F) is added
    after the project chain, then the add's chain runs. ``lines``/``tags``/``drows``/``busy``
    come from :func:`line_buffers` (one band per slot here).
    """
    bands = min(lines.shape[0], rows_out)
    for t in prange(bands):
        mbconv_chain_rows(
            t * rows_out // bands,
            (t + 1) * rows_out // bands,
            x,
            expand,
            we,
            e_codes,
            e_params,
            e_alpha,
            e_rows,
            e_cols,
            sk,
            slead,
            sstride,
            patches,
            wd,
            wt,
            stride,
            lead,
            ring,
            d_codes,
            d_params,
            d_alpha,
            wp,
            p_codes,
            p_params,
            p_alpha,
            res,
            has_res,
            a_codes,
            a_params,
            a_alpha,
            lines,
            tags,
            drows,
            rows_out,
            cols_out,
            out,
            pad,
            busy,
        )


@njit(**JIT)
def mbconv_chain_rows(
    r0,
    r1,
    x,
    expand,
    we,
    e_codes,
    e_params,
    e_alpha,
    e_rows,
    e_cols,
    sk,
    slead,
    sstride,
    patches,
    wd,
    wt,
    stride,
    lead,
    ring,
    d_codes,
    d_params,
    d_alpha,
    wp,
    p_codes,
    p_params,
    p_alpha,
    res,
    has_res,
    a_codes,
    a_params,
    a_alpha,
    lines,
    tags,
    drows,
    rows_out,
    cols_out,
    out,
    pad,
    busy,
):
    """Output rows [r0, r1) of :func:`mbconv_chain` (one band: a task of a frame), on the
    line buffers of a slot it claims for the band's duration."""
    k = wd.shape[0]
    hidden = wd.shape[2]
    f_out = wp.shape[1]
    cin = x.shape[2]
    kin = we.shape[0]
    row_len = lines.shape[2]
    five = k - lead == 5
    if r1 > r0:
        t = claim_slot(busy, r0)
        if busy[t * FLAG_STRIDE + LAST_ROW] != r0:
            # Not the band right after this slot's last one: its rows are of no use.
            for s in range(k):
                tags[t, s] = -1
        drow = drows[t]
        for r in range(r0, r1):
            # Bring the window's expanded rows into the line buffer.
            for i in range(lead, k):
                p = r * stride + i
                s = p % k
                if tags[t, s] == p:
                    continue
                tags[t, s] = p
                line = lines[t, s]
                if expand == COPY:
                    src = x[p].reshape(-1)
                    for e in range(row_len):
                        line[e] = src[e]
                    continue
                q = p - ring
                inner = line[ring * hidden : (ring + e_cols) * hidden]
                if q < 0 or q >= e_rows:
                    for e in range(inner.shape[0]):
                        inner[e] = np.float32(0.0)
                    continue
                a = x.ctypes.data + q * e_cols * cin * 4
                if expand == STEM:
                    gather_im2col_row(x, q, sk, slead, sstride, e_cols, patches[t])
                    a = patches.ctypes.data + t * patches.shape[1] * 4
                sgemm(
                    ROW_MAJOR,
                    NO_TRANS,
                    NO_TRANS,
                    e_cols,
                    hidden,
                    kin,
                    np.float32(1.0),
                    a,
                    kin,
                    we.ctypes.data,
                    hidden,
                    np.float32(0.0),
                    lines.ctypes.data + ((t * k + s) * row_len + ring * hidden) * 4,
                    hidden,
                )
                chain_into(inner, inner, q, e_codes, e_params, e_alpha)
            # Depthwise row, (kernel row, kernel column) order per (pixel, channel).
            p = r * stride + lead
            l0 = lines[t, p % k]
            l1 = lines[t, (p + 1) % k]
            l2 = lines[t, (p + 2) % k]
            l3 = lines[t, (p + 3) % k] if five else l0
            l4 = lines[t, (p + 4) % k] if five else l0
            depthwise_row(l0, l1, l2, l3, l4, wd, wt, lead, stride, cols_out, drow)
            chain_into(drow, drow, r, d_codes, d_params, d_alpha)
            # Project straight into the output row, then its epilogue.
            dst = out[r + pad].reshape(-1)[pad * f_out : (pad + cols_out) * f_out]
            sgemm(
                ROW_MAJOR,
                NO_TRANS,
                NO_TRANS,
                cols_out,
                f_out,
                hidden,
                np.float32(1.0),
                drows.ctypes.data + t * drows.shape[1] * 4,
                hidden,
                wp.ctypes.data,
                f_out,
                np.float32(0.0),
                out.ctypes.data + ((r + pad) * out.shape[1] + pad) * f_out * 4,
                f_out,
            )
            chain_into(dst, dst, r, p_codes, p_params, p_alpha)
            if has_res:
                rr = res[r].reshape(-1)
                for e in range(dst.shape[0]):
                    dst[e] = dst[e] + rr[e]
                apply_chain_call(dst, r, a_codes, a_params, a_alpha)
        busy[t * FLAG_STRIDE + LAST_ROW] = r1
        atomic_add(busy, t * FLAG_STRIDE, -1)
        if atomic_add(busy, ROWS_DONE, r1 - r0) + r1 - r0 == rows_out:
            # The block's last band (every other band has finished): the next run's
            # input is new, so no slot may keep its rows for it.
            busy[ROWS_DONE] = 0
            for s in range(busy.shape[0] // FLAG_STRIDE):
                busy[s * FLAG_STRIDE + LAST_ROW] = -1
