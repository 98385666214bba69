"""ELL's own unit-test vectors (tests/data/ell_test_vectors.json), through planned networks.

Every vector's layer is built as a one-layer network whose input tensor is the vector's
full input (ring included), run by the fast engine and by the NumPy reference, and held to
ELL's checks (its own tolerance, or exact) and to the derived full outputs. All 36 layer
vectors and both network vectors run; "double" vectors are computed in float32 (the engine
has no float64 path), so their derived outputs are compared at 1e-5 relative. Not run:
``test_vectors_region_detection.json`` (ELL's RegionDetectionLayer, a YOLO output layer the
engine does not implement: no gallery ImageNet model uses it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
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

#: Transcribed from ELL's unit tests (microsoft/ELL at the commit the file names).
VECTORS = Path(__file__).resolve().parents[2] / "data" / "ell_test_vectors.json"
DATA = json.loads(VECTORS.read_text())
SCHEMES = {
    "zeros": 0,
    "minusOnes": 1,
    "alternatingZeroAndOnes": 2,
    "randomZeroAndOnes": 3,
    "min": 4,
    "max": 5,
}
ACTIVATIONS = {
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "HardSigmoid": "hard_sigmoid",
    "HardTanh": "hard_tanh",
}


def _padding(d: dict) -> Padding:
    return Padding(PaddingScheme(SCHEMES[d["scheme"]]), int(d["size"]))


def _tensor(d: dict) -> np.ndarray:
    return np.array(d["values"], np.float32).reshape(d["shape"])


def _layer(v: dict, in_shape: tuple, in_pad: Padding):
    p = v["params"]
    out = v["output"]
    shape = tuple(out["shape"])
    opad = _padding(out["padding"])
    kind = v["layer"]
    base = {"output_shape": shape, "input_padding": in_pad, "output_padding": opad}
    if kind in ("ActivationFunction", "Activation"):
        name = ACTIVATIONS[p["activation"]]
        alpha = _tensor(p["alpha"]) if "alpha" in p else None
        return ActivationLayer(
            **base, function=name, alpha=alpha, leaky_factor=p.get("leakyFactor", 0.1)
        )
    if kind == "Bias":
        return BiasLayer(**base, bias=p["bias"])
    if kind == "Scaling":
        return ScalingLayer(**base, scales=p["scales"])
    if kind == "BatchNormalization":
        mean = np.array(p["mean"], np.float32)
        var = np.array(p["variance"], np.float32)
        eps = np.float32(p["epsilon"])
        if p["epsilonSummand"] == "SqrtVariance":
            mult = np.float32(1) / (np.sqrt(var) + eps)
        else:
            mult = np.float32(1) / np.sqrt(var + eps)
        return BatchNormalizationLayer(
            **base, multiplication=mult, addition=(-mean * mult).astype(np.float32)
        )
    if kind == "FullyConnected":
        w = np.array(p["weights"]["values"], np.float32).reshape(
            p["weights"]["rows"], p["weights"]["columns"]
        )
        return FullyConnectedLayer(**base, weights=w)
    if kind == "Pooling":
        return PoolingLayer(
            **base, function=p["function"], size=p["poolingSize"], stride=p["stride"]
        )
    if kind == "Softmax":
        return SoftmaxLayer(**base)
    k = p["receptiveField"]
    wshape = p["weights"]["shape"]
    w = np.array(p["weights"]["values"], np.float32).reshape(wshape[0] // k, k, k, wshape[2])
    if kind == "Convolution":
        return ConvolutionalLayer(**base, weights=w, stride=p["stride"])
    if kind == "BinaryConvolution":
        layer = BinaryConvolutionalLayer.from_real_weights(
            w,
            **base,
            stride=p["stride"],
            weights_scale=1 if p["weightsScale"] == "mean" else 0,
            method=1 if p["method"] == "bitwise" else 0,
        )
        archived = p.get("archived_form")
        if archived:
            assert layer.weights_bits.reshape(-1).tolist() == archived["binarizedWeights_values"]
            np.testing.assert_allclose(layer.filter_means, archived["filterMeans"], rtol=1e-7)
        return layer
    raise AssertionError(f"no adapter for {kind}")


LAYER_VECTORS = [v for v in DATA["vectors"] if v["layer"] not in ("LayerBase", "InputLayer")]


@pytest.mark.parametrize("v", LAYER_VECTORS, ids=[v["id"] for v in LAYER_VECTORS])
def test_layer_vector(v: dict) -> None:
    x = _tensor(v["input"]).reshape(
        v["input"]["shape"] if len(v["input"]["shape"]) == 3 else (1, 1, -1)
    )
    in_pad = _padding(v["input"]["padding"])
    inp = InputLayer(x.shape)  # the vector's full tensor, ring values included, as given
    net = Network(inp, [_layer(v, x.shape, in_pad)])
    got = net.forward(x).reshape(v["output"]["shape"])
    want = forward_ref(net, x).reshape(got.shape)
    rtol = 1e-6 if v["layer"] in ("Softmax",) or "Sigmoid" in v["id"] or "Tanh" in v["id"] else 0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    for check in v.get("checks", []) + v.get("padding_checks", []):
        value = got[tuple(check["index"])]
        if check.get("exact"):
            assert value == np.float32(check["expected"]), check
        else:
            tol = check.get("abs_tol", v.get("tolerance", {}).get("abs", 1e-4))
            assert abs(value - check["expected"]) < max(tol, 1e-4), check
    full = v.get("derived_expected") or v.get("expected_full")
    if full:
        expected = np.array(full["values"], np.float64).reshape(full["shape"])
        rel = 1e-5 if v.get("element_type") == "double" else 1e-6
        np.testing.assert_allclose(got, expected, rtol=rel, atol=1e-6)


def test_layer_base_fill_and_input_layer() -> None:
    """LayerBase: alternating fill over the whole 12x12x6 tensor; InputLayer: order, scale, ring."""
    base = next(v for v in DATA["vectors"] if v["layer"] == "LayerBase")
    shape = tuple(base["output"]["shape"])
    layer = BiasLayer(
        shape, output_padding=_padding(base["output"]["padding"]), bias=np.zeros(shape[2])
    )
    net = Network(InputLayer((shape[0] - 2, shape[1] - 2, shape[2])), [layer])
    out = net.forward(np.zeros(net.input_shape, np.float32)).reshape(shape)
    r, c = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    ring = np.ones(shape[:2], bool)
    ring[1:-1, 1:-1] = False
    assert (out[ring] == ((r % 2) ^ (c % 2))[ring][:, None]).all()

    v = next(v for v in DATA["vectors"] if v["layer"] == "InputLayer")
    p = v["params"]
    inp = InputLayer(
        tuple(v["output"]["shape"]),
        output_padding=_padding(v["output"]["padding"]),
        scale=p["scale"],
    )
    net = Network(inp, [])
    assert inp.input_shape == tuple(p["inputShape"])
    got = net.plan.run(np.array(v["input"]["values"], np.float32).reshape(inp.input_shape))
    for check in v["checks"]:
        assert abs(got[tuple(check["index"])] - check["expected"]) < 1e-4


@pytest.mark.parametrize(
    "nv", DATA["network_vectors"], ids=[v["id"] for v in DATA["network_vectors"]]
)
def test_network_vector(nv: dict) -> None:
    """ELL's XOR network (and with its last two layers removed)."""
    layers = []
    n = nv["inputShape"][2]
    specs = nv["layers"][: len(nv["layers"]) - nv.get("removeLastLayers", 0)]
    for spec in specs:
        if spec["type"] == "FullyConnected":
            w = np.array(spec["weights"]["values"], np.float32).reshape(
                spec["weights"]["rows"], spec["weights"]["columns"]
            )
            n = w.shape[0]
            layers.append(FullyConnectedLayer((1, 1, n), weights=w))
        elif spec["type"] == "Bias":
            layers.append(BiasLayer((1, 1, n), bias=spec["bias"]))
        elif spec["type"] == "ReLU":
            layers.append(ActivationLayer((1, 1, n), function="relu"))
    net = Network(InputLayer(tuple(nv["inputShape"])), layers)
    for x, expected in zip(nv["inputs"], nv["expected_outputs"], strict=True):
        got = net.forward(np.array(x, np.float32).reshape(net.input_shape))
        np.testing.assert_allclose(got, expected, atol=nv["tolerance"]["abs"])
