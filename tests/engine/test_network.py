"""Whole networks against the float32 NumPy reference that follows ELL's order of operations.

Gate: identical top-5 and max |Δp| <= 1e-4 on every input. The float64 difference is
printed for information only (one sign flip before a binary conv moves probabilities by
percents, so float64 is no fair gate, spec 6.1).
"""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.engine.d_series import HEADLINE, d_series
from edgebnn.engine.layers import BiasLayer, InputLayer, Padding, PaddingScheme, PoolingLayer
from edgebnn.engine.reference import forward_ref

import edgebnn

TOLERANCE = 1e-4


def _inputs(shape: tuple[int, int, int], n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0, 255, shape).astype(np.float32) for _ in range(n - 1)]
    smooth = np.linspace(0, 255, shape[0] * shape[1] * shape[2], dtype=np.float32).reshape(shape)
    return [*xs, smooth]


def _check_against_reference(net: edgebnn.Network, xs: list[np.ndarray]) -> float:
    worst = 0.0
    for x in xs:
        got = net.forward(x)
        want = forward_ref(net, x)
        assert (
            np.argsort(-got, kind="stable")[:5].tolist()
            == np.argsort(-want, kind="stable")[:5].tolist()
        )
        worst = max(worst, float(np.abs(got - want).max()))
        assert worst <= TOLERANCE
    return worst


def test_headline_network_matches_reference() -> None:
    net = d_series(256, HEADLINE, seed=7)
    assert len(net.layers) == 55
    assert net.input_shape == (256, 256, 3)
    assert net.output_shape == (1, 1, 1000)
    xs = _inputs(net.input_shape, 3, seed=1)
    worst = _check_against_reference(net, xs)
    d64 = max(
        float(np.abs(net.forward(x) - forward_ref(net, x, dtype=np.float64)).max()) for x in xs
    )
    # Information only: float64 is not what ELL computes (one sign flip moves probabilities).
    print(f"headline: max |dp| vs float32 reference {worst:.3g}; vs float64 {d64:.3g}")


@pytest.mark.parametrize(
    "size,architecture",
    [
        (64, HEADLINE),
        (160, "NCMNCMNBMNBMNBMNBMNB1A"),
        (64, "CMCMBMBMBMBMB1AS"),
        (96, "NCMNCMNCMNCMNCMNCMNC1A"),
    ],
)
def test_siblings_match_reference(size: int, architecture: str) -> None:
    net = d_series(size, architecture, seed=size)
    _check_against_reference(net, _inputs(net.input_shape, 2, seed=size))


def test_forward_output_is_a_probability_vector_and_a_copy() -> None:
    net = d_series(64, seed=3)
    x = _inputs(net.input_shape, 1, seed=0)[0]
    a = net.forward(x)
    b = net.forward(x)
    assert a.shape == (1000,) and a.dtype == np.float32
    assert abs(float(a.sum()) - 1.0) < 1e-5
    a[:] = 0
    assert b.sum() > 0.99  # the caller's copy is not the engine's buffer


def test_classify_any_frame_size() -> None:
    net = d_series(64, seed=3)
    rng = np.random.default_rng(0)
    for shape in [(480, 640, 3), (100, 60, 3), (50, 50), (30, 40, 4)]:
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        top = net.classify(frame, top_k=5)
        assert len(top) == 5
        assert [p.probability for p in top] == sorted((p.probability for p in top), reverse=True)
        assert top[0].label == net.labels[top[0].index]
        probs = net.predict(frame)
        assert top[0].index == int(np.argmax(probs))


def test_preprocessing_is_ells() -> None:
    """Centre square crop, cv2.resize bilinear, B,G,R, raw 0..255 floats (spec 7.2)."""
    import cv2

    net = d_series(64, seed=3)
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    crop = frame[:, 20:110]
    expected = cv2.resize(crop, (64, 64)).astype(np.float32)
    np.testing.assert_array_equal(net.preprocess(frame), expected)


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 5, 3), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        "x",
    ],
)
def test_bad_frames_are_refused_clearly(frame: object) -> None:
    net = d_series(64, seed=3)
    with pytest.raises(ValueError, match="frame"):
        net.classify(frame)  # type: ignore[arg-type]


def test_wrong_input_shape_is_refused() -> None:
    net = d_series(64, seed=3)
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.zeros((32, 32, 3), np.float32))


def test_shape_mismatch_names_the_layer() -> None:
    inp = InputLayer((8, 8, 3))
    good = BiasLayer((8, 8, 3), bias=np.zeros(3))
    bad = PoolingLayer((4, 4, 5), function="max", size=2, stride=2)
    with pytest.raises(edgebnn.ShapeError, match=r"layer 1 \(PoolingLayer\)"):
        edgebnn.Network(inp, [good, bad])
    with pytest.raises(edgebnn.ShapeError, match="bias"):
        BiasLayer((8, 8, 3), bias=np.zeros(4))


def test_summary_lists_every_layer() -> None:
    net = d_series(256, seed=0)
    text = str(net)
    assert text.count("\n") == 55
    assert "BinaryConvolution: 130x130x16 -> 128x128x64 | input padding 1 output padding 0" in text
    assert "PReLU: 128x128x64 -> 130x130x64" in text


def test_plan_fuses_and_preallocates() -> None:
    net = d_series(64, seed=3)
    x = _inputs(net.input_shape, 1, seed=0)[0]
    net.forward(x)
    buffers = {id(b) for b in net.plan.buffers.values()}
    labels = [s.label for s in net.plan.steps]
    assert any("Pooling+BatchNormalization+Scaling+Bias+Sign" == s for s in labels)
    assert any(s.startswith("BinaryConvolutional+Bias+Activation") for s in labels)
    net.forward(x)
    assert {id(b) for b in net.plan.buffers.values()} == buffers


def test_maxpool_ring_zero_option_runs_the_whole_network() -> None:
    net = d_series(64, seed=3)
    old = edgebnn.Network(net.input_layer, net.layers, maxpool_ring_value=0.0)
    x = _inputs(net.input_shape, 1, seed=2)[0]
    np.testing.assert_allclose(old.forward(x), forward_ref(old, x), atol=TOLERANCE)


def test_input_padding_ring_schemes_fill_once() -> None:
    """LayerBase: the whole output is pre-filled by the scheme, e.g. (row%2) XOR (col%2)."""
    inp = InputLayer((4, 4, 2))
    layer = BiasLayer(
        (6, 6, 2),
        output_padding=Padding(PaddingScheme.ALTERNATING_ZERO_AND_ONES, 1),
        bias=np.zeros(2),
    )
    net = edgebnn.Network(inp, [layer])
    out = net.forward(np.full((4, 4, 2), 7.0, np.float32)).reshape(6, 6, 2)
    r, c = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    ring = np.ones((6, 6), bool)
    ring[1:5, 1:5] = False
    np.testing.assert_array_equal(out[ring][:, 0], ((r % 2) ^ (c % 2))[ring].astype(np.float32))
    assert (out[1:5, 1:5] == 7.0).all()


def test_plan_tensors_are_cache_line_aligned() -> None:
    """Every float buffer, bit buffer and array constant a step reads starts on 64 bytes."""
    from edgebnn.kernels.aligned import is_aligned

    net = d_series(64, seed=3)
    plan = net.plan
    arrays = [*plan.buffers.values(), *plan.bit_buffers.values()]
    arrays += [
        a
        for s in plan.steps
        for a in s.args
        if isinstance(a, np.ndarray) and a.size * a.itemsize >= 64
    ]
    assert arrays
    assert all(is_aligned(a) for a in arrays), [a.shape for a in arrays if not is_aligned(a)]
