"""LCE's binary kernels against NumPy references: packing convention, accumulators
(one padding, strides, dilations, odd channel counts), thresholds, zero-padding correction
and binary max pooling, all exact integers."""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine.tflite_bconv import output_transform, outside_taps, zero_padding_correction
from edgebnn.kernels import lce
from edgebnn.kernels.tflite_float import same_padding


def test_bit_convention_zero_is_plus_one() -> None:
    x = np.array([[[-1.0, 0.0, -0.0, 2.0, -1e-30, np.inf, -np.inf, np.nan]]], np.float32)
    bits = np.zeros((1, 1, 1), np.uint64)
    lce.quantize(x, bits)
    # bit 1 <=> x < 0: -1, -1e-30 and -inf; 0, -0, +inf and NaN are +1 (bit 0)
    assert int(bits[0, 0, 0]) == 0b01010001
    np.testing.assert_array_equal(bits, lce.pack_reference(x))


@pytest.mark.parametrize("chans", [1, 31, 32, 33, 64, 65, 100, 130])
def test_quantize_matches_reference_and_lce_words(chans: int) -> None:
    rng = np.random.default_rng(chans)
    x = rng.normal(size=(3, 4, chans)).astype(np.float32)
    x[0, 0, : chans // 2] = 0.0
    bits = np.zeros((3, 4, lce.words_for(chans)), np.uint64)
    lce.quantize(x, bits)
    np.testing.assert_array_equal(bits, lce.pack_reference(x))
    words32 = lce.u64_to_lce_words(bits, chans)
    assert words32.shape == (3, 4, -(-chans // 32))
    np.testing.assert_array_equal(lce.lce_words_to_u64(words32), bits)
    out = np.zeros_like(x)
    lce.dequantize(bits, out)
    np.testing.assert_array_equal(out, np.where(x < 0, -1.0, 1.0).astype(np.float32))


CASES = [
    # rows, cols, chans, filters, k, stride, dilation, same
    (9, 11, 37, 35, (3, 3), (1, 1), (1, 1), True),
    (12, 13, 70, 40, (3, 3), (2, 2), (1, 1), True),
    (13, 12, 33, 17, (5, 5), (2, 3), (1, 1), True),
    (14, 15, 64, 65, (3, 3), (1, 1), (2, 2), False),
    (11, 12, 96, 31, (3, 2), (1, 1), (2, 3), True),
    (7, 6, 130, 129, (1, 1), (1, 1), (1, 1), False),
    (5, 5, 1, 3, (3, 3), (1, 1), (1, 1), True),
]


def _case(rows, cols, chans, filters, k, stride, dilation, same, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols, chans)).astype(np.float32)
    bits = lce.pack_reference(x)
    w = rng.normal(size=(filters, k[0], k[1], chans)).astype(np.float32)
    wbits = lce.pack_reference(w)  # (O, kh, kw, words)
    out_h, top = same_padding(rows, k[0], stride[0], dilation[0], same)
    out_w, left = same_padding(cols, k[1], stride[1], dilation[1], same)
    geometry = np.array([k[0], k[1], *stride, *dilation, top, left], np.int64)
    wt = np.ascontiguousarray(wbits.reshape(filters, -1).T)
    return x, w, bits, wbits, wt, geometry, (out_h, out_w)


def _float_conv_reference(x, w, geometry, out_hw, pad_value):
    """Plain ±1 convolution in int64, padding with ``pad_value`` (0 or +1)."""
    kh, kw, sh, sw, dh, dw, top, left = (int(v) for v in geometry)
    xs = np.where(x < 0, -1, 1).astype(np.int64)
    ws = np.where(w < 0, -1, 1).astype(np.int64)
    out = np.zeros((*out_hw, w.shape[0]), np.int64)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for ky in range(kh):
                for kx in range(kw):
                    y, xx = oy * sh - top + ky * dh, ox * sw - left + kx * dw
                    if 0 <= y < x.shape[0] and 0 <= xx < x.shape[1]:
                        out[oy, ox] += ws[:, ky, kx] @ xs[y, xx]
                    else:
                        out[oy, ox] += pad_value * ws[:, ky, kx].sum(axis=-1)
    return out


@pytest.mark.parametrize("case", CASES)
def test_bconv_accumulators_and_transforms_exact(case) -> None:
    x, w, bits, wbits, wt, geometry, out_hw = _case(*case)
    filters, chans, k = case[3], case[2], case[4][0] * case[4][1] * case[2]
    acc = lce.bconv_reference(bits, wbits, geometry, out_hw)
    # one padding: K - 2*acc is the ±1 convolution padded with +1
    np.testing.assert_array_equal(k - 2 * acc, _float_conv_reference(x, w, geometry, out_hw, 1))
    # bitpacked output: bit iff acc > threshold
    thresholds = np.random.default_rng(1).integers(k // 3, 2 * k // 3, filters).astype(np.int64)
    out = np.zeros((*out_hw, lce.words_for(filters)), np.uint64)
    lce.bconv_bits(bits, wt, geometry, thresholds, out)
    np.testing.assert_array_equal(out, lce.pack_reference(np.where(acc > thresholds, -1.0, 1.0)))
    # float output with zero-padding correction = ±1 convolution padded with 0, times m, plus b
    m = np.random.default_rng(2).uniform(-2, 2, filters).astype(np.float32)
    b = np.random.default_rng(3).uniform(-1, 1, filters).astype(np.float32)
    mul, bias, lo, hi = output_transform(m, b, k, 0)
    correction = zero_padding_correction(wbits, chans, geometry, x.shape[:2], out_hw, mul)
    y = np.zeros((*out_hw, filters), np.float32)
    lce.bconv_float(bits, wt, geometry, lo, hi, mul, bias, correction, y)
    expected = (2 * acc).astype(np.float32) * mul + bias + correction
    np.testing.assert_array_equal(y, expected)
    zero_padded = _float_conv_reference(x, w, geometry, out_hw, 0)
    np.testing.assert_allclose(y, zero_padded * m.astype(np.float64) + b, rtol=1e-5, atol=1e-4)
    if not outside_taps(geometry, x.shape[:2], out_hw).any():
        assert not correction.any()


@pytest.mark.parametrize("activation,nominal", [(1, (0, None)), (3, (0, 6)), (2, (-1, 1))])
def test_fused_activation_clamps_the_integer_result(activation, nominal) -> None:
    k = 27
    mul, bias, lo, hi = output_transform(
        np.ones(1, np.float32), np.zeros(1, np.float32), k, activation
    )
    for acc in range(k + 1):
        y = np.float32(min(max(2 * acc, lo), hi)) * mul[0] + bias[0]
        true = k - 2 * acc
        lo_n, hi_n = nominal
        assert y == min(max(true, lo_n), hi_n if hi_n is not None else k)


@pytest.mark.parametrize(
    "pool,stride,same", [(3, 2, True), (2, 2, False), (3, 1, True), (2, 3, True)]
)
def test_bmaxpool_is_and_of_bits(pool: int, stride: int, same: bool) -> None:
    rng = np.random.default_rng(pool * 10 + stride)
    x = rng.normal(size=(9, 8, 70)).astype(np.float32) + 0.8  # mostly positive: ANDs matter
    bits = lce.pack_reference(x)
    out_h, top = same_padding(9, pool, stride, 1, same)
    out_w, left = same_padding(8, pool, stride, 1, same)
    out = np.zeros((out_h, out_w, bits.shape[2]), np.uint64)
    lce.bmaxpool(bits, pool, pool, stride, stride, top, left, out)
    expected = np.zeros((out_h, out_w, 70), np.float32)
    for oy in range(out_h):
        for ox in range(out_w):
            y0, x0 = max(oy * stride - top, 0), max(ox * stride - left, 0)
            y1, x1 = oy * stride - top + pool, ox * stride - left + pool
            expected[oy, ox] = np.where(x[y0:y1, x0:x1] >= 0, 1.0, -1.0).max(axis=(0, 1))
    np.testing.assert_array_equal(out, lce.pack_reference(expected))


def _conv_fma_reference(x, w, bias, geometry, out_hw):
    """Bias first, then one fused multiply-add per tap in (ky, kx, c) order (a·b is exact in
    float64, so float64 a·b + c rounded to float32 is the fma here)."""
    kh, kw, sh, sw, dh, dw, top, left = (int(v) for v in geometry)
    acc = np.broadcast_to(bias, (*out_hw, bias.size)).astype(np.float32)
    for ky in range(kh):
        for kx in range(kw):
            for c in range(x.shape[2]):
                for oy in range(out_hw[0]):
                    y = oy * sh - top + ky * dh
                    for ox in range(out_hw[1]):
                        xx = ox * sw - left + kx * dw
                        v = x[y, xx, c] if 0 <= y < x.shape[0] and 0 <= xx < x.shape[1] else 0.0
                        product = np.float64(v) * w[(ky * kw + kx) * x.shape[2] + c].astype(
                            np.float64
                        )
                        acc[oy, ox] = (product + acc[oy, ox]).astype(np.float32)
    return acc


@pytest.mark.parametrize(
    ("shape", "filters", "k", "stride", "dilation", "same"),
    [
        ((13, 11, 3), 16, 3, 2, 1, True),
        ((9, 7, 5), 6, 1, 1, 1, False),
        ((10, 9, 4), 12, 3, 1, 1, True),
        ((6, 5, 20), 40, 1, 1, 1, True),  # three panels, the last partial; 1x1 read in place
        ((5, 7, 9), 33, 1, 2, 1, True),
        ((11, 10, 3), 18, 3, 1, 2, True),
    ],
)
def test_float_conv_rounds_like_tflite(shape, filters, k, stride, dilation, same) -> None:
    from edgebnn.kernels import tflite_conv, tflite_float

    rng = np.random.default_rng(k * 10 + filters)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(k * k * shape[2], filters)).astype(np.float32)
    bias = rng.normal(size=filters).astype(np.float32)
    out_h, top = same_padding(shape[0], k, stride, dilation, same)
    out_w, left = same_padding(shape[1], k, stride, dilation, same)
    geometry = np.array([k, k, stride, stride, dilation, dilation, top, left], np.int64)
    expected = _conv_fma_reference(x, w, bias, geometry, (out_h, out_w))
    out = np.zeros((out_h, out_w, filters), np.float32)
    tflite_float.conv2d(x, w, bias, geometry, out)
    np.testing.assert_array_equal(out, expected)
    # the register-blocked kernel: the same roundings, the clamp and the sign bits fused
    panels, _ = tflite_conv.pack_panels(w)
    padded_bias = tflite_conv.pad_bias(bias)
    packed = np.zeros((out_h, out_w, lce.words_for(filters)), np.uint64)
    for lo, hi in [(-np.inf, np.inf), (0.0, 6.0)]:
        out[:] = np.nan
        tflite_conv.conv2d(x, panels, padded_bias, geometry, np.float32(lo), np.float32(hi),
                           out, packed)  # fmt: skip
        clamped = np.clip(expected, lo, hi)
        np.testing.assert_array_equal(out, clamped)
        np.testing.assert_array_equal(packed, lce.pack_reference(clamped))


def test_bconv_with_residual_add_and_quantize_fused() -> None:
    _, _, bits, _, wt, geometry, out_hw = _case(*CASES[0])
    filters, k = CASES[0][3], CASES[0][4][0] * CASES[0][4][1] * CASES[0][2]
    rng = np.random.default_rng(5)
    m = rng.uniform(-2, 2, filters).astype(np.float32)
    b = rng.uniform(-1, 1, filters).astype(np.float32)
    mul, bias, lo, hi = output_transform(m, b, k, 1)
    y = np.zeros((*out_hw, filters), np.float32)
    lce.bconv_float(bits, wt, geometry, lo, hi, mul, bias, lce.NO_FLOATS, y)
    residual = rng.normal(size=y.shape).astype(np.float32) * np.float32(4.0)
    total = np.zeros_like(y)
    packed = np.zeros((*out_hw, lce.words_for(filters)), np.uint64)
    lce.bconv_float_fused(bits, wt, geometry, lo, hi, mul, bias, lce.NO_FLOATS, residual,
                          np.float32(0.0), np.float32(6.0), total, packed)  # fmt: skip
    expected = np.clip(y + residual, 0.0, 6.0)
    np.testing.assert_array_equal(total, expected)
    np.testing.assert_array_equal(packed, lce.pack_reference(expected))


@pytest.mark.parametrize(
    ("pool", "stride", "same"), [(2, 1, False), (3, 2, True), (3, 1, True), (2, 3, True)]
)
def test_float_pools_take_the_in_bounds_taps(pool: int, stride: int, same: bool) -> None:
    from edgebnn.kernels import tflite_float

    rng = np.random.default_rng(pool * 7 + stride)
    x = rng.normal(size=(9, 10, 19)).astype(np.float32)
    out_h, top = same_padding(9, pool, stride, 1, same)
    out_w, left = same_padding(10, pool, stride, 1, same)
    for is_max in (True, False):
        out = np.full((out_h, out_w, 19), np.nan, np.float32)
        tflite_float.pool_clamped(x, is_max, pool, pool, stride, stride, top, left,
                                  np.float32(-np.inf), np.float32(np.inf), out)  # fmt: skip
        for oy in range(out_h):
            for ox in range(out_w):
                y0, x0 = max(oy * stride - top, 0), max(ox * stride - left, 0)
                y1, x1 = oy * stride - top + pool, ox * stride - left + pool
                window = x[y0:y1, x0:x1].reshape(-1, 19)
                if is_max:
                    np.testing.assert_array_equal(out[oy, ox], window.max(axis=0))
                else:
                    expected = window.sum(axis=0, dtype=np.float32) / np.float32(len(window))
                    np.testing.assert_allclose(out[oy, ox], expected, rtol=1e-6)
