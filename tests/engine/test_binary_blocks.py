"""The fused binary block (binary conv + bias + PReLU + max-pool + batch-norm + sign in one
step) against the same network planned as separate steps, bit for bit, and against the NumPy
reference: both its forms, integer-only (count limits, :mod:`edgebnn.engine.count_thresholds`)
and float (any element-wise chain, NaN/inf included).

Cases the d-series never exercises are built here: pooling windows other than 3x3/s2, a
PReLU output without a ring, weight scaling by filter means, the max-pool ring override
(0), and NaN/±inf reaching the pool (NaN never wins a window; ±inf take their bit from the
thresholds' specials).
"""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine import steps_binary
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    InputLayer,
    Padding,
    PaddingScheme,
    PoolingLayer,
    ScalingLayer,
)
from edgebnn.engine.network import Network
from edgebnn.engine.plan import Plan
from edgebnn.engine.reference import forward_ref

ZEROS, MIN = PaddingScheme.ZEROS, PaddingScheme.MIN
FUSED = "BinaryConvolutional+Bias+Activation+Pooling+BatchNormalization+Scaling+Bias+Sign"


def _block_net(
    size: int, stride: int, ring: int, mean_scale: bool, ring_value: float | None, seed: int
) -> Network:
    rng = np.random.default_rng(seed)
    n, chans, width = max(steps_binary.BAND_MIN_ROWS, 20), 16, 24
    inp = InputLayer((n + 2, n + 2, chans), output_padding=Padding(ZEROS, 1))
    w1 = rng.normal(size=(width, 3, 3, chans)).astype(np.float32)
    conv1 = BinaryConvolutionalLayer.from_real_weights(
        w1,
        output_shape=(n, n, width),
        input_padding=Padding(ZEROS, 1),
        weights_scale=1 if mean_scale else 0,
    )
    bias = BiasLayer((n, n, width), bias=rng.normal(0, 3, width))
    alpha = rng.uniform(0.0, 0.5, (n, n, width)).astype(np.float32)
    prelu = ActivationLayer(
        (n + 2 * ring, n + 2 * ring, width),
        output_padding=Padding(MIN, ring),
        function="prelu",
        alpha=alpha,
    )
    m = (n + 2 * ring - size) // stride + 1
    pool = PoolingLayer((m, m, width), Padding(MIN, ring), function="max", size=size, stride=stride)
    mult = rng.normal(0, 1, width).astype(
        np.float32
    )  # both signs: increasing and decreasing chains
    bn = BatchNormalizationLayer(
        (m, m, width), multiplication=mult, addition=rng.normal(0, 1, width)
    )
    sc = ScalingLayer((m, m, width), scales=rng.uniform(0.5, 1.5, width))
    bn_bias = BiasLayer(
        (m + 2, m + 2, width), output_padding=Padding(ZEROS, 1), bias=rng.normal(0, 0.5, width)
    )
    w2 = rng.normal(size=(8, 3, 3, width)).astype(np.float32)
    conv2 = BinaryConvolutionalLayer.from_real_weights(
        w2, output_shape=(m, m, 8), input_padding=Padding(ZEROS, 1)
    )
    layers = [conv1, bias, prelu, pool, bn, sc, bn_bias, conv2]
    return Network(inp, layers, maxpool_ring_value=ring_value)


def _unfused_forward(net: Network, x: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(steps_binary, "BAND_MIN_ROWS", 10**9)
        plan = Plan(net)
    assert FUSED not in [s.label for s in plan.steps]
    return plan.run(x).reshape(-1).copy()


def _input(net: Network, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=net.input_shape).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = 0.0
    return x


@pytest.mark.parametrize(
    ("size", "stride", "ring", "mean_scale", "ring_value"),
    [
        (3, 2, 1, False, None),  # the d-series block
        (3, 2, 1, True, 0.0),  # weight scaling; ring read as 0 (old compiled ELL)
        (2, 2, 0, False, None),  # no ring; 2x2 windows
        (3, 1, 1, False, None),  # overlapping windows, stride 1
        (3, 3, 1, True, None),  # windows that skip rows and run past the tensor
    ],
)
@pytest.mark.parametrize("integer", (True, False))
def test_fused_block_matches_separate_steps_and_reference(
    size: int,
    stride: int,
    ring: int,
    mean_scale: bool,
    ring_value: float | None,
    integer: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = _block_net(size, stride, ring, mean_scale, ring_value, seed=size * 10 + stride + ring)
    if not integer:  # one negative alpha: u is no longer monotone in the count
        net.layers[2].alpha[3, 4, 5] = -0.25
    assert _fused_kernel(net) == ("binary_conv_pool_counts" if integer else "binary_conv_pool_bits")
    for seed in range(2):
        x = _input(net, seed)
        got = net.forward(x)
        np.testing.assert_array_equal(got, _unfused_forward(net, x, monkeypatch))
        np.testing.assert_array_equal(got, forward_ref(net, x).reshape(-1))


def _fused_kernel(net: Network) -> str:
    (step,) = [s for s in net.plan.steps if s.label == FUSED]
    return step.kernel.__name__


@pytest.mark.parametrize("bands", (1, 2, 3, 7))
def test_any_number_of_bands_gives_the_same_bits(
    bands: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bands recompute the rows they share; the split must not change a bit."""
    net = _block_net(3, 2, 1, False, None, seed=1)
    x = _input(net, 3)
    want = _unfused_forward(net, x, monkeypatch)
    monkeypatch.setattr(steps_binary, "bands", lambda: bands)
    for integer in (True, False):
        plan_net = _block_net(3, 2, 1, False, None, seed=1)
        if not integer:
            plan_net.layers[2].alpha[0, 0, 0] = -1.0
            want = _unfused_forward(plan_net, x, monkeypatch)
        np.testing.assert_array_equal(plan_net.forward(x), want)


def test_fused_block_with_nan_and_inf_before_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _block_net(3, 2, 1, False, None, seed=4)
    bias, prelu = net.layers[1], net.layers[2]
    bias.bias[3] = np.inf  # a whole channel at +inf
    bias.bias[5] = -np.inf  # ... and at -inf (never wins a window)
    prelu.alpha[:, :, 7] = np.nan  # NaN wherever the conv output is negative
    prelu.alpha[2::4, 1::2, 9] = np.inf  # -inf there
    prelu.alpha[1::3, :, 11] = np.nan
    assert _fused_kernel(net) == "binary_conv_pool_bits"  # non-finite parameters: floats
    x = _input(net, 9)
    with np.errstate(invalid="ignore", over="ignore"):
        got = net.forward(x)
        want = forward_ref(net, x).reshape(-1)
    np.testing.assert_array_equal(got, _unfused_forward(net, x, monkeypatch))
    np.testing.assert_array_equal(got, want)
