"""Adversarial configurations for the fused steps, each checked bit for bit against the NumPy
reference (``forward_ref``) on the whole network.

The existing tests use the d-series shapes (3x3 binary convs, 16/24 input channels, square
maps, stride 1); here the fused binary block (integer and float forms), the row-window
layout, the fused stem and the pool-to-bits step meet what ELL files can also hold: binary
convs of stride 2, kernels 1, 2, 4 and 5, input channels on both sides of the row-window
limit (``k * chans <= 64``) and of the 64-bit word, filter counts that are not a multiple
of 64, weight scaling, zero and mixed PReLU alphas, pre-pool scalings of 0, batch-norm
multiplications of 0 (constant channels) and of both signs, post-chain thresholds placed
exactly on values the cells take, odd and non-square maps, pooling windows of 1/2/3 with
strides 1/2/3 (also past the tensor and wholly outside it), the ring read as 0, and any
number of row bands; random blocks and stems (hypothesis); whole d-series networks' logits.
Each case also checks that the planner chose the step under test.

Not covered here, by design: sigmoid and tanh. The planner fuses them as monotone, but
NumPy's float32 versions fall by one step between ~190,000 pairs of neighbouring floats
in [-40, 40] (e.g. sigmoid 0.0073898872 -> 0.0073898877), so a threshold placed exactly at
such a pair can give the other bit; like every exp/tanh-based op they are held to a
tolerance, not to bits (README).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from edgebnn.engine import steps_binary
from edgebnn.engine.d_series import d_series
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    InputLayer,
    Layer,
    Padding,
    PaddingScheme,
    PoolingLayer,
    ScalingLayer,
)
from edgebnn.engine.network import Network
from edgebnn.engine.reference import forward_ref

ZEROS, MIN = PaddingScheme.ZEROS, PaddingScheme.MIN
COUNTS, BITS = "binary_conv_pool_counts", "binary_conv_pool_bits"


@dataclass(frozen=True)
class Block:
    """One binary block feeding a second binary conv (whose float output is compared)."""

    hw: tuple[int, int] = (17, 17)  # input rows, cols (interior)
    cin: int = 16
    k1: int = 3
    s1: int = 1
    p1: int = 1  # input ring (zeros: masked)
    in_scheme: PaddingScheme = ZEROS
    filters: int = 24
    mean_scale: bool = False
    negative_means: bool = False
    pre: tuple[str, ...] = ("bias", "prelu")  # before the pool
    alpha: str = "uniform"  # uniform | zero | mixed | negative
    ring: int = 1  # the pre chain's ring, read by the pool
    ring_scheme: PaddingScheme = MIN
    size: int = 3
    stride: int = 2
    extra: int = 0  # pooled rows/cols beyond the last window that touches the tensor
    post: str = "bn"  # bn | bn_relu | bn_hard_sigmoid | none
    bn_mult: str = "mixed"  # mixed | zero | negative
    ties: bool = True  # post thresholds on values the cells take
    out_pad: int = 1
    out_scheme: PaddingScheme = ZEROS  # the next conv's input ring (masked only if zeros)
    k2: int = 3
    s2: int = 1
    filters2: int = 7
    ring_value: float | None = None
    crop: int = 0  # conv output rows/cols fewer than the input allows
    pool_crop: int = 0  # pooled rows/cols fewer than the windows allow
    seed: int = 0


def _prelu_alpha(rng: np.random.Generator, kind: str, shape: tuple[int, int, int]) -> np.ndarray:
    alpha = rng.choice(np.float32([0.125, 0.25, 0.5]), shape)  # exact products: ties survive
    if kind == "zero":
        alpha[...] = 0.0
    elif kind == "mixed":
        alpha[rng.random(shape) < 0.5] = 0.0
        alpha[..., ::3] = -0.0
    elif kind == "negative":
        alpha[rng.random(shape) < 0.01] = -0.5
        alpha.flat[rng.integers(alpha.size)] = -0.5
    return alpha.astype(np.float32)


def build(b: Block) -> Network:
    rng = np.random.default_rng(b.seed)
    h, w = b.hw
    inp = InputLayer((h + 2 * b.p1, w + 2 * b.p1, b.cin), output_padding=Padding(b.in_scheme, b.p1))
    rows = (h + 2 * b.p1 - b.k1) // b.s1 + 1 - b.crop
    cols = (w + 2 * b.p1 - b.k1) // b.s1 + 1 - b.crop
    f = b.filters
    w1 = rng.normal(size=(f, b.k1, b.k1, b.cin)).astype(np.float32)
    conv1 = BinaryConvolutionalLayer.from_real_weights(
        w1,
        output_shape=(rows, cols, f),
        input_padding=Padding(b.in_scheme, b.p1),
        weights_scale=1 if b.mean_scale else 0,
    )
    if b.mean_scale:  # powers of two keep the products exact (ties), one filter mean of 0
        conv1.filter_means = rng.choice(np.float32([0.25, 0.5, 1.0, 2.0]), f).astype(np.float32)
        conv1.filter_means[0] = 0.0
        if b.negative_means:  # not from real weights, but a file may hold it
            conv1.filter_means[1::3] *= -1
    layers: list[Layer] = [conv1]
    shape = (rows, cols, f)
    volume = b.k1 * b.k1 * b.cin
    for op in b.pre:
        if op == "bias":  # integers: u stays on a lattice the post thresholds can hit
            bias = rng.integers(-volume // 2, volume // 2 + 1, f).astype(np.float32)
            layers.append(BiasLayer(shape, bias=bias))
        elif op == "prelu":
            alpha = _prelu_alpha(rng, b.alpha, shape)
            layers.append(ActivationLayer(shape, function="prelu", alpha=alpha))
        elif op == "relu":
            layers.append(ActivationLayer(shape, function="relu"))
        elif op == "leaky":
            layers.append(ActivationLayer(shape, function="leaky_relu", leaky_factor=0.25))
        elif op in ("sigmoid", "tanh", "relu6", "hard_sigmoid"):
            layers.append(ActivationLayer(shape, function=op))
        elif op == "hard_tanh":
            layers.append(ActivationLayer(shape, function="hard_tanh"))
        elif op == "scale0":  # some channels scaled to exactly 0 (and -0)
            scales = rng.choice(np.float32([0.5, 1.0, 2.0]), f)
            scales[::4] = 0.0
            scales[1::8] = -0.0
            layers.append(ScalingLayer(shape, scales=scales))
        elif op == "bn_neg":  # falling before the pool: only the float form applies
            mult = rng.choice(np.float32([0.5, 1.0, -1.0]), f)
            layers.append(
                BatchNormalizationLayer(shape, multiplication=mult, addition=rng.integers(-3, 4, f))
            )
        elif op == "bn_pos":
            mult = rng.choice(np.float32([0.5, 1.0, 0.0]), f)
            layers.append(
                BatchNormalizationLayer(shape, multiplication=mult, addition=rng.integers(-3, 4, f))
            )
        else:
            raise ValueError(op)
    last = layers[-1]
    full = (rows + 2 * b.ring, cols + 2 * b.ring, f)
    if len(layers) > 1 or b.ring:
        last.output_shape, last.output_padding = full, Padding(b.ring_scheme, b.ring)
    pr = -(-(full[0] - b.size) // b.stride) + 1 + b.extra - b.pool_crop
    pc = -(-(full[1] - b.size) // b.stride) + 1 + b.extra - b.pool_crop
    pooled = (pr, pc, f)
    post: list[Layer] = []
    if b.post != "none":
        if b.bn_mult == "mixed":
            mult = rng.choice(np.float32([0.5, 1.0, 2.0, -0.5, -1.0]), f)
            mult[::5] = 0.0  # constant channels
        elif b.bn_mult == "zero":
            mult = np.zeros(f, np.float32)
        else:
            mult = -rng.choice(np.float32([0.5, 1.0, 2.0]), f)
        if b.ties:  # BN(m) == 0 exactly at an integer m a cell may take
            at = rng.integers(-volume // 3, volume // 3 + 1, f).astype(np.float32)
            add = (-(mult * at)).astype(np.float32)
        else:
            add = rng.normal(0, 2, f).astype(np.float32)
        post.append(BatchNormalizationLayer(pooled, multiplication=mult, addition=add))
        if b.post == "bn_hard_sigmoid":
            post.append(ActivationLayer(pooled, function="hard_sigmoid"))
            post.append(BiasLayer(pooled, bias=np.float32(rng.choice([-0.5, -0.25, 0.0], f))))
        elif b.post == "bn_relu":
            post.append(ActivationLayer(pooled, function="relu"))
            post.append(BiasLayer(pooled, bias=np.float32(rng.choice([0.0, -0.0, -1.0], f))))
        else:
            post.append(ScalingLayer(pooled, scales=rng.choice(np.float32([1.0, 0.5, 2.0]), f)))
            post.append(BiasLayer(pooled, bias=np.float32(rng.choice([0.0, -0.0, 0.5, -0.5], f))))
    end_shape = (pr + 2 * b.out_pad, pc + 2 * b.out_pad, f)
    pool_out = end_shape if not post else pooled
    pool = PoolingLayer(
        pool_out,
        Padding(b.ring_scheme, b.ring),
        Padding(b.out_scheme, b.out_pad) if not post else Padding(),
        function="max",
        size=b.size,
        stride=b.stride,
    )
    if post:
        post[-1].output_shape, post[-1].output_padding = end_shape, Padding(b.out_scheme, b.out_pad)
    layers += [pool, *post]
    r2 = (end_shape[0] - b.k2) // b.s2 + 1
    c2 = (end_shape[1] - b.k2) // b.s2 + 1
    w2 = rng.normal(size=(b.filters2, b.k2, b.k2, f)).astype(np.float32)
    layers.append(
        BinaryConvolutionalLayer.from_real_weights(
            w2, output_shape=(r2, c2, b.filters2), input_padding=Padding(b.out_scheme, b.out_pad)
        )
    )
    return Network(inp, layers, maxpool_ring_value=b.ring_value)


def _input(net: Network, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    x = rng.normal(size=net.input_shape).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = 0.0  # 0 is a clear bit, as are negatives
    return x


def _fused_kernels(net: Network) -> list[str]:
    return [s.kernel.__name__ for s in net.plan.steps if s.label.startswith("BinaryConvolutional+")]


def _check(net: Network, inputs: int = 2) -> None:
    for seed in range(inputs):
        x = _input(net, seed)
        with np.errstate(over="ignore", invalid="ignore"):  # -FLT_MAX windows times 2: -inf
            want = forward_ref(net, x).reshape(-1)
        got = net.forward(x)
        np.testing.assert_array_equal(got, want, err_msg=f"input seed {seed}")


BASE = Block()

CASES = {
    # conv geometry
    "stride2": replace(BASE, hw=(33, 33), s1=2),
    "stride2_k1": replace(BASE, hw=(20, 20), k1=1, s1=2, p1=0),
    "k1_c63_windows": replace(BASE, cin=63, k1=1, p1=0),
    "k1_c64_windows": replace(BASE, cin=64, k1=1, p1=0),
    "k1_c65": replace(BASE, cin=65, k1=1, p1=0),
    "k1_c130": replace(BASE, cin=130, k1=1, p1=0, hw=(12, 12)),
    "k2_c32_windows": replace(BASE, cin=32, k1=2, p1=1, hw=(16, 16)),
    "k4_c16_windows": replace(BASE, cin=16, k1=4, p1=2, hw=(15, 15)),
    "k5_c12_windows": replace(BASE, cin=12, k1=5, p1=2),
    "k5_c13": replace(BASE, cin=13, k1=5, p1=2),
    "k5_c1_stride2": replace(BASE, cin=1, k1=5, p1=2, s1=2, hw=(35, 35)),
    "c1": replace(BASE, cin=1),
    "c5": replace(BASE, cin=5),
    "c21_windows_edge": replace(BASE, cin=21),
    "c22_patches_edge": replace(BASE, cin=22),
    "c63": replace(BASE, cin=63, hw=(13, 13)),
    "c64": replace(BASE, cin=64, hw=(13, 13)),
    "c65": replace(BASE, cin=65, hw=(13, 13)),
    "c130": replace(BASE, cin=130, filters=70, hw=(11, 11)),
    "big_weights": replace(BASE, cin=64, filters=920, hw=(9, 9)),  # blocks * F > 8192
    "big_weights_rem": replace(BASE, cin=65, filters=830, hw=(9, 9)),  # 10 blocks: one left
    "int32_limits": replace(BASE, cin=3700, filters=3, hw=(8, 8)),  # 33300-bit fields
    "nopad_input": replace(BASE, p1=0, hw=(19, 19)),
    "nonsquare": replace(BASE, hw=(13, 22), cin=21, s1=1),
    "nonsquare_stride2": replace(BASE, hw=(31, 18), s1=2, cin=7),
    # filter counts feeding the next binary conv
    "f1": replace(BASE, filters=1, bn_mult="negative"),
    "f63": replace(BASE, filters=63),
    "f64": replace(BASE, filters=64),
    "f65": replace(BASE, filters=65),
    "f130": replace(BASE, filters=130, hw=(11, 11)),
    "f21_next_windows": replace(BASE, filters=21),
    "f22_next_patches": replace(BASE, filters=22),
    # weight scaling, alphas, chains
    "mean_scale": replace(BASE, mean_scale=True),
    "mean_scale_stride2_f65": replace(BASE, mean_scale=True, s1=2, hw=(33, 33), filters=65),
    "alpha_zero": replace(BASE, alpha="zero"),
    "alpha_mixed": replace(BASE, alpha="mixed"),
    "relu": replace(BASE, pre=("bias", "relu")),
    "leaky": replace(BASE, pre=("bias", "leaky")),
    "scale0": replace(BASE, pre=("bias", "scale0", "prelu")),
    "bn_pos_hard_tanh": replace(BASE, pre=("bias", "bn_pos", "hard_tanh")),
    "no_pre_chain_no_ring": replace(BASE, pre=(), ring=0),
    "bias_only_no_ring": replace(BASE, pre=("bias",), ring=0),
    "bias_only_ring2": replace(BASE, pre=("bias",), ring=2),
    "no_pre_chain_ring": replace(BASE, pre=(), ring=1),
    "negative_means": replace(BASE, mean_scale=True, negative_means=True),
    "pre_bn_negative": replace(BASE, pre=("bias", "bn_neg", "prelu")),
    "input_ring_min": replace(BASE, in_scheme=MIN),
    "input_ring_alternating": replace(
        BASE, in_scheme=PaddingScheme.ALTERNATING_ZERO_AND_ONES, cin=40
    ),
    "cropped": replace(BASE, hw=(21, 21), crop=3, pool_crop=2),
    "cropped_stride2_windows": replace(BASE, hw=(41, 41), s1=2, crop=4, cin=5),
    "thin": replace(BASE, hw=(20, 1)),
    "wide": replace(BASE, hw=(8, 40)),
    "eight_rows": replace(BASE, hw=(8, 8), filters=65),
    "sigmoid": replace(BASE, pre=("bias", "sigmoid")),
    "tanh": replace(BASE, pre=("bias", "prelu", "tanh")),
    "relu6": replace(BASE, pre=("bias", "relu6")),
    "hard_sigmoid": replace(BASE, pre=("bias", "hard_sigmoid")),
    # post chains
    "bn_zero": replace(BASE, bn_mult="zero"),
    "bn_negative": replace(BASE, bn_mult="negative"),
    "bn_relu": replace(BASE, post="bn_relu"),
    "no_post": replace(BASE, post="none"),
    "no_ties": replace(BASE, ties=False),
    "bn_hard_sigmoid": replace(BASE, post="bn_hard_sigmoid"),
    "bn_hard_sigmoid_falling": replace(BASE, post="bn_hard_sigmoid", bn_mult="negative"),
    # pooling
    "pool1_s1": replace(BASE, size=1, stride=1),
    "pool1_s2": replace(BASE, size=1, stride=2),
    "pool2_s1": replace(BASE, size=2, stride=1),
    "pool2_s2_noring": replace(BASE, size=2, stride=2, ring=0),
    "pool2_s3": replace(BASE, size=2, stride=3, hw=(19, 19)),
    "pool3_s1": replace(BASE, size=3, stride=1),
    "pool4_s4": replace(BASE, size=4, stride=4, hw=(21, 21)),
    "pool5_s2": replace(BASE, size=5, stride=2, hw=(21, 21)),
    "pool5_s1_ring2": replace(BASE, size=5, stride=1, ring=2),
    "pool3_s3": replace(BASE, size=3, stride=3, hw=(19, 19)),
    "pool3_s2_odd19": replace(BASE, hw=(19, 19)),
    "pool_extra_window": replace(BASE, extra=1),
    "pool_extra_window_falling": replace(BASE, extra=1, bn_mult="negative"),
    "ring_as_zero": replace(BASE, ring_value=0.0),
    "ring_as_zero_falling": replace(BASE, ring_value=0.0, bn_mult="negative", alpha="zero"),
    "ring2_pool3_s1": replace(BASE, ring=2, size=3, stride=1),
    "ring_zeros_scheme": replace(BASE, ring_scheme=ZEROS, bn_mult="negative"),
    "ring_max_scheme": replace(BASE, ring_scheme=PaddingScheme.MAX),
    "ring_alternating": replace(
        BASE, ring_scheme=PaddingScheme.ALTERNATING_ZERO_AND_ONES, size=2, stride=1
    ),
    "ring_minus_ones": replace(BASE, ring_scheme=PaddingScheme.MINUS_ONES, alpha="zero"),
    # the next conv
    "next_k1": replace(BASE, k2=1, out_pad=0),
    "next_stride2": replace(BASE, s2=2),
    "next_no_pad": replace(BASE, out_pad=0),
    "next_f65": replace(BASE, filters2=65),
    "next_ring_min": replace(BASE, out_scheme=MIN),
    "next_ring_minus_ones": replace(BASE, out_scheme=PaddingScheme.MINUS_ONES),
    "next_ring_alternating": replace(
        BASE, out_scheme=PaddingScheme.ALTERNATING_ZERO_AND_ONES, post="none"
    ),
}


def _expected_kernel(b: Block) -> str:
    floats = (
        (b.alpha == "negative" and "prelu" in b.pre)
        or b.negative_means
        or "bn_neg" in b.pre
        or (not b.pre and b.ring)  # the conv's own ring: no count test (float form)
    )
    return BITS if floats else COUNTS


@pytest.mark.parametrize("name", list(CASES))
def test_block_against_reference(name: str) -> None:
    b = CASES[name]
    net = build(b)
    assert _fused_kernels(net)[0] == _expected_kernel(b), net.plan.describe()
    _check(net)


@pytest.mark.parametrize(
    "name",
    [
        "stride2",
        "k5_c13",
        "c21_windows_edge",
        "f65",
        "mean_scale",
        "pool2_s3",
        "ring_as_zero",
        "bn_zero",
        "pool_extra_window",
        "scale0",
        "nonsquare_stride2",
    ],
)
def test_float_form_against_reference(name: str) -> None:
    """The same cases through the float step: one negative alpha makes the chain
    non-monotone in the count."""
    b = replace(CASES[name], alpha="negative")
    net = build(b)
    if "prelu" not in b.pre:
        pytest.skip("no PReLU")
    assert _fused_kernels(net)[0] == BITS, net.plan.describe()
    _check(net)


@pytest.mark.parametrize("bands", (1, 2, 3, 5, 64))
@pytest.mark.parametrize("name", ["pool3_s1", "pool2_s3", "pool_extra_window", "stride2"])
def test_band_counts(name: str, bands: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps_binary, "bands", lambda: bands)
    for alpha in ("uniform", "negative"):
        net = build(replace(CASES[name], alpha=alpha))
        _check(net, inputs=1)


# -- the fused stem (float conv + monotone chain + max-pool + sign -> bits) ---------------


@dataclass(frozen=True)
class Stem:
    hw: tuple[int, int] = (33, 33)
    cin: int = 3
    k: int = 3
    stride: int = 1
    pad: int = 1
    filters: int = 16
    size: int = 2
    pool_stride: int = 2
    extra: int = 0
    bn_mult: str = "mixed"  # mixed | negative | zero
    relu: bool = True
    pool_ring: str = "zeros"  # the binary conv's input ring: zeros (masked) | min (read)
    seed: int = 0


def build_stem(s: Stem) -> Network:
    """Integer inputs and weights in halves: every convolution output is exact, so the
    chain's thresholds (placed on integers) are hit by the cells."""
    rng = np.random.default_rng(s.seed)
    h, w = s.hw
    inp = InputLayer((h + 2 * s.pad, w + 2 * s.pad, s.cin), output_padding=Padding(ZEROS, s.pad))
    rows = (h + 2 * s.pad - s.k) // s.stride + 1
    cols = (w + 2 * s.pad - s.k) // s.stride + 1
    f = s.filters
    weights = rng.choice(np.float32([-1.0, -0.5, 0.0, 0.5, 1.0]), (f, s.k, s.k, s.cin))
    shape = (rows, cols, f)
    layers: list[Layer] = [
        ConvolutionalLayer(shape, Padding(ZEROS, s.pad), weights=weights, stride=s.stride),
        BiasLayer(shape, bias=rng.integers(-2, 3, f).astype(np.float32)),
    ]
    if s.relu:
        layers.append(ActivationLayer(shape, function="relu"))
    if s.bn_mult == "mixed":
        mult = rng.choice(np.float32([0.5, 1.0, 2.0, -0.5, -1.0]), f)
        mult[::5] = 0.0
    elif s.bn_mult == "zero":
        mult = np.zeros(f, np.float32)
    else:
        mult = -rng.choice(np.float32([0.5, 1.0, 2.0]), f)
    at = rng.integers(-2, 4, f).astype(np.float32)
    layers += [
        BatchNormalizationLayer(shape, multiplication=mult, addition=-(mult * at)),
        ScalingLayer(shape, scales=rng.choice(np.float32([0.5, 1.0, 2.0]), f)),
        BiasLayer(shape, bias=rng.choice(np.float32([0.0, -0.0, 0.5, -0.5]), f)),
    ]
    pr = -(-(rows - s.size) // s.pool_stride) + 1 + s.extra
    pc = -(-(cols - s.size) // s.pool_stride) + 1 + s.extra
    scheme = ZEROS if s.pool_ring == "zeros" else MIN
    layers.append(
        PoolingLayer(
            (pr + 2, pc + 2, f),
            output_padding=Padding(scheme, 1),
            function="max",
            size=s.size,
            stride=s.pool_stride,
        )
    )
    w2 = rng.normal(size=(5, 3, 3, f)).astype(np.float32)
    layers.append(
        BinaryConvolutionalLayer.from_real_weights(
            w2, output_shape=(pr, pc, 5), input_padding=Padding(scheme, 1)
        )
    )
    return Network(inp, layers)


def _stem_input(net: Network, seed: int) -> np.ndarray:
    rng = np.random.default_rng(2000 + seed)
    return rng.integers(-3, 4, net.input_shape).astype(np.float32)


#: The fused stem kernels: RGB 3x3 stride 1 with fused multiply-adds, the general one.
FUSED_STEMS = {"stem_pool_bits", "conv2d_columns_pool_bits"}

STEMS = {
    "rgb_3x3_s1": Stem(),  # the written-out 27-tap kernels
    "rgb_3x3_s2": Stem(hw=(65, 65), stride=2),
    "rgb_3x3_s1_odd": Stem(hw=(35, 37)),
    "c1_3x3": Stem(cin=1),
    "c4_3x3": Stem(cin=4),
    "rgb_k1_nopad": Stem(k=1, pad=0),
    "rgb_k5": Stem(k=5, pad=2, hw=(34, 34)),
    "rgb_k5_s2": Stem(k=5, pad=2, stride=2, hw=(67, 67)),
    "f1": Stem(filters=1, bn_mult="negative"),
    "f31": Stem(filters=31),
    "f32": Stem(filters=32),
    "pool3_s2": Stem(size=3, pool_stride=2, hw=(35, 35)),
    "pool3_s1": Stem(size=3, pool_stride=1),
    "pool2_s3": Stem(size=2, pool_stride=3, hw=(35, 35)),
    "pool3_s3_extra": Stem(size=3, pool_stride=3, extra=1, hw=(34, 34)),
    "pool1_s1": Stem(size=1, pool_stride=1),
    "falling": Stem(bn_mult="negative"),
    "falling_extra": Stem(bn_mult="negative", extra=1),
    "falling_no_relu": Stem(bn_mult="negative", relu=False),
    "constant": Stem(bn_mult="zero"),
    "min_ring": Stem(pool_ring="min"),
}


@pytest.mark.parametrize("name", list(STEMS))
def test_stem_against_reference(name: str) -> None:
    s = STEMS[name]
    net = build_stem(s)
    kernels = [st.kernel.__name__ for st in net.plan.steps]
    assert FUSED_STEMS & set(kernels), net.plan.describe()
    rgb_3x3 = s.k == 3 and s.cin == 3 and s.stride == 1
    assert ("stem_pool_bits" in kernels) == rgb_3x3, net.plan.describe()
    for seed in range(2):
        x = _stem_input(net, seed)
        np.testing.assert_array_equal(net.forward(x), forward_ref(net, x).reshape(-1))


# -- small maps: separate binary conv step, then pooling straight to bits ----------------


@pytest.mark.parametrize(
    "name",
    [
        "stride2",
        "f65",
        "mean_scale",
        "pool2_s3",
        "pool_extra_window_falling",
        "ring_as_zero_falling",
        "bn_zero",
    ],
)
def test_small_maps_pool_to_bits(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps_binary, "BAND_MIN_ROWS", 10**9)
    net = build(CASES[name])
    kernels = [st.kernel.__name__ for st in net.plan.steps]
    assert COUNTS not in kernels and BITS not in kernels and "pool_to_bits" in kernels, (
        net.plan.describe()
    )
    _check(net)


# -- whole d-series networks, logits (the softmax's exp is the one allowed difference) ----


@pytest.mark.parametrize(
    ("size", "architecture", "seed"),
    [
        (96, "NCMNBMNBMNBMNBMNBMNC1A", 1),
        (128, "NCMNBMNBMNBMNBMNBMNC1A", 2),
        (160, "NCMNBMNBMNBMNBMNBMNC1A", 3),
        (112, "CMCMBMBMBMBMB1AS", 4),
        (144, "NCMNBMNBMNBMNBMNBMNB1A", 5),
    ],
)
def test_d_series_logits_bit_exact(size: int, architecture: str, seed: int) -> None:
    full = d_series(size, architecture, seed=seed)
    net = Network(full.input_layer, full.layers[:-1])  # drop the softmax
    kernels = [st.kernel.__name__ for st in net.plan.steps]
    assert COUNTS in kernels, net.plan.describe()
    assert architecture.startswith("CM") or "stem_pool_bits" in kernels, net.plan.describe()
    rng = np.random.default_rng(seed)
    for _ in range(2):
        x = rng.uniform(0, 255, net.input_shape).astype(np.float32)
        x[rng.random(x.shape) < 0.05] = 128.0
        np.testing.assert_array_equal(net.forward(x), forward_ref(net, x).reshape(-1))


# -- random blocks --------------------------------------------------------------------------

st = pytest.importorskip("hypothesis.strategies")
hypothesis = pytest.importorskip("hypothesis")


@st.composite
def _blocks(draw: st.DrawFn) -> Block:
    k1 = draw(st.sampled_from([1, 2, 3, 5]))
    size = draw(st.integers(1, 4))
    return Block(
        hw=(draw(st.integers(8, 24)), draw(st.integers(3, 24))),
        cin=draw(st.sampled_from([1, 2, 5, 12, 13, 16, 21, 22, 31, 32, 33, 63, 64, 65, 100])),
        k1=k1,
        s1=draw(st.integers(1, 2)),
        p1=draw(st.integers(0, k1 // 2)),
        filters=draw(st.sampled_from([1, 2, 7, 16, 24, 63, 64, 65, 100, 128, 129])),
        mean_scale=draw(st.booleans()),
        pre=draw(
            st.sampled_from(
                [
                    ("bias", "prelu"),
                    ("bias", "relu"),
                    ("prelu",),
                    ("bias", "scale0", "prelu"),
                    ("bias",),
                ]
            )
        ),
        alpha=draw(st.sampled_from(["uniform", "zero", "mixed", "negative"])),
        ring=draw(st.integers(0, 2)),
        ring_scheme=draw(st.sampled_from([MIN, MIN, ZEROS, PaddingScheme.MAX])),
        size=size,
        stride=draw(st.integers(1, 3)),
        extra=draw(st.integers(0, 1)),
        post=draw(st.sampled_from(["bn", "bn_relu", "bn_hard_sigmoid", "none"])),
        bn_mult=draw(st.sampled_from(["mixed", "negative", "zero"])),
        ties=draw(st.booleans()),
        out_pad=draw(st.integers(0, 1)),
        k2=draw(st.sampled_from([1, 3])),
        s2=draw(st.integers(1, 2)),
        filters2=draw(st.sampled_from([1, 5, 65])),
        ring_value=draw(st.sampled_from([None, None, 0.0])),
        seed=draw(st.integers(0, 2**16)),
    )


@hypothesis.settings(max_examples=150, deadline=None, derandomize=True)
@hypothesis.given(b=_blocks(), bands=st.sampled_from([1, 2, 3, 4]))
def test_random_blocks_against_reference(b: Block, bands: int) -> None:
    hypothesis.assume(b.k2 <= (b.hw[0] + 2 * b.p1 - b.k1) // b.s1)  # a next conv that fits
    saved_bands = steps_binary.bands
    steps_binary.bands = lambda: bands
    try:
        try:
            net = build(b)
            net.plan  # noqa: B018 - plan now, with these bands
        except Exception as exc:  # shapes the generator could not fit
            if "ShapeError" in type(exc).__name__:
                hypothesis.reject()
            raise
    finally:
        steps_binary.bands = saved_bands
    kernels = _fused_kernels(net)
    hypothesis.event(kernels[0] if kernels else "no fused binary step")
    if kernels and kernels[0] in (COUNTS, BITS):
        assert kernels[0] == _expected_kernel(b), net.plan.describe()
    _check(net, inputs=1)


@st.composite
def _stems(draw: st.DrawFn) -> Stem:
    k = draw(st.sampled_from([1, 2, 3, 3, 5]))
    stride = draw(st.integers(1, 2))
    return Stem(
        hw=(draw(st.integers(6, 30)), draw(st.integers(32, 48)) * stride + k),
        cin=draw(st.sampled_from([1, 2, 3, 3, 4])),
        k=k,
        stride=stride,
        pad=draw(st.integers(0, k // 2)),
        filters=draw(st.integers(1, 32)),
        size=draw(st.integers(1, 4)),
        pool_stride=draw(st.integers(1, 3)),
        extra=draw(st.integers(0, 1)),
        bn_mult=draw(st.sampled_from(["mixed", "negative", "zero"])),
        relu=draw(st.booleans()),
        pool_ring=draw(st.sampled_from(["zeros", "min"])),
        seed=draw(st.integers(0, 2**16)),
    )


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(s=_stems())
def test_random_stems_against_reference(s: Stem) -> None:
    try:
        net = build_stem(s)
    except Exception as exc:
        if "ShapeError" in type(exc).__name__:
            hypothesis.reject()
        raise
    assert FUSED_STEMS & {x.kernel.__name__ for x in net.plan.steps}, net.plan.describe()
    x = _stem_input(net, s.seed)
    np.testing.assert_array_equal(net.forward(x), forward_ref(net, x).reshape(-1))
