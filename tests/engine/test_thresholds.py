"""Fused BN->sign thresholds give the same bit as evaluating the chain, for every input."""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine.layers import ActivationLayer, BatchNormalizationLayer, BiasLayer, ScalingLayer
from edgebnn.engine.thresholds import (
    MODE_ALWAYS,
    MODE_AT_LEAST,
    MODE_AT_MOST,
    MODE_NEVER,
    SPECIAL_NAN,
    SPECIAL_NEG_INF,
    SPECIAL_POS_INF,
    chain_thresholds,
    interval_bounds,
)

FLT_MAX = np.finfo(np.float32).max


def _bits(
    thresholds: np.ndarray, modes: np.ndarray, specials: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """The fused test exactly as the pool_to_bits kernel does it."""
    finite = np.select(
        [modes == MODE_AT_LEAST, modes == MODE_AT_MOST, modes == MODE_ALWAYS],
        [v >= thresholds, v <= thresholds, np.ones_like(v, bool)],
        np.zeros_like(v, bool),
    )
    flag = np.where(np.isnan(v), SPECIAL_NAN, np.where(v > 0, SPECIAL_POS_INF, SPECIAL_NEG_INF))
    lo, hi = interval_bounds(thresholds, modes)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(
            np.isfinite(v) & (lo <= v) & (v <= hi), np.isfinite(v) & finite
        )
    return np.where(np.isfinite(v), finite, (specials & flag) != 0)


def _chain(rng: np.random.Generator, chans: int) -> list:
    shape = (1, 1, chans)
    mult = rng.normal(size=chans).astype(np.float32)
    mult[:3] = [0.0, -1.0, 1e-30]
    scales = rng.normal(size=chans).astype(np.float32)
    return [
        BatchNormalizationLayer(shape, multiplication=mult, addition=rng.normal(size=chans)),
        ScalingLayer(shape, scales=scales),
        BiasLayer(shape, bias=rng.normal(size=chans)),
    ]


def _evaluate(layers: list, v: np.ndarray) -> np.ndarray:
    x = v.reshape(1, 1, -1)
    with np.errstate(all="ignore"):
        for layer in layers:
            x = layer.forward_ref(x)
    return x.reshape(-1) > 0


@pytest.mark.parametrize("seed", range(5))
def test_threshold_equals_chain_everywhere(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chans = 64
    layers = _chain(rng, chans)
    if seed % 2:
        layers.insert(0, ActivationLayer((1, 1, chans), function="relu"))
    thresholds, modes, specials = chain_thresholds(layers, chans)
    special_values = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, FLT_MAX, -FLT_MAX, 1e-45, -1e-45], np.float32
    )
    for _ in range(200):
        v = rng.normal(scale=10.0 ** rng.integers(-3, 4), size=chans).astype(np.float32)
        # Values right at and around each threshold, where a rounding slip would show.
        with np.errstate(all="ignore"):
            near = np.nextafter(
                thresholds, rng.choice([-np.inf, np.inf], size=chans).astype(np.float32)
            )
        for cand in (v, thresholds, near):
            np.testing.assert_array_equal(
                _bits(thresholds, modes, specials, cand), _evaluate(layers, cand)
            )
    for s in special_values:
        cand = np.full(chans, s, np.float32)
        np.testing.assert_array_equal(
            _bits(thresholds, modes, specials, cand), _evaluate(layers, cand)
        )
    assert modes[0] in (MODE_ALWAYS, MODE_NEVER)  # mult 0: constant


def test_non_monotone_chain_is_refused() -> None:
    shape = (1, 1, 2)
    prelu = ActivationLayer(shape, function="prelu", alpha=np.ones(shape))
    with pytest.raises(ValueError, match="monotone"):
        chain_thresholds([prelu], 2)
