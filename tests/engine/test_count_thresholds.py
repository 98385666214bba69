"""Count limits: for every element and every possible count d of differing bits, the cell
test that the block's float ops give (evaluated with the layers' NumPy references) must be
``d <= limit``. Checked exhaustively over d on small blocks."""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine.count_thresholds import count_test, nondecreasing
from edgebnn.engine.layers import ActivationLayer, BatchNormalizationLayer, BiasLayer, ScalingLayer
from edgebnn.engine.thresholds import MODE_AT_LEAST, MODE_AT_MOST, chain_thresholds


def _layers(rng: np.random.Generator, rows: int, cols: int, filters: int) -> tuple[list, list]:
    bias = BiasLayer((rows, cols, filters), bias=rng.normal(0, 4, filters))
    alpha = rng.uniform(0, 0.5, (rows, cols, filters)).astype(np.float32)
    alpha[0, 0, :] = 0.0  # flat negative side
    prelu = ActivationLayer((rows, cols, filters), function="prelu", alpha=alpha)
    mult = rng.normal(0, 1, filters).astype(np.float32)
    mult[0] = 0.0  # a constant channel
    post = [
        BatchNormalizationLayer(
            (1, 1, filters), multiplication=mult, addition=rng.normal(0, 1, filters)
        ),
        ScalingLayer((1, 1, filters), scales=rng.uniform(0.5, 1.5, filters)),
        BiasLayer((1, 1, filters), bias=rng.normal(0, 0.5, filters)),
    ]
    return [bias, prelu], post


def _u(
    pre: list, nvalid: np.ndarray, d: int, scale: np.ndarray | None, shape: tuple[int, int, int]
) -> np.ndarray:
    rows, cols, filters = shape
    v = (nvalid.reshape(rows, cols, 1) - 2 * d).astype(np.float32) * np.ones(filters, np.float32)
    if scale is not None:
        v = (v * scale).astype(np.float32)
    for layer in pre:
        v = layer.forward_ref(v)
    return v


@pytest.mark.parametrize("scaled", (False, True))
@pytest.mark.parametrize("ties", (False, True))
def test_limits_agree_with_the_float_ops_for_every_count(scaled: bool, ties: bool) -> None:
    rng = np.random.default_rng(11 + scaled + 2 * ties)
    rows, cols, filters = 5, 6, 70  # two words of channels
    pre, post = _layers(rng, rows, cols, filters)
    nvalid = rng.integers(40, 145, rows * cols)  # border pixels have fewer valid bits
    scale = rng.uniform(0.1, 2.0, filters).astype(np.float32) if scaled else None
    thresholds, modes, _ = chain_thresholds(post, filters)
    if ties:  # thresholds equal to values the cells really take: >= and > must differ
        thresholds = _u(pre, nvalid, 30, scale, (rows, cols, filters))[2, 3].astype(np.float32)
        modes = rng.choice([MODE_AT_LEAST, MODE_AT_MOST], filters).astype(np.int8)
    ring = np.full((rows + 2, cols + 2, filters), -np.finfo(np.float32).max, np.float32)
    test = count_test(pre, thresholds, modes, nvalid, scale, (rows, cols, filters), ring)
    assert test is not None
    limits = test.limits.reshape(rows, cols, filters).astype(np.int64)
    rising = modes == MODE_AT_LEAST
    for d in range(145):
        v = _u(pre, nvalid, d, scale, (rows, cols, filters))
        cell = np.where(rising, v >= thresholds, v > thresholds)
        inside = d <= nvalid.reshape(rows, cols, 1)
        keep = np.unpackbits(test.keep.view(np.uint8), bitorder="little")[:filters].astype(bool)
        np.testing.assert_array_equal(
            (cell & inside)[..., keep], ((d <= limits) & inside)[..., keep]
        )


def test_non_monotone_or_non_finite_chains_are_refused() -> None:
    shape = (2, 2, 3)
    assert not nondecreasing(
        ActivationLayer(shape, function="prelu", alpha=np.full(shape, -0.1, np.float32))
    )
    assert not nondecreasing(BiasLayer(shape, bias=np.array([0.0, np.nan, 1.0])))
    assert not nondecreasing(ScalingLayer(shape, scales=np.array([1.0, -1.0, 1.0])))
    assert nondecreasing(ActivationLayer(shape, function="leaky_relu", leaky_factor=0.1))
    rng = np.random.default_rng(0)
    pre, post = _layers(rng, 2, 2, 3)
    thresholds, modes, _ = chain_thresholds(post, 3)
    ring = np.zeros((4, 4, 3), np.float32)
    nvalid = np.full(4, 9)
    assert (
        count_test(
            pre, thresholds, modes, nvalid, np.array([1.0, -1.0, 1.0], np.float32), (2, 2, 3), ring
        )
        is None
    )
    ring[0, 0, 0] = np.inf
    assert count_test(pre, thresholds, modes, nvalid, None, (2, 2, 3), ring) is None
