"""The fused RGB stem (input chain + 3x3 convolution with fused multiply-adds + thresholds +
max-pool + sign) against NumPy's reference-order convolution.

Its bits must be those of ``lo <= conv <= hi`` on the reference convolution (terms added
one at a time, each product and sum rounded) of the input chain's output. The thresholds
are put exactly on (and one float32 step beside) values the reference produces, where a
fused multiply-add changes the sum's last bits: a kernel that trusted its fused sums there
would flip bits, the proof-and-recompute path must not.
"""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.kernels import elementwise, stem
from edgebnn.kernels import reference as ref

FLAG_NAN, FLAG_POS_INF, FLAG_NEG_INF = 1, 2, 4


def _chain(cols: int, bias: np.ndarray, scale: np.ndarray | None):
    """(codes, params, alpha) of ``x + bias`` (then ``* scale``), tiled for input rows."""
    ops = [(elementwise.OP_BIAS, bias)] + (
        [(elementwise.OP_SCALE, scale)] if scale is not None else []
    )
    codes = np.array([op for op, _ in ops], np.int64)
    params = np.zeros((len(ops), 2, 3), np.float32)
    for i, (_, values) in enumerate(ops):
        params[i, 0] = values
    return codes, elementwise.tile_params(params, cols), elementwise.EMPTY_ALPHA


def _expected(values, lo, hi, specials, size, stride, rows, cols) -> np.ndarray:
    finite = np.abs(values) <= np.finfo(np.float32).max
    test = (values >= lo) & (values <= hi)
    nan = np.isnan(values) & ((specials & FLAG_NAN) != 0)
    pos = (values == np.inf) & ((specials & FLAG_POS_INF) != 0)
    neg = (values == -np.inf) & ((specials & FLAG_NEG_INF) != 0)
    on = np.where(finite, test, nan | pos | neg).astype(np.float32)
    pooled = ref.pool_ref(on, "max", size, stride, rows, cols) > 0
    return ref.sign_bits_ref(pooled.astype(np.float32))


def _reference_values(x, codes, params, alpha, in_pad, ring, w) -> np.ndarray:
    """The input chain's ringed output, then the reference convolution."""
    chained = np.full((x.shape[0] + 2 * in_pad, x.shape[1] + 2 * in_pad, 3), ring, np.float32)
    elementwise.chain_copy(x, chained, in_pad, codes, params, alpha)
    rows, cols = chained.shape[0] - 2, chained.shape[1] - 2
    return ref.conv2d_ref(chained, w, 1, rows, cols)


def _run(x, w, chain, in_pad, ring, lo, hi, specials, size=2, pool_stride=2):
    codes, params, alpha = chain
    values = _reference_values(x, codes, params, alpha, in_pad, ring, w)
    conv_rows, conv_cols = values.shape[:2]
    rows = -(-conv_rows // pool_stride)
    cols = -(-conv_cols // pool_stride)
    grouped, taps, sums = stem.stem_weights(w)
    lo4, hi4 = stem.padded_bounds(lo, hi)
    pad = 1
    bits = np.zeros((rows + 2 * pad, cols + 2 * pad, 1), np.uint64)
    stem.stem_pool_bits(
        x, in_pad, np.float32(ring), codes, params, alpha, grouped, taps, sums,
        conv_rows, conv_cols, size, pool_stride, rows, cols, lo4, hi4, specials, bits, pad,
    )  # fmt: skip
    expected = _expected(values, lo, hi, specials, size, pool_stride, rows, cols)
    return bits[pad:-pad, pad:-pad], expected, values


def _thresholds_on_values(values, rng) -> tuple[np.ndarray, np.ndarray]:
    """lo on (or one step beside) values the reference produces; hi above or infinite."""
    filters = values.shape[2]
    flat = values.reshape(-1, filters)
    picks = flat[rng.integers(0, flat.shape[0], size=filters), np.arange(filters)]
    nudge = rng.integers(-1, 2, size=filters)
    lo = np.where(
        nudge < 0,
        np.nextafter(picks, -np.inf),
        np.where(nudge > 0, np.nextafter(picks, np.inf), picks),
    ).astype(np.float32)
    other = flat[rng.integers(0, flat.shape[0], size=filters), np.arange(filters)]
    hi = np.where(rng.random(filters) < 0.4, np.float32(np.inf), np.maximum(lo, other))
    return lo, hi.astype(np.float32)


@pytest.mark.parametrize("filters", [16, 5, 32, 3])
@pytest.mark.parametrize("scaled", [False, True])
def test_bits_exact_at_thresholds_on_reference_values(filters: int, scaled: bool) -> None:
    rng = np.random.default_rng(filters * 7 + scaled)
    x = rng.uniform(0, 255, size=(34, 45, 3)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0
    bias = -rng.uniform(100, 130, 3).astype(np.float32)
    scale = rng.uniform(0.005, 0.02, 3).astype(np.float32) if scaled else None
    chain = _chain(x.shape[1], bias, scale)
    w = rng.normal(0, 1 / (np.sqrt(27) * 60), (filters, 3, 3, 3)).astype(np.float32)
    codes, params, alpha = chain
    values = _reference_values(x, codes, params, alpha, 1, 0.0, w)
    specials = np.zeros(filters, np.int64)
    for trial in range(6):
        lo, hi = _thresholds_on_values(values, np.random.default_rng(trial))
        got, expected, _ = _run(x, w, chain, 1, 0.0, lo, hi, specials)
        np.testing.assert_array_equal(got, expected)


def test_fused_sums_really_differ_from_the_reference() -> None:
    """The check above is not vacuous: without the recomputation (a zero error bound), the
    fused sums put some of these values on the other side of their threshold."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, size=(30, 40, 3)).astype(np.float32)
    w = rng.normal(0, 1 / (np.sqrt(27) * 60), (16, 3, 3, 3)).astype(np.float32)
    codes, params, alpha = _chain(x.shape[1], np.full(3, -120.0, np.float32), None)
    chained = np.zeros((32, 42, 3), np.float32)
    elementwise.chain_copy(x, chained, 1, codes, params, alpha)
    values = ref.conv2d_ref(chained, w, 1, 30, 40)
    panels, taps, _ = stem.stem_weights(w)
    tiled = -(-40 // stem.TILE_PIXELS) * stem.TILE_PIXELS
    rows = np.zeros((3, 3 * (tiled + 2)), np.float32)
    hits = np.zeros(tiled, np.uint32)
    flips = 0
    for r in range(30):
        rows[:, : 42 * 3] = chained[r : r + 3].reshape(3, -1)
        # lo on a value of this very row, per filter; no error margin.
        lo = values[r, rng.integers(0, 40, 16), np.arange(16)]
        hi = np.full(16, np.inf, np.float32)
        bounds = np.array([[lo, hi, lo, hi]], np.float32)
        stem._fused_hits(rows[0], rows[1], rows[2], panels, taps, bounds, lo, hi, 40, hits)
        fused_bits = (hits[:40, None] >> np.arange(16, dtype=np.uint32)) & 1
        flips += int((fused_bits != (values[r] >= lo)).sum())
    assert flips > 0


@pytest.mark.parametrize("in_pad", [0, 1, 2])
def test_padding_ring_and_pool_shapes(in_pad: int) -> None:
    rng = np.random.default_rng(in_pad)
    x = rng.normal(0, 50, size=(21, 33, 3)).astype(np.float32)
    chain = _chain(x.shape[1], np.zeros(3, np.float32), None)
    w = rng.normal(0, 0.05, (8, 3, 3, 3)).astype(np.float32)
    ring = 0.0 if in_pad != 2 else -7.5
    lo = rng.normal(0, 0.5, 8).astype(np.float32)
    hi = np.full(8, np.inf, np.float32)
    specials = np.zeros(8, np.int64)
    for size, pool_stride in [(2, 2), (3, 2), (1, 1)]:
        got, expected, _ = _run(x, w, chain, in_pad, ring, lo, hi, specials, size, pool_stride)
        np.testing.assert_array_equal(got, expected)


def test_nonfinite_and_huge_inputs_take_the_reference_path() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(0, 10, size=(24, 40, 3)).astype(np.float32)
    x[3, 5, 0] = np.nan
    x[10, 20, 1] = np.inf
    x[15, 30, 2] = -np.inf
    x[20, 7, 1] = 3e38  # sums overflow to inf
    chain = _chain(x.shape[1], np.zeros(3, np.float32), None)
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32)
    lo = np.full(6, -0.5, np.float32)
    hi = np.full(6, np.inf, np.float32)
    specials = np.array([0, 1, 2, 4, 7, 3], np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        got, expected, values = _run(x, w, chain, 1, 0.0, lo, hi, specials)
    assert not np.isfinite(values).all()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("filters", "cols"), [(21, 31), (17, 7), (16, 6), (32, 1), (8, 12)])
def test_tiles_panels_and_row_ends(filters: int, cols: int) -> None:
    """Register tiles of ``TILE_PIXELS`` pixels x 16 filters: rows that end inside a tile,
    rows of one tile or less, a second panel filled in part; thresholds on reference values
    anywhere in a tile (which is then recomputed whole), the last pixel included."""
    rng = np.random.default_rng(filters * 100 + cols)
    x = rng.uniform(0, 255, size=(9, cols, 3)).astype(np.float32)
    chain = _chain(cols, -rng.uniform(100, 130, 3).astype(np.float32), None)
    w = rng.normal(0, 1 / (np.sqrt(27) * 60), (filters, 3, 3, 3)).astype(np.float32)
    codes, params, alpha = chain
    values = _reference_values(x, codes, params, alpha, 1, 0.0, w)
    specials = np.zeros(filters, np.int64)
    for trial in range(4):
        lo, hi = _thresholds_on_values(values, np.random.default_rng(trial))
        for size, pool_stride in [(2, 2), (1, 1)]:
            got, expected, _ = _run(x, w, chain, 1, 0.0, lo, hi, specials, size, pool_stride)
            np.testing.assert_array_equal(got, expected)
