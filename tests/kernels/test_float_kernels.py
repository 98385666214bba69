"""Float kernels (convolutions, pooling, element-wise chains, softmax, fully connected)
through planned networks, against the NumPy references.

Tolerance: every float path here is held to bit equality except exp-based ops (softmax,
sigmoid, tanh), where NumPy's and libm's float32 exp/tanh may differ by an ulp: rtol 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine.layers import (
    ActivationLayer,
    AddLayer,
    BatchNormalizationLayer,
    BiasLayer,
    ConvolutionalLayer,
    FullyConnectedLayer,
    InputLayer,
    Padding,
    PaddingScheme,
    PoolingLayer,
    ScalingLayer,
    SoftmaxLayer,
)
from edgebnn.engine.network import Network
from edgebnn.engine.reference import forward_ref

CHANNELS = (1, 3, 16, 63, 64, 65, 130)


def _x(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    x[rng.random(shape) < 0.1] = 0.0
    return x


@pytest.mark.parametrize("chans", CHANNELS)
@pytest.mark.parametrize("filters", (8, 16, 40))
@pytest.mark.parametrize("stride", (1, 2))
@pytest.mark.parametrize("k", (1, 3))
def test_conv_bit_exact(chans: int, filters: int, stride: int, k: int) -> None:
    rng = np.random.default_rng(chans + filters + stride + k)
    pad = k // 2
    size = 35 if filters <= 16 else 9  # wide rows exercise the column-vectorised kernel
    out = (size + 2 * pad - k) // stride + 1
    inp = InputLayer(
        (size + 2 * pad, size + 2 * pad, chans), output_padding=Padding(PaddingScheme.ZEROS, pad)
    )
    w = rng.normal(size=(filters, k, k, chans)).astype(np.float32)
    conv = ConvolutionalLayer(
        (out, out, filters), Padding(PaddingScheme.ZEROS, pad), weights=w, stride=stride
    )
    net = Network(inp, [conv, BiasLayer((out, out, filters), bias=rng.normal(size=filters))])
    x = _x(rng, net.input_shape)
    np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))


@pytest.mark.parametrize("chans", (3, 16, 64))
@pytest.mark.parametrize("stride", (1, 2))
@pytest.mark.parametrize("k", (3, 5))
def test_depthwise_conv_bit_exact(chans: int, stride: int, k: int) -> None:
    rng = np.random.default_rng(chans + stride + k)
    pad = k // 2
    size = 12
    out = (size + 2 * pad - k) // stride + 1
    inp = InputLayer((size, size, chans), output_padding=Padding(PaddingScheme.ZEROS, pad))
    w = rng.normal(size=(chans, k, k, 1)).astype(np.float32)
    conv = ConvolutionalLayer(
        (out, out, chans), Padding(PaddingScheme.ZEROS, pad), weights=w, stride=stride
    )
    inp = InputLayer(
        (size + 2 * pad, size + 2 * pad, chans), output_padding=Padding(PaddingScheme.ZEROS, pad)
    )
    net = Network(inp, [conv, ActivationLayer((out, out, chans), function="relu6")])
    x = _x(rng, net.input_shape) * 4
    np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))


@pytest.mark.parametrize("function", ("max", "mean"))
@pytest.mark.parametrize("size,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (3, 3, 0)])
@pytest.mark.parametrize(
    "scheme", (PaddingScheme.ZEROS, PaddingScheme.MIN, PaddingScheme.ALTERNATING_ZERO_AND_ONES)
)
def test_pooling_bit_exact(
    function: str, size: int, stride: int, pad: int, scheme: PaddingScheme
) -> None:
    rng = np.random.default_rng(size * 7 + stride + pad)
    n = 11
    out = (n + 2 * pad - size) // stride + 1
    inp = InputLayer((n + 2 * pad, n + 2 * pad, 65), output_padding=Padding(scheme, pad))
    layer = PoolingLayer(
        (out + 2, out + 2, 65),
        Padding(scheme, pad),
        Padding(PaddingScheme.MIN, 1),
        function=function,
        size=size,
        stride=stride,
    )
    net = Network(inp, [layer])
    x = _x(rng, net.input_shape)
    np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))


def test_maxpool_ring_override_zero() -> None:
    """spec 6.2: 2017 ELL loaded files with 0 in the ring that max-pool reads."""
    inp = InputLayer((6, 6, 2), output_padding=Padding(PaddingScheme.MIN, 1))
    pool = PoolingLayer((3, 3, 2), Padding(PaddingScheme.MIN, 1), function="max", size=3, stride=2)
    x = -np.ones((4, 4, 2), np.float32)
    documented = Network(inp, [pool])
    old = Network(inp, [pool], maxpool_ring_value=0.0)
    assert documented.forward(x).max() == -1.0  # the ring (-FLT_MAX) never wins
    np.testing.assert_array_equal(old.forward(x), forward_ref(old, x))
    assert old.forward(x).reshape(3, 3, 2)[0, 0, 0] == 0.0  # the ring (0) wins at the edge


ACTIVATIONS = (
    "relu",
    "leaky_relu",
    "relu6",
    "hard_sigmoid",
    "hard_tanh",
    "sigmoid",
    "tanh",
    "prelu",
)


@pytest.mark.parametrize("function", ACTIVATIONS)
def test_elementwise_chain(function: str) -> None:
    rng = np.random.default_rng(len(function))
    shape = (7, 9, 65)
    alpha = rng.uniform(-0.5, 0.5, shape) if function == "prelu" else None
    layers = [
        BiasLayer(shape, bias=rng.normal(size=65)),
        BatchNormalizationLayer(
            shape, multiplication=rng.normal(size=65), addition=rng.normal(size=65)
        ),
        ScalingLayer(shape, scales=rng.normal(size=65)),
        ActivationLayer(
            (9, 11, 65),
            output_padding=Padding(PaddingScheme.MIN, 1),
            function=function,
            alpha=alpha,
            leaky_factor=0.2,
        ),
    ]
    net = Network(InputLayer(shape, scale=2.0), layers)
    x = _x(rng, shape) * 3
    got, want = net.forward(x), forward_ref(net, x)
    if function in ("sigmoid", "tanh"):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def test_softmax_fc_add() -> None:
    rng = np.random.default_rng(5)
    inp = InputLayer((3, 4, 5))
    fc = FullyConnectedLayer((1, 1, 10), weights=rng.normal(size=(10, 60)))
    bias = BiasLayer((1, 1, 10), bias=rng.normal(size=10))
    add = AddLayer((1, 1, 10), inputs=(1, 2))  # fc output + (fc + bias)
    soft = SoftmaxLayer((3, 3, 10), output_padding=Padding(PaddingScheme.ZEROS, 1))
    net = Network(inp, [fc, bias, add, soft])
    x = _x(rng, net.input_shape)
    got, want = net.forward(x), forward_ref(net, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert abs(got.sum() - 1.0) < 1e-6


@pytest.mark.parametrize("filters", (129, 300, 1000))
@pytest.mark.parametrize("size", (1, 2, 4))
def test_conv1x1_head_by_filters_bit_exact(filters: int, size: int) -> None:
    """A classifier-style 1x1 convolution (few pixels, many filters) runs split by filter
    blocks (the last one partial), with a chain and an output ring: the reference's bits."""
    from edgebnn.kernels.conv import conv1x1_filters_chain

    rng = np.random.default_rng(filters + size)
    chans = 130
    inp = InputLayer((size, size, chans))
    w = rng.normal(size=(filters, 1, 1, chans)).astype(np.float32)
    shape = (size, size, filters)
    ringed = (size + 2, size + 2, filters)
    conv = ConvolutionalLayer(shape, weights=w)
    alpha = rng.uniform(0, 1, size=shape).astype(np.float32)
    layers = [
        conv,
        BiasLayer(shape, bias=rng.normal(size=filters)),
        ActivationLayer(
            ringed, output_padding=Padding(PaddingScheme.ZEROS, 1), function="prelu", alpha=alpha
        ),
    ]
    net = Network(inp, layers)
    assert any(s.kernel is conv1x1_filters_chain for s in net.plan.steps)
    x = _x(rng, net.input_shape)
    np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_chain_copy_without_a_chain_is_a_copy_into_the_interior(pad: int) -> None:
    from edgebnn.engine.steps import encode_chain
    from edgebnn.kernels import elementwise

    x = np.random.default_rng(pad).normal(size=(5, 7, 3)).astype(np.float32)
    out = np.full((5 + 2 * pad, 7 + 2 * pad, 3), -9.0, np.float32)
    codes, params, alpha = encode_chain([], 3, 7)
    assert codes.shape[0] == 0
    elementwise.chain_copy(x, out, pad, codes, params, alpha)
    np.testing.assert_array_equal(out[pad : pad + 5, pad : pad + 7], x)
    ring = np.ones(out.shape[:2], bool)
    ring[pad : pad + 5, pad : pad + 7] = False
    assert (out[ring] == -9.0).all()
