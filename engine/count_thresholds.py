"""A binary block's float tail as integer compares on its popcounts, exactly.

A d-series block computes, per output element e (pixel, filter), ``v = n_p − 2d`` from the
count ``d`` of differing bits (times the filter mean with weight scaling), then a chain of
element-wise ops (bias, PReLU with a per-element alpha), a max-pool, a monotone per-channel
chain (batch-norm) and the sign. When every op before the pool is non-decreasing for every
element, ``u_e(d)`` is non-increasing in ``d``, and the post-pool test on the window maximum
``m`` splits over the window's cells (spec: ``m = max(−FLT_MAX, cells)``):

- ``post(m) > 0`` is ``m >= t`` (rising post chain): OR over cells of ``u >= t``;
- ``post(m) > 0`` is ``m <= t`` (falling): NOT (OR over cells of ``u > t``).

Either cell test is ``d <= T_e`` for one integer ``T_e`` per element, found here by
bisection over ``d`` while evaluating the layers' own float32 NumPy references, so every
rounding is ELL's. At run time the block then needs no floats at all: compare, pack 64
tests per word, OR the window's words, flip the falling channels. The per-element alpha
tensor (4 MB per frame in the first block) is never read.

Ring cells hold constants, so their tests are words computed here; cells past the tensor and
the initial −FLT_MAX fold into the channel's mode (a rising channel with ``t <= −FLT_MAX``
is always on; a falling one with ``t < −FLT_MAX`` never).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    Layer,
    ScalingLayer,
)
from edgebnn.engine.thresholds import (
    MODE_ALWAYS,
    MODE_AT_LEAST,
    MODE_AT_MOST,
    MODE_NEVER,
    MONOTONE_ACTIVATIONS,
)
from edgebnn.kernels.binary import pack_words

FLT_MAX = np.float32(np.finfo(np.float32).max)


@dataclass
class CountTest:
    """What :func:`edgebnn.kernels.binary_pool.binary_conv_pool_counts` needs."""

    limits: np.ndarray  # (pixels, F) int16 (int32 for huge fields): the test is d <= limits[p, f]
    ring_words: np.ndarray  # (rows_u, width, words) uint64: the tests of ring cells
    flip: np.ndarray  # (words,) uint64: falling channels (final bit = NOT pooled test)
    keep: np.ndarray  # (words,) uint64: channels decided by the cells
    force: np.ndarray  # (words,) uint64: channels always on


def _finite(*arrays: np.ndarray | None) -> bool:
    return all(a is None or bool(np.isfinite(a).all()) for a in arrays)


def nondecreasing(layer: Layer) -> bool:
    """True if ``layer`` is element-wise, finite and non-decreasing in every element."""
    if isinstance(layer, BiasLayer):
        return _finite(layer.bias)
    if isinstance(layer, ScalingLayer):
        return _finite(layer.scales) and bool((layer.scales >= 0).all())
    if isinstance(layer, BatchNormalizationLayer):
        return _finite(layer.multiplication, layer.addition) and bool(
            (layer.multiplication >= 0).all()
        )
    if isinstance(layer, ActivationLayer):
        if layer.function == "prelu":
            return (
                layer.alpha is not None and _finite(layer.alpha) and bool((layer.alpha >= 0).all())
            )
        if layer.function == "leaky_relu":
            return bool(np.isfinite(layer.leaky_factor)) and layer.leaky_factor >= 0
        return layer.function in MONOTONE_ACTIVATIONS
    return False


def count_test(
    pre: list[Layer],
    thresholds: np.ndarray,
    modes: np.ndarray,
    nvalid: np.ndarray,
    scale: np.ndarray | None,
    shape: tuple[int, int, int],
    ring: np.ndarray,
) -> CountTest | None:
    """The block's tail as count limits, or None where the split above does not hold.

    ``pre``: the element-wise layers between the binary conv and the pool (inputs unpadded);
    ``thresholds``/``modes``: :func:`~edgebnn.engine.thresholds.chain_thresholds` of the
    post-pool chain; ``nvalid``: valid bits per output pixel; ``scale``: filter means or
    None; ``shape``: the conv output (rows, cols, F); ``ring``: the chain's ring-filled
    output tensor (its ring cells are read).
    """
    rows, cols, filters = shape
    if not all(nondecreasing(layer) for layer in pre):
        return None
    if scale is not None and not (_finite(scale) and bool((scale >= 0).all())):
        return None
    modes = modes.copy()
    rising = modes == MODE_AT_LEAST
    falling = modes == MODE_AT_MOST
    # The window maximum starts at -FLT_MAX: fold that cell into the mode.
    modes[rising & (thresholds <= -FLT_MAX)] = MODE_ALWAYS
    modes[falling & (thresholds < -FLT_MAX)] = MODE_NEVER
    rising = modes == MODE_AT_LEAST
    falling = modes == MODE_AT_MOST
    if not np.isfinite(ring).all():
        return None
    n = nvalid.reshape(rows, cols, 1).astype(np.int64)

    def cell_test(d: np.ndarray) -> np.ndarray:
        """Each element's cell test with ``d`` differing bits (d broadcast over filters)."""
        v = (n - 2 * d).astype(np.float32)
        if scale is not None:
            v = (v * scale.astype(np.float32)).astype(np.float32)
        for layer in pre:
            v = layer.forward_ref(v)
        return np.where(rising, v >= thresholds, v > thresholds)

    with np.errstate(over="ignore", invalid="ignore"):
        # u must stay finite over the whole range of d (it is monotone: check the ends).
        for d_end in (np.zeros_like(n), n):
            v = (n - 2 * d_end).astype(np.float32) * np.ones(filters, np.float32)
            if scale is not None:
                v = (v * scale.astype(np.float32)).astype(np.float32)
            for layer in pre:
                v = layer.forward_ref(v)
            if not np.isfinite(v).all():
                return None
        # Bisection: the test is true at lo (or lo = -1) and false at hi (or hi = n + 1).
        lo = np.full((rows, cols, filters), -1, np.int64)
        hi = np.broadcast_to(n + 1, (rows, cols, filters)).copy()
        while True:
            open_ = hi - lo > 1
            if not open_.any():
                break
            mid = (lo + hi) // 2
            ok = cell_test(np.where(open_, mid, 0))
            lo = np.where(open_ & ok, mid, lo)
            hi = np.where(open_ & ~ok, mid, hi)
        ring_tests = np.where(rising, ring >= thresholds, ring > thresholds) & (rising | falling)
    # int16 halves the table's memory traffic; fields of more than 32767 bits need int32.
    dtype = np.int16 if int(n.max(initial=0)) < np.iinfo(np.int16).max else np.int32
    limits = np.where(rising | falling, lo, -1).astype(dtype)
    words = -(-filters // 64)
    return CountTest(
        limits=np.ascontiguousarray(limits.reshape(rows * cols, filters)),
        ring_words=np.ascontiguousarray(pack_words(ring_tests)),
        flip=pack_words(falling).reshape(words),
        keep=pack_words(rising | falling).reshape(words),
        force=pack_words(modes == MODE_ALWAYS).reshape(words),
    )
