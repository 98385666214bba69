"""The fused stem kernel (convolution + chain thresholds + max-pool + sign) against NumPy.

``conv2d_columns_pool_bits`` must give the bit that ``lo <= conv <= hi`` (OR-ed over each
pooling window) gives on the reference convolution, for every input. The thresholds here are
taken from the exact convolution outputs themselves, and their float32 neighbours, so that
a convolution summed in any other order or with a fused multiply-add would flip bits.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.kernels import conv, conv_blocked
from edgebnn.kernels import reference as ref

FLAG_NAN, FLAG_POS_INF, FLAG_NEG_INF = 1, 2, 4


def _expected_bits(values: np.ndarray, lo, hi, specials, size, stride, rows, cols) -> np.ndarray:
    """Bits from the reference convolution output ``values`` (conv_rows, conv_cols, F)."""
    finite = np.abs(values) <= np.finfo(np.float32).max
    test = (values >= lo) & (values <= hi)
    nan = np.isnan(values) & ((specials & FLAG_NAN) != 0)
    pos = (values == np.inf) & ((specials & FLAG_POS_INF) != 0)
    neg = (values == -np.inf) & ((specials & FLAG_NEG_INF) != 0)
    on = np.where(finite, test, nan | pos | neg).astype(np.float32)  # 1.0 / 0.0
    pooled = ref.pool_ref(on, "max", size, stride, rows, cols) > 0
    return ref.sign_bits_ref(pooled.astype(np.float32))


def _run(x, w, stride, size, pool_stride, lo, hi, specials) -> tuple[np.ndarray, np.ndarray]:
    k = w.shape[1]
    conv_rows = (x.shape[0] - k) // stride + 1
    conv_cols = (x.shape[1] - k) // stride + 1
    rows = -(-conv_rows // pool_stride)
    cols = -(-conv_cols // pool_stride)
    values = ref.conv2d_ref(x, w, stride, conv_rows, conv_cols)
    pad = 1
    bits = np.zeros((rows + 2 * pad, cols + 2 * pad, 1), np.uint64)
    conv_blocked.conv2d_columns_pool_bits(
        x,
        conv.conv_weights_layout(w),
        stride,
        conv_rows,
        conv_cols,
        size,
        pool_stride,
        rows,
        cols,
        lo,
        hi,
        specials,
        bits,
        pad,
    )
    expected = _expected_bits(values, lo, hi, specials, size, pool_stride, rows, cols)
    return bits[pad:-pad, pad:-pad], expected


@pytest.mark.parametrize(
    ("k", "cin", "stride", "filters"),
    [
        (3, 3, 1, 16),
        (3, 3, 1, 5),
        (3, 3, 2, 16),
        (3, 1, 1, 8),
        (5, 4, 1, 16),
        (1, 3, 1, 32),
        (3, 16, 1, 32),
    ],
)
def test_bits_exact_at_the_thresholds(k: int, cin: int, stride: int, filters: int) -> None:
    rng = np.random.default_rng(k * 100 + cin * 10 + stride + filters)
    x = rng.uniform(-120, 135, size=(37, 41, cin)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = 0.0
    w = rng.normal(size=(filters, k, k, cin)).astype(np.float32)
    conv_rows = (x.shape[0] - k) // stride + 1
    conv_cols = (x.shape[1] - k) // stride + 1
    values = ref.conv2d_ref(x, w, stride, conv_rows, conv_cols)
    # lo/hi sit exactly on (or one ulp beside) values the convolution really produces.
    picks = values.reshape(-1, filters)[
        rng.integers(0, conv_rows * conv_cols, size=filters), np.arange(filters)
    ]
    nudge = rng.integers(-1, 2, size=filters)
    lo = np.where(
        nudge < 0,
        np.nextafter(picks, -np.inf),
        np.where(nudge > 0, np.nextafter(picks, np.inf), picks),
    )
    lo = lo.astype(np.float32)
    hi = np.where(
        rng.random(filters) < 0.5, np.float32(np.inf), np.nextafter(lo, np.inf) + 50
    ).astype(np.float32)
    specials = np.zeros(filters, np.int64)
    got, expected = _run(x, w, stride, 2, 2, lo, hi, specials)
    np.testing.assert_array_equal(got, expected)


def test_bits_of_nonfinite_convolution_outputs() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 40, 3)).astype(np.float32)
    x[3, 5, 0] = np.nan
    x[10, 20, 1] = np.inf
    x[15, 30, 2] = -np.inf
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32)
    lo = np.full(6, -0.5, np.float32)
    hi = np.full(6, np.inf, np.float32)
    specials = np.array([0, 1, 2, 4, 7, 3], np.int64)
    with np.errstate(invalid="ignore"):
        got, expected = _run(x, w, 1, 2, 2, lo, hi, specials)
    np.testing.assert_array_equal(got, expected)
