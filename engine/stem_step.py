"""The fused RGB stem step: the input layer's chain read straight into the stem convolution.

The d-series networks start with an input chain (e.g. mean subtraction) written to a ringed
float tensor, then a 3x3 convolution whose only use is the packed sign bits after a max-pool
(:func:`edgebnn.kernels.conv_blocked.conv2d_columns_pool_bits`). When the convolution is the
tensor's only reader, :func:`edgebnn.kernels.stem.stem_pool_bits` does both from the raw
input, with fused multiply-adds and the same bits.
"""

from __future__ import annotations

import sys

import numpy as np
from edgebnn.engine.steps import Step
from edgebnn.kernels import elementwise, stem
from edgebnn.kernels.aligned import aligned


def _uniform_ring(x: np.ndarray, pad: int) -> float | None:
    """The one finite value the ring of ``x`` holds (0.0 without a ring), else None."""
    if pad == 0:
        return 0.0
    ring = np.ones(x.shape[:2], bool)
    ring[pad:-pad, pad:-pad] = False
    values = x[ring]
    first = values.flat[0]
    if not np.isfinite(first) or not (values == first).all():
        return None
    return float(first)


def fused_stem_step(
    steps: list[Step], input_view: np.ndarray | None, consumers: int, conv, *rest
) -> Step | None:
    """A step replacing the input step ``steps[-1]`` and the stem convolution, or None.

    ``conv`` is the (F, 3, 3, 3) stride-1 convolution layer whose input ``steps[-1]``
    writes and which ``consumers`` == 1 reader reads; ``rest`` is the conv's (rows, cols),
    the pooling's (size, stride, rows, cols), and lo, hi, specials, bits, bits' pad.
    """
    if not steps or input_view is None or consumers != 1:
        return None
    prev = steps[-1]
    weights = conv.weights
    if (
        prev.kernel is not elementwise.chain_copy
        or prev.args[0] is not input_view
        or weights.shape[1:] != (3, 3, 3)
        or weights.shape[0] > 32
        or conv.stride != 1
        or input_view.shape[2] != 3
        or sys.byteorder != "little"  # the tiles store each panel's bits as a word's half
    ):
        return None
    _, chained, in_pad, codes, params, alpha = prev.args
    ring = _uniform_ring(chained, in_pad)
    if ring is None:
        return None
    conv_rows, conv_cols, size, pool_stride, rows, cols, lo, hi, specials, bits, pad = rest
    panels, taps, sums = (aligned(a) for a in stem.stem_weights(weights))
    lo_p, hi_p = (aligned(a) for a in stem.padded_bounds(lo, hi))
    args = (
        input_view,
        in_pad,
        np.float32(ring),
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
        lo_p,
        hi_p,
        specials,
        bits,
        pad,
    )
    return Step(prev.nodes, prev.label, stem.stem_pool_bits, args)
