"""The packed-weight GEMM (micro-kernel in LLVM IR) against a float64 NumPy product."""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.kernels import gemm
from edgebnn.kernels.microkernel import LANES, PANEL, ROWS


def test_pack_weights_layout() -> None:
    k, n = 3, PANEL + LANES // 2  # a full panel, then a part of a vector
    w = np.arange(k * n, dtype=np.float32).reshape(k, n)
    packed = gemm.pack_weights(w)
    assert packed.shape == (k * gemm.packed_width(n),)
    np.testing.assert_array_equal(packed[: k * PANEL].reshape(k, PANEL), w[:, :PANEL])
    tail = packed[k * PANEL :].reshape(k, LANES)
    np.testing.assert_array_equal(tail[:, : n - PANEL], w[:, PANEL:])
    assert not tail[:, n - PANEL :].any()  # zero padding


@pytest.mark.parametrize(
    ("rows", "cols", "cin", "filters"),
    [
        (14, 14, 80, 480),
        (14, 14, 480, 80),
        (7, 7, 1152, 320),
        (1, 5, 16, 24),
        (2, 7, 40, 40),
        (3, 3, 1, 17),
        (1, 1, 8, 8),
    ],
)
@pytest.mark.parametrize("flags", [0, gemm.RELU6, gemm.RESIDUAL, gemm.RELU6 | gemm.RESIDUAL])
@pytest.mark.parametrize(("pad", "threads"), [(0, 1), (1, 2), (2, 3)])
def test_pointwise_packed_matches_reference(
    rows: int, cols: int, cin: int, filters: int, flags: int, pad: int, threads: int
) -> None:
    rng = np.random.default_rng(rows * cin + filters + flags)
    pixels = rows * cols
    a = rng.normal(size=(pixels, cin)).astype(np.float32)
    w = (rng.normal(size=(cin, filters)) / np.sqrt(cin)).astype(np.float32)
    bias = rng.normal(size=filters).astype(np.float32) * 3
    res = rng.normal(size=(pixels, filters)).astype(np.float32)
    out = np.full((rows + 2 * pad, cols + 2 * pad, filters), -7.0, np.float32)
    blocks, ptrs = gemm.scratch(threads)
    ranges = gemm.thread_ranges(pixels, filters, threads)
    gemm.pointwise_packed(
        a,
        gemm.pack_weights(w),
        gemm.pad_bias(bias, filters),
        filters,
        flags,
        out.reshape(out.shape[0], -1),
        pad,
        cols,
        res,
        ranges,
        blocks,
        ptrs,
    )
    expected = a.astype(np.float64) @ w + bias
    if flags & gemm.RELU6:
        expected = np.clip(expected, 0, 6)
    if flags & gemm.RESIDUAL:
        expected = expected + res
    got = out[pad : pad + rows, pad : pad + cols].reshape(pixels, filters)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    ring = np.ones(out.shape[:2], bool)
    ring[pad : pad + rows, pad : pad + cols] = False
    assert (out[ring] == -7.0).all()  # the ring is never written


@pytest.mark.parametrize(
    ("pixels", "filters", "threads"),
    [
        (196, 480, 2),
        (196, 80, 2),
        (49, 192, 2),
        (5, 16, 4),
        (49, 192, 8),
        (1, 1000, 8),
        (49, 1152, 8),
    ],
)
def test_thread_ranges_cover_everything_once(pixels: int, filters: int, threads: int) -> None:
    panels = -(-filters // PANEL)
    seen = np.zeros((pixels, panels), np.int64)
    for m0, m1, p0, p1 in gemm.thread_ranges(pixels, filters, threads):
        seen[m0:m1, p0:p1] += 1
    assert (seen == 1).all()


def test_tile_heights() -> None:
    assert ROWS % 3 == 0 and ROWS >= 3
