"""Exact per-channel thresholds that fuse a monotone float chain into a sign test.

A binary convolution only sees ``chain(x) > 0``. When every op of the chain is monotone in
float32 with per-channel parameters (bias, scaling, batch-norm, ReLU-like), so is the whole
chain, and ``{x : chain(x) > 0}`` is a half-line of float32 values. Its end is found by
bisection over the ordered float32 values, evaluating the chain with the very ops of the
reference (one float32 rounding per op), so the fused test gives the same bit for every
input (spec 0.2).
"""

from __future__ import annotations

import numpy as np
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    Layer,
    ScalingLayer,
)

MODE_AT_LEAST = 0  # bit = v >= t
MODE_AT_MOST = 1  # bit = v <= t
MODE_NEVER = 2
MODE_ALWAYS = 3

#: Activations without parameters that never decrease (as the reference computes them, up to
#: the float32 exp/tanh caveat in the README).
MONOTONE_ACTIVATIONS = ("relu", "relu6", "hard_tanh", "hard_sigmoid", "sigmoid", "tanh")


def is_monotone(layer: Layer) -> bool:
    """True for element-wise layers with per-channel parameters that are monotone."""
    if isinstance(layer, (BiasLayer, ScalingLayer, BatchNormalizationLayer)):
        return True
    if isinstance(layer, ActivationLayer):
        if layer.function in MONOTONE_ACTIVATIONS:
            return True
        return layer.function == "leaky_relu" and layer.leaky_factor >= 0
    return False


def _direction(layers: list[Layer], chans: int) -> np.ndarray:
    """Per channel: +1 non-decreasing, −1 non-increasing, 0 constant."""
    d = np.ones(chans, np.int64)
    for layer in layers:
        if isinstance(layer, ScalingLayer):
            d *= np.sign(layer.scales).astype(np.int64)
        elif isinstance(layer, BatchNormalizationLayer):
            d *= np.sign(layer.multiplication).astype(np.int64)
    return d


def _evaluate(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """The chain on a (chans,) float32 vector, op by op as the reference computes it."""
    v = x.reshape(1, 1, -1).astype(np.float32)
    for layer in layers:
        v = layer.forward_ref(v)
    return v.reshape(-1)


def _key_to_float(key: np.ndarray) -> np.ndarray:
    """Inverse of the order-preserving map float32 -> int64 used for bisection."""
    key = key.astype(np.int64)
    bits = np.where(key >= 0, key, (-key) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


SPECIAL_NAN = 1  # bit flags: the chain's bit for NaN, +inf and -inf inputs
SPECIAL_POS_INF = 2
SPECIAL_NEG_INF = 4


def chain_thresholds(layers: list[Layer], chans: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds float32, modes int8, specials int8) per channel such that the test on
    the chain's input equals ``chain(x) > 0``; ``layers`` must satisfy :func:`is_monotone`.

    Finite inputs use the threshold and mode; NaN and ±inf (where ``0 * inf`` breaks
    monotonicity) use the ``specials`` flags, evaluated directly.
    """
    for layer in layers:
        if not is_monotone(layer):
            raise ValueError(f"{type(layer).__name__} is not a monotone per-channel op")
    direction = _direction(layers, chans)
    big = np.float32(np.finfo(np.float32).max)
    lo = np.full(chans, -0x7F7FFFFF, np.int64)  # key of -FLT_MAX
    hi = np.full(chans, 0x7F7FFFFF, np.int64)  # key of +FLT_MAX
    with np.errstate(all="ignore"):
        at_lo = _evaluate(layers, np.full(chans, -big, np.float32)) > 0
        at_hi = _evaluate(layers, np.full(chans, big, np.float32)) > 0
        at_zero = _evaluate(layers, np.zeros(chans, np.float32)) > 0
        specials = np.zeros(chans, np.int8)
        for flag, value in (
            (SPECIAL_NAN, np.nan),
            (SPECIAL_POS_INF, np.inf),
            (SPECIAL_NEG_INF, -np.inf),
        ):
            on = _evaluate(layers, np.full(chans, value, np.float32)) > 0
            specials |= np.where(on, flag, 0).astype(np.int8)
        rising = direction > 0
        # For a falling chain, search on -x: predicate(key) = chain(float(-key)) > 0 rises.
        sign = np.where(rising, 1, -1)
        first_true = np.where(rising, at_hi, at_lo)
        last_false = np.where(rising, at_lo, at_hi)
        # Invariant: predicate false at lo, true at hi (where first_true and not last_false).
        for _ in range(34):
            mid = (lo + hi) // 2
            ok = _evaluate(layers, _key_to_float(sign * mid)) > 0
            hi = np.where(ok, mid, hi)
            lo = np.where(ok, lo, mid)
    thresholds = _key_to_float(sign * hi)
    modes = np.where(rising, MODE_AT_LEAST, MODE_AT_MOST).astype(np.int8)
    modes = np.where(~first_true, MODE_NEVER, modes)
    modes = np.where(last_false, MODE_ALWAYS, modes)
    constant = direction == 0
    modes = np.where(constant, np.where(at_zero, MODE_ALWAYS, MODE_NEVER), modes).astype(np.int8)
    return thresholds.astype(np.float32), modes, specials


def interval_bounds(thresholds: np.ndarray, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same test as (lo, hi) float32 bounds: a finite v gives a set bit iff lo <= v <= hi."""
    big = np.float32(np.finfo(np.float32).max)
    lo = np.select(
        [modes == MODE_AT_LEAST, modes == MODE_NEVER], [thresholds, np.float32(np.inf)], -big
    )
    hi = np.select(
        [modes == MODE_AT_MOST, modes == MODE_NEVER], [thresholds, np.float32(-np.inf)], big
    )
    return lo.astype(np.float32), hi.astype(np.float32)
