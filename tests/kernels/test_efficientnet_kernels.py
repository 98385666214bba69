"""Mobile-network kernels (pointwise GEMM, depthwise with skipped zero taps) vs NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine.layers import ActivationLayer, BiasLayer
from edgebnn.engine.steps import encode_chain
from edgebnn.kernels import blas, conv, dense, depthwise, im2col, mbconv, pointwise
from edgebnn.kernels.reference import activation_ref, bias_ref, conv2d_ref
from edgebnn.kernels.threads import blas_threads, set_blas_threads


def _chain(chans: int, cols: int, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    layers = [
        BiasLayer((1, cols, chans), bias=bias),
        ActivationLayer((1, cols, chans), function="relu6"),
    ]
    return encode_chain(layers, chans, cols)


def _expected(
    x: np.ndarray, w: np.ndarray, stride: int, rows: int, cols: int, bias: np.ndarray
) -> np.ndarray:
    return activation_ref(bias_ref(conv2d_ref(x, w, stride, rows, cols), bias), "relu6")


@pytest.mark.parametrize(
    ("k", "stride", "lead"), [(3, 1, 0), (5, 1, 0), (4, 2, 1), (6, 2, 1), (3, 2, 0)]
)
@pytest.mark.parametrize("chans", [1, 16, 37])
@pytest.mark.parametrize("pad", [0, 2])
def test_depthwise_matches_reference(k: int, stride: int, lead: int, chans: int, pad: int) -> None:
    rng = np.random.default_rng(k * 100 + chans)
    size = 13
    x = rng.normal(size=(size, size, chans)).astype(np.float32) * 3
    w = rng.normal(size=(chans, k, k, 1)).astype(np.float32)
    w[:, :lead, :, :] = 0  # the builder's asymmetric "same" padding: leading zero taps
    w[:, :, :lead, :] = 0
    assert im2col.leading_zero_taps(w) == lead
    rows = cols = (size - k) // stride + 1
    bias = rng.normal(size=chans).astype(np.float32)
    out = np.full((rows + 2 * pad, cols + 2 * pad, chans), -7.0, np.float32)
    codes, params, alpha = _chain(chans, cols, bias)
    wl = conv.depthwise_weights_layout(w)
    depthwise.depthwise_conv2d_rows_chain(
        x, wl, stride, lead, rows, cols, out, pad, codes, params, alpha
    )
    expected = _expected(x, w, stride, rows, cols, bias)
    # Same order of float32 sums as the reference; skipped taps add exact zeros.
    np.testing.assert_array_equal(out[pad : pad + rows, pad : pad + cols], expected)
    ring = np.ones(out.shape[:2], bool)
    ring[pad : pad + rows, pad : pad + cols] = False
    assert (out[ring] == -7.0).all()  # the ring is never written


@pytest.mark.parametrize(
    ("rows", "cols", "cin", "filters"),
    [(7, 7, 1152, 192), (14, 9, 40, 240), (1, 1, 1280, 1000), (3, 5, 3, 8)],
)
@pytest.mark.parametrize("pad", [0, 1])
def test_pointwise_matches_reference(
    rows: int, cols: int, cin: int, filters: int, pad: int
) -> None:
    rng = np.random.default_rng(rows * cin + filters)
    x = rng.normal(size=(rows, cols, cin)).astype(np.float32)
    w = (rng.normal(size=(filters, 1, 1, cin)) / np.sqrt(cin)).astype(np.float32)
    bias = rng.normal(size=filters).astype(np.float32)
    out = np.full((rows + 2 * pad, cols + 2 * pad, filters), -7.0, np.float32)
    y2d = (
        out.reshape(rows * cols, filters)
        if pad == 0
        else np.zeros((rows * cols, filters), np.float32)
    )
    codes, params, alpha = _chain(filters, cols, bias)
    x2d = x.reshape(rows * cols, cin)
    pointwise.pointwise_conv_chain(
        x2d, pointwise.pointwise_weights_layout(w), y2d, out, pad, codes, params, alpha
    )
    expected = _expected(x, w, 1, rows, cols, bias)
    # BLAS sums in its own order: float32 rounding differences only.
    np.testing.assert_allclose(
        out[pad : pad + rows, pad : pad + cols], expected, rtol=1e-5, atol=2e-5
    )
    if pad:
        assert (out[0] == -7.0).all() and (out[:, -1] == -7.0).all()


def test_blas_threads_round_trip() -> None:
    before = blas_threads()
    if before is None:
        assert set_blas_threads(1) is False  # not OpenBLAS: reported, not pretended
        return
    try:
        assert set_blas_threads(1) and blas_threads() == 1
    finally:
        set_blas_threads(before)


needs_cblas = pytest.mark.skipif(not blas.AVAILABLE, reason="NumPy's BLAS exports no CBLAS sgemm")


@needs_cblas
@pytest.mark.parametrize(
    ("rows", "cols", "cin", "filters", "block"),
    [(7, 7, 1152, 192, 7), (14, 9, 40, 240, 3), (1, 1, 1280, 1000, 1)],
)
@pytest.mark.parametrize("pad", [0, 1])
def test_pointwise_sgemm_matches_reference(
    rows: int, cols: int, cin: int, filters: int, block: int, pad: int
) -> None:
    rng = np.random.default_rng(rows + cin)
    x = rng.normal(size=(rows, cols, cin)).astype(np.float32)
    w = (rng.normal(size=(filters, 1, 1, cin)) / np.sqrt(cin)).astype(np.float32)
    bias = rng.normal(size=filters).astype(np.float32)
    out = np.full((rows + 2 * pad, cols + 2 * pad, filters), -7.0, np.float32)
    y = out.reshape(rows, -1) if pad == 0 else np.zeros((rows, cols * filters), np.float32)
    codes, params, alpha = _chain(filters, cols, bias)
    wl = pointwise.pointwise_weights_layout(w)
    pointwise.pointwise_sgemm_chain(
        x.reshape(rows, -1), wl, y, block, out, pad, codes, params, alpha
    )
    expected = _expected(x, w, 1, rows, cols, bias)
    np.testing.assert_allclose(
        out[pad : pad + rows, pad : pad + cols], expected, rtol=1e-5, atol=2e-5
    )
    for parts in (1, 2, 3):  # the same GEMM, output channels split into slices
        out[...] = -7.0
        pointwise.pointwise_sgemm_columns_chain(
            x.reshape(rows, -1), wl, y, parts, out, pad, codes, params, alpha
        )
        np.testing.assert_allclose(
            out[pad : pad + rows, pad : pad + cols], expected, rtol=1e-5, atol=2e-5
        )
        if pad:
            assert (out[0] == -7.0).all() and (out[:, -1] == -7.0).all()


@needs_cblas
@pytest.mark.parametrize(("k", "stride", "lead", "cin"), [(4, 2, 1, 3), (3, 1, 0, 5), (6, 2, 1, 2)])
def test_im2col_sgemm_matches_reference(k: int, stride: int, lead: int, cin: int) -> None:
    rng = np.random.default_rng(k + cin)
    size, filters, pad = 17, 12, 1
    x = rng.normal(size=(size, size, cin)).astype(np.float32)
    w = rng.normal(size=(filters, k, k, cin)).astype(np.float32)
    w[:, :lead] = 0
    w[:, :, :lead] = 0
    rows = cols = (size - k) // stride + 1
    bias = rng.normal(size=filters).astype(np.float32)
    out = np.full((rows + 2 * pad, cols + 2 * pad, filters), -7.0, np.float32)
    w2 = im2col.im2col_weights_layout(w, lead)
    assert w2.shape == ((k - lead) ** 2 * cin, filters)
    patches = np.zeros((rows, cols * w2.shape[0]), np.float32)
    y = np.zeros((rows, cols * filters), np.float32)
    codes, params, alpha = _chain(filters, cols, bias)
    im2col.im2col_sgemm_chain(x, w2, k, lead, stride, patches, y, 2, out, pad, codes, params, alpha)
    expected = _expected(x, w, stride, rows, cols, bias)
    np.testing.assert_allclose(
        out[pad : pad + rows, pad : pad + cols], expected, rtol=1e-5, atol=2e-5
    )
    assert (out[0] == -7.0).all() and (out[-1] == -7.0).all()


def _mbconv_case(rng, size, cin, hidden, cout, k, stride, lead, ring, mode):
    """Random weights, the kernel's input and the layer-by-layer NumPy result of one block."""
    x = rng.normal(size=(size, size, cin)).astype(np.float32)
    if mode == mbconv.STEM:  # a 4x4/s2 stem with one leading zero tap on a padded image
        src = rng.normal(size=(2 * size + 2, 2 * size + 2, cin)).astype(np.float32)
        we = rng.normal(size=(hidden, 4, 4, cin)).astype(np.float32)
        we[:, :1], we[:, :, :1] = 0, 0
    else:
        src = x
        we = (rng.normal(size=(hidden, 1, 1, cin)) / np.sqrt(cin)).astype(np.float32)
    wd = rng.normal(size=(hidden, k, k, 1)).astype(np.float32)
    wd[:, :lead], wd[:, :, :lead] = 0, 0
    wp = (rng.normal(size=(cout, 1, 1, hidden)) / np.sqrt(hidden)).astype(np.float32)
    be, bd, bp = (rng.normal(size=n).astype(np.float32) for n in (hidden, hidden, cout))
    if mode == mbconv.COPY:
        e = x
    else:
        e = _expected(src, we, 2 if mode == mbconv.STEM else 1, size, size, be)
    padded = np.zeros((size + 2 * ring, size + 2 * ring, hidden), np.float32)
    padded[ring : ring + size, ring : ring + size] = e
    if mode == mbconv.COPY:
        src = padded
    rows = (size + 2 * ring - k) // stride + 1
    d = _expected(padded, wd, stride, rows, rows, bd)
    p = bias_ref(conv2d_ref(d, wp, 1, rows, rows), bp)
    return x, src, (we, be), (wd, bd), (wp, bp), rows, p


@needs_cblas
@pytest.mark.parametrize(
    ("size", "k", "stride", "lead", "ring", "mode", "residual", "slots"),
    [
        (13, 3, 1, 0, 1, mbconv.POINTWISE, True, 2),
        (12, 4, 2, 1, 1, mbconv.POINTWISE, False, 2),
        (12, 6, 2, 1, 2, mbconv.POINTWISE, False, 3),
        (11, 5, 1, 0, 2, mbconv.POINTWISE, True, 1),
        (10, 3, 1, 0, 1, mbconv.COPY, False, 2),
        (9, 3, 1, 0, 1, mbconv.STEM, False, 2),
        (8, 4, 2, 1, 1, mbconv.STEM, False, 1),
    ],
)
@pytest.mark.parametrize("pad", [0, 1])
def test_mbconv_matches_layer_by_layer(
    size, k, stride, lead, ring, mode, residual, slots, pad
) -> None:
    rng = np.random.default_rng(size * 10 + k)
    cin = {mbconv.POINTWISE: 7, mbconv.COPY: 12, mbconv.STEM: 3}[mode]
    hidden, cout = 12, (cin if residual else 5)
    x, src, (we, be), (wd, bd), (wp, bp), rows, p = _mbconv_case(
        rng, size, cin, hidden, cout, k, stride, lead, ring, mode
    )
    expected = p + x if residual else p
    out = np.full((rows + 2 * pad, rows + 2 * pad, cout), -7.0, np.float32)
    wd_l = conv.depthwise_weights_layout(wd)
    lines, tags, drows, busy = mbconv.line_buffers(slots, k, size + 2 * ring, hidden, rows)
    if mode == mbconv.STEM:
        we_l = im2col.im2col_weights_layout(we, 1)
        patches = np.zeros((slots, size * we_l.shape[0]), np.float32)
    else:
        we_l = (
            pointwise.pointwise_weights_layout(we)
            if mode == mbconv.POINTWISE
            else np.zeros((1, 1), np.float32)
        )
        patches = np.zeros((1, size), np.float32)
    e_chain = _chain(hidden, size, be)
    d_chain = _chain(hidden, rows, bd)
    p_chain = encode_chain([BiasLayer((1, rows, cout), bias=bp)], cout, rows)
    a_chain = encode_chain([], cout, rows)
    mbconv.mbconv_chain(
        src,
        mode,
        we_l,
        *e_chain,
        size,
        size,
        4,
        1,
        2,
        patches,
        wd_l,
        depthwise.tile_taps(wd_l, lead, stride, rows),
        stride,
        lead,
        ring,
        *d_chain,
        pointwise.pointwise_weights_layout(wp),
        *p_chain,
        x if residual else np.zeros((1, 1, 1), np.float32),
        residual,
        *a_chain,
        lines,
        tags,
        drows,
        rows,
        rows,
        out,
        pad,
        busy,
    )
    # The GEMMs sum in BLAS order: float32 rounding differences only.
    np.testing.assert_allclose(
        out[pad : pad + rows, pad : pad + rows], expected, rtol=1e-4, atol=1e-4
    )
    if pad:
        assert (out[0] == -7.0).all() and (out[:, -1] == -7.0).all()


@pytest.mark.parametrize(
    ("k", "stride", "lead"), [(3, 1, 0), (5, 1, 0), (4, 2, 1), (6, 2, 1), (3, 2, 0), (5, 2, 0)]
)
@pytest.mark.parametrize("chans", [1, 16, 37, 96])
@pytest.mark.parametrize("pad", [0, 2])
@pytest.mark.parametrize("size", [14, 15])  # even and odd output widths (column pairs + tail)
def test_register_depthwise_matches_reference(
    k: int, stride: int, lead: int, chans: int, pad: int, size: int
) -> None:
    rng = np.random.default_rng(k * 1000 + chans)
    x = rng.normal(size=(size, size, chans)).astype(np.float32) * 3
    w = rng.normal(size=(chans, k, k, 1)).astype(np.float32)
    w[:, :lead], w[:, :, :lead] = 0, 0
    rows = cols = (size - k) // stride + 1
    bias = rng.normal(size=chans).astype(np.float32)
    out = np.full((rows + 2 * pad, cols + 2 * pad, chans), -7.0, np.float32)
    codes, params, alpha = _chain(chans, cols, bias)
    wl = conv.depthwise_weights_layout(w)
    assert depthwise.taps_supported(k, lead)
    wt = depthwise.tile_taps(wl, lead, stride, cols)
    assert (wt.shape[0] > 1) == (stride == 1 and chans <= depthwise.FLAT_MAX_CHANNELS)
    depthwise.depthwise_rows_chain(
        x, wl, wt, stride, lead, rows, cols, out, pad, codes, params, alpha
    )
    # Taps summed in the reference's order, each sum rounded to float32: the same bits.
    np.testing.assert_array_equal(
        out[pad : pad + rows, pad : pad + cols], _expected(x, w, stride, rows, cols, bias)
    )
    ring = np.ones(out.shape[:2], bool)
    ring[pad : pad + rows, pad : pad + cols] = False
    assert (out[ring] == -7.0).all()


@pytest.mark.parametrize(("cin", "filters"), [(1280, 1000), (7, 300), (33, 5)])
def test_gemv_matches_reference(cin: int, filters: int) -> None:
    rng = np.random.default_rng(cin + filters)
    x = rng.normal(size=(1, 1, cin)).astype(np.float32)
    w = (rng.normal(size=(filters, 1, 1, cin)) / np.sqrt(cin)).astype(np.float32)
    bias = rng.normal(size=filters).astype(np.float32)
    out = np.full(filters, -7.0, np.float32)
    codes, params, alpha = encode_chain([BiasLayer((1, 1, filters), bias=bias)], filters, 1)
    dense.gemv_chain(
        x.reshape(-1), pointwise.pointwise_weights_layout(w), out, codes, params, alpha
    )
    expected = bias_ref(conv2d_ref(x, w, 1, 1, 1), bias).reshape(-1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize(
    "ops", [("bias", "relu6"), ("bias",), ("scale", "relu"), ("bias", "relu6", "relu"), ()]
)
@pytest.mark.parametrize("same", [True, False])
def test_chain_into_matches_apply_chain(ops: tuple[str, ...], same: bool) -> None:
    from edgebnn.engine.layers import ScalingLayer
    from edgebnn.kernels.elementwise import apply_chain
    from edgebnn.kernels.epilogue import chain_into

    rng = np.random.default_rng(len(ops))
    chans, cols = 24, 5
    row = (rng.normal(size=cols * chans) * 5).astype(np.float32)
    row[:3] = [np.nan, np.inf, -np.inf]
    make = {
        "bias": lambda: BiasLayer((1, cols, chans), bias=rng.normal(size=chans).astype(np.float32)),
        "scale": lambda: ScalingLayer(
            (1, cols, chans), scales=rng.normal(size=chans).astype(np.float32)
        ),
        "relu6": lambda: ActivationLayer((1, cols, chans), function="relu6"),
        "relu": lambda: ActivationLayer((1, cols, chans), function="relu"),
    }
    codes, params, alpha = encode_chain([make[o]() for o in ops], chans, cols)
    expected = row.copy()
    apply_chain(expected, 0, codes, params, alpha)
    dst = row if same else np.full_like(row, -7.0)
    chain_into(row, dst, 0, codes, params, alpha)
    np.testing.assert_array_equal(dst, expected)  # the same float32 operations: same bits


@needs_cblas
@pytest.mark.parametrize(("k", "stride", "lead", "ring"), [(5, 1, 0, 2), (4, 2, 1, 1)])
def test_mbconv_bands_reuse_rows_only_within_a_run(k, stride, lead, ring) -> None:
    """A band that starts where its slot's last band ended keeps that band's expanded
    rows; a new run (a new input) must not: bands in any order, runs with new inputs."""
    rng = np.random.default_rng(k)
    size, cin, hidden, cout = 12, 7, 12, 7
    _, _, (we, be), (wd, bd), (wp, bp), rows, _ = _mbconv_case(
        rng, size, cin, hidden, cout, k, stride, lead, ring, mbconv.POINTWISE
    )
    lines, tags, drows, busy = mbconv.line_buffers(1, k, size + 2 * ring, hidden, rows)
    wd_l = conv.depthwise_weights_layout(wd)
    residual = stride == 1
    out = np.zeros((rows, rows, cout), np.float32)
    h = rows // 2
    for order in ([(h, rows), (0, h)], [(h, rows), (0, h)], [(0, h), (h, rows)]):
        x = rng.normal(size=(size, size, cin)).astype(np.float32)
        e = _expected(x, we, 1, size, size, be)
        padded = np.zeros((size + 2 * ring, size + 2 * ring, hidden), np.float32)
        padded[ring : ring + size, ring : ring + size] = e
        d = _expected(padded, wd, stride, rows, rows, bd)
        expected = bias_ref(conv2d_ref(d, wp, 1, rows, rows), bp) + (x if residual else 0)
        args = (
            x,
            mbconv.POINTWISE,
            pointwise.pointwise_weights_layout(we),
            *_chain(hidden, size, be),
            size,
            size,
            4,
            1,
            2,
            np.zeros((1, size), np.float32),
            wd_l,
            depthwise.tile_taps(wd_l, lead, stride, rows),
            stride,
            lead,
            ring,
            *_chain(hidden, rows, bd),
            pointwise.pointwise_weights_layout(wp),
            *encode_chain([BiasLayer((1, rows, cout), bias=bp)], cout, rows),
            x if residual else np.zeros((1, 1, 1), np.float32),
            residual,
            *encode_chain([], cout, rows),
            lines,
            tags,
            drows,
            rows,
            rows,
            out,
            0,
            busy,
        )
        for r0, r1 in order:
            mbconv.mbconv_chain_rows(r0, r1, *args)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
        assert (
            busy[mbconv.ROWS_DONE] == 0
            and (busy[mbconv.LAST_ROW :: mbconv.FLAG_STRIDE] == -1).all()
        )
