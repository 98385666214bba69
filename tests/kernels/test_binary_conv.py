"""Binary convolution: kernels and planned layers against the NumPy reference, bit-exact.

Grids straddle the 64-bit word (channels 1, 16, 63, 64, 65, 130), strides 1 and 2, kernel
sizes 1 and 3, every padding scheme (zeros masks the ring; others binarise it), inputs with
exact zeros (0 is -1), and both weight scales.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine.layers import (
    BinaryConvolutionalLayer,
    InputLayer,
    Padding,
    PaddingScheme,
)
from edgebnn.engine.network import Network
from edgebnn.engine.reference import forward_ref
from edgebnn.kernels import binary
from edgebnn.kernels import reference as ref
from edgebnn.kernels._jit import popcount64

CHANNELS = (1, 16, 63, 64, 65, 130)


def _input_with_zeros(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    x[rng.random(shape) < 0.2] = 0.0  # exact zeros must map to -1
    return x


def test_popcount_matches_python() -> None:
    values = [0, 1, 2**63, 2**64 - 1, 0x5555555555555555, 12345678901234567890]
    for v in values:
        assert popcount64(v) == sum((v >> i) & 1 for i in range(64))


@pytest.mark.parametrize("chans", CHANNELS)
def test_sign_pack_matches_reference(chans: int) -> None:
    rng = np.random.default_rng(chans)
    x = _input_with_zeros(rng, (5, 4, chans))
    bits = np.zeros((5, 4, binary.words_for(chans)), np.uint64)
    binary.sign_pack(x, bits)
    np.testing.assert_array_equal(bits, ref.sign_bits_ref(x))


def test_filter_packing_is_ells() -> None:
    """ELL's archived form of its unit-test weights (spec 2.13): [262143, 229373]."""
    values = [
        1.0,
        2.0,
        3.0,
        4.0,
        2.0,
        1.0,
        3.0,
        3.0,
        1.0,
        1.0,
        1.0,
        2.0,
        2.0,
        1.0,
        3.0,
        4.0,
        1.0,
        2.0,
        1.0,
        0.0,
        2.0,
        3.0,
        1.0,
        2.0,
        2.0,
        3.0,
        3.0,
        1.0,
        2.0,
        2.0,
        1.0,
        1.0,
        2.0,
        0.0,
        1.0,
        2.0,
    ]
    w = np.array(values, np.float32).reshape(2, 3, 3, 2)
    layer = BinaryConvolutionalLayer.from_real_weights(w, output_shape=(1, 2, 2))
    assert layer.weights_bits.reshape(-1).tolist() == [262143, 229373]
    np.testing.assert_allclose(layer.filter_means, [2.0555556, 1.6111112], rtol=1e-6)
    signs = ref.unpack_filter_signs(layer.weights_bits, 18)
    np.testing.assert_array_equal(signs, np.where(w.reshape(2, 18) > 0, 1, -1))


def _binary_net(rng, chans, k, stride, scheme, pad, scale, filters=7, size=9):
    rows = (size + 2 * pad - k) // stride + 1
    inp = InputLayer((size + 2 * pad, size + 2 * pad, chans), output_padding=Padding(scheme, pad))
    w = rng.normal(size=(filters, k, k, chans)).astype(np.float32)
    w[rng.random(w.shape) < 0.1] = 0.0
    layer = BinaryConvolutionalLayer.from_real_weights(
        w,
        output_shape=(rows, rows, filters),
        input_padding=Padding(scheme, pad),
        stride=stride,
        weights_scale=scale,
    )
    return Network(inp, [layer])


@pytest.mark.parametrize("chans", CHANNELS)
@pytest.mark.parametrize("stride", (1, 2))
@pytest.mark.parametrize("k", (1, 3))
@pytest.mark.parametrize(
    "scheme", (PaddingScheme.ZEROS, PaddingScheme.MINUS_ONES, PaddingScheme.MIN, PaddingScheme.MAX)
)
def test_binary_layer_bit_exact(chans: int, stride: int, k: int, scheme: PaddingScheme) -> None:
    rng = np.random.default_rng(chans * 100 + stride * 10 + k + int(scheme))
    net = _binary_net(rng, chans, k, stride, scheme, pad=1 if k == 3 else 0, scale=0)
    x = _input_with_zeros(rng, net.input_shape)
    got = net.forward(x)
    want = forward_ref(net, x)
    np.testing.assert_array_equal(got, want)
    # Outputs are integers of the right parity: volume minus twice the disagreements.
    assert np.all(got == np.round(got))


@pytest.mark.parametrize("chans", (128, 192))
@pytest.mark.parametrize("scheme", (PaddingScheme.ZEROS, PaddingScheme.MINUS_ONES))
def test_fields_of_several_nine_words_bit_exact(chans: int, scheme: PaddingScheme) -> None:
    """3x3 fields of 18 and 27 words: pixels off the ring sum nine words per pass
    unmasked, ring pixels (zero padding) keep their masks."""
    rng = np.random.default_rng(chans + int(scheme))
    net = _binary_net(rng, chans, 3, 1, scheme, pad=1, scale=0, filters=40)
    x = _input_with_zeros(rng, net.input_shape)
    np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))


@pytest.mark.parametrize(
    ("chans", "k", "pad", "stride", "filters"),
    [
        (128, 3, 1, 1, 81),  # 18 words, weights in L1: per pixel
        (256, 3, 1, 2, 301),  # 36 words x 301 filters: streamed nine words at a time
        (200, 3, 1, 1, 300),  # 29 words (not a multiple of 9), partial masks: streamed
        (100, 3, 1, 2, 30),  # 15 words, partial masks, per pixel
        (64, 5, 2, 1, 33),  # 5x5 field: corners skip 9 of 25 taps
    ],
)
def test_ring_pixels_skip_padded_taps_bit_exact(
    chans: int, k: int, pad: int, stride: int, filters: int
) -> None:
    """Pixels on the zero-padded ring count only their valid words (whole taps masked
    out are skipped, whole valid words counted unmasked, the rest masked), in both loop
    orders of the counts; filter counts that are not a multiple of the vector width."""
    rng = np.random.default_rng(chans * k + filters)
    for scheme in (PaddingScheme.ZEROS, PaddingScheme.MAX):  # the ring masked, or read
        net = _binary_net(rng, chans, k, stride, scheme, pad, scale=0, filters=filters, size=6)
        x = _input_with_zeros(rng, net.input_shape)
        np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))


@pytest.mark.parametrize("chans", (16, 65))
def test_binary_layer_mean_scale(chans: int) -> None:
    rng = np.random.default_rng(chans)
    net = _binary_net(rng, chans, 3, 1, PaddingScheme.ZEROS, pad=1, scale=1)
    x = _input_with_zeros(rng, net.input_shape)
    np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))


@pytest.mark.parametrize("windows", (False, True))
def test_zero_padding_mask_ignores_ring_values(windows: bool) -> None:
    """With scheme zeros the ring contributes 0 whatever it holds (ELL's mask), in both input
    layouts (ELL's 64-bit blocks, and the row windows of fields narrower than a word)."""
    rng = np.random.default_rng(3)
    chans, size = 16, 6
    w = rng.normal(size=(4, 3, 3, chans)).astype(np.float32)
    layer = BinaryConvolutionalLayer.from_real_weights(
        w, output_shape=(size, size, 4), input_padding=Padding(PaddingScheme.ZEROS, 1)
    )
    x = np.ones((size + 2, size + 2, chans), np.float32)
    masked = ref.binary_conv2d_ref(x, layer.weights_bits, 3, 1, size, size, mask_padding=1)
    unmasked = ref.binary_conv2d_ref(x, layer.weights_bits, 3, 1, size, size, mask_padding=0)
    # Interior pixels see no ring; corner pixels see 5 ring taps.
    np.testing.assert_array_equal(masked[2:-2, 2:-2], unmasked[2:-2, 2:-2])
    assert not np.array_equal(masked[0, 0], unmasked[0, 0])
    # And the fast path agrees with the masked reference for any ring content.
    bits = np.zeros((size + 2, size + 2, 1), np.uint64)
    binary.sign_pack(x, bits)
    geometry = (size + 2, size + 2, chans, 3, 1, size, size, 1)
    if windows:
        assert binary.row_windows(chans, 3)
        masks, nvalid = binary.window_masks(*geometry)
        wt = binary.window_weights_layout(layer.weights_bits, chans, 3)
    else:
        masks, nvalid = binary.patch_masks(*geometry)
        wt = binary.binary_weights_layout(layer.weights_bits)
    out = np.zeros((size, size, 4), np.float32)
    from edgebnn.kernels.elementwise import EMPTY_ALPHA, EMPTY_CODES, empty_params, tile_params

    binary.binary_conv_chain(
        bits,
        chans,
        3,
        1,
        masks,
        nvalid,
        wt,
        layer.filter_means,
        False,
        windows,
        size,
        size,
        out,
        0,
        EMPTY_CODES,
        tile_params(empty_params(4), size),
        EMPTY_ALPHA,
    )
    np.testing.assert_array_equal(out, masked)


@pytest.mark.parametrize("chans", (*CHANNELS, 128))
@pytest.mark.parametrize("stride", (1, 2))
def test_gathered_patches_are_ell_volume_order(chans: int, stride: int) -> None:
    """Each patch holds bit v = (i*k + j)*C + ch of its window, LSB first (spec 4.7)."""
    rng = np.random.default_rng(chans + stride)
    x = _input_with_zeros(rng, (7, 7, chans))
    bits = np.zeros((7, 7, binary.words_for(chans)), np.uint64)
    binary.sign_pack(x, bits)
    rows = (7 - 3) // stride + 1
    blocks = -(-9 * chans // 64)
    patches = np.zeros((rows * rows, blocks), np.uint64)
    binary.gather_patches(bits, chans, 3, stride, rows, rows, patches)
    for r in range(rows):
        for c in range(rows):
            window = x[r * stride : r * stride + 3, c * stride : c * stride + 3].reshape(1, -1)
            np.testing.assert_array_equal(patches[r * rows + c], ref.pack_filter_bits(window)[0])


def test_fused_sign_handles_nan_inf_and_extremes() -> None:
    """Pool -> batch-norm -> bias -> binary conv, fused into threshold tests, gives ELL's bits
    for NaN, ±inf and ±FLT_MAX inputs too (0 * inf is NaN; NaN is never > 0)."""
    from edgebnn.engine.layers import BatchNormalizationLayer, BiasLayer, PoolingLayer

    rng = np.random.default_rng(11)
    chans = 65
    big = np.finfo(np.float32).max
    inp = InputLayer((8, 8, chans))
    mult = rng.normal(size=chans).astype(np.float32)
    mult[:4] = [0.0, -1.0, 1.0, 1e-38]
    layers = [
        PoolingLayer((4, 4, chans), function="max", size=2, stride=2),
        BatchNormalizationLayer(
            (4, 4, chans), multiplication=mult, addition=rng.normal(size=chans)
        ),
        BiasLayer(
            (6, 6, chans),
            output_padding=Padding(PaddingScheme.ZEROS, 1),
            bias=rng.normal(size=chans),
        ),
    ]
    w = rng.normal(size=(9, 3, 3, chans)).astype(np.float32)
    layers.append(
        BinaryConvolutionalLayer.from_real_weights(
            w, output_shape=(4, 4, 9), input_padding=Padding(PaddingScheme.ZEROS, 1)
        )
    )
    net = Network(inp, layers)
    assert any(step.label.endswith("+Sign") for step in net.plan.steps)
    x = rng.normal(size=net.input_shape).astype(np.float32)
    specials = np.array([np.nan, np.inf, -np.inf, big, -big, 0.0, -0.0], np.float32)
    mask = rng.random(x.shape) < 0.3
    x[mask] = rng.choice(specials, size=int(mask.sum()))
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(net.forward(x), forward_ref(net, x))
    # The same float layers alone (no sign fusion) agree with the reference bit for bit.
    floats = Network(inp, layers[:3])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(floats.forward(x), forward_ref(floats, x))
