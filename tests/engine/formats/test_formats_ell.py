"""ELL reader and writer: hand-worked fixtures, both dialects, bit-exact round trips, bad files."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edgebnn.engine.d_series import d_series
from edgebnn.engine.formats.ell import read_ell
from edgebnn.engine.formats.ell_json import parse
from edgebnn.engine.formats.ell_writer import write_ell
from edgebnn.engine.layers import (
    ActivationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    FullyConnectedLayer,
    InputLayer,
    Padding,
    PaddingScheme,
    PoolingLayer,
    SoftmaxLayer,
)
from edgebnn.engine.network import Network
from edgebnn.engine.reference import forward_ref

import edgebnn

DATA = Path(__file__).resolve().parents[2] / "data"
SMALL_ARCH = "NCMNBMNBMNC1A"  # stem + 4 binary blocks: the d-series layer mix, fewer weights


def same_parameters(a: Network, b: Network) -> None:
    """Every layer has the same class, shapes, padding and bit-identical arrays."""
    assert len(a.layers) == len(b.layers)
    for la, lb in zip([a.input_layer, *a.layers], [b.input_layer, *b.layers], strict=True):
        assert type(la) is type(lb)
        for name, va in vars(la).items():
            vb = getattr(lb, name)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and va.shape == vb.shape, name
                assert va.tobytes() == vb.tobytes(), name
            elif isinstance(va, float):  # ELL stores float32 scalars (e.g. epsilon)
                assert np.float32(va) == np.float32(vb), name
            elif not name.startswith("_"):
                assert va == vb, name


# -- hand-written fixtures (values worked out by hand from the spec) -----------------------------
def test_tiny_2017_fixture_matches_hand_computed_binary_conv():
    """Spec 2.13(a): Minus then a 3x3 binary conv with 'same' zero padding (masked ring).

    Input: channel 0 = 200 everywhere, channel 1 = 100 except 150 at (0, 0). After the
    Minus (-104.5, -117.3) the signs are ch0 +1 everywhere, ch1 -1 except +1 at (0, 0).
    Filter 0 (262143: all 18 bits set, all +1): ch0 and ch1 cancel except where (0, 0) is
    in the window, which adds 2. Filter 1 (229373: bits 1 and 15 clear, i.e. kernel
    (0,0,ch1) and (2,1,ch1) are -1): out = 2*[(r-1,c-1) inside] + 2*[(r+1,c) inside]
    + 2*[(0,0) in window]*w(1-r, 1-c, ch1); ring positions contribute 0.
    """
    net = read_ell(DATA / "tiny_2017.ell")
    assert net.metadata["ell_dialect"] == "2017"
    assert [type(layer).__name__ for layer in net.layers] == [
        "BiasLayer",
        "BinaryConvolutionalLayer",
    ]
    conv = net.layers[1]
    assert conv.weights_bits.tolist() == [[262143], [229373]]
    assert conv.filter_means.tolist() == [np.float32(2.05556), np.float32(1.61111)]
    assert net.layers[0].bias.tolist() == [np.float32(-104.5), np.float32(-117.3)]
    x = np.zeros((4, 4, 2), np.float32)
    x[:, :, 0], x[:, :, 1], x[0, 0, 1] = 200, 100, 150
    expected0 = [[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    expected1 = [[4, 4, 2, 2], [4, 2, 4, 4], [2, 4, 4, 4], [0, 2, 2, 2]]
    expected = np.stack([expected0, expected1], axis=2).astype(np.float32)
    np.testing.assert_array_equal(forward_ref(net, x).reshape(4, 4, 2), expected)
    np.testing.assert_array_equal(net.forward(x).reshape(4, 4, 2), expected)


def test_tiny_new_fixture_nested_activations_metadata_and_fc():
    """Newer dialect: Map root, layout, nested activations, a trailing comma, \\' and \\/.

    x = [1, -2, 3, -4] (1x2x2). Scaling (2, 0.5) -> [2, -1, 6, -2]; LeakyReLU 0.25 ->
    [2, -0.25, 6, -0.5]; FC rows [1,1,1,1] and [1,0,-1,0] -> [7.25, -4]; bias 0.75 ->
    [8, -3.25]; ReLU -> [8, 0]; softmax -> [1/(1+e^-8), e^-8/(1+e^-8)].
    """
    net = read_ell(DATA / "tiny_new.ell")
    assert net.metadata["ell_dialect"] == "new"
    assert net.metadata["ell_metadata"]["model.name"] == "Bob's tiny net, models/tiny"
    assert [getattr(layer, "function", None) for layer in net.layers] == [
        None, "leaky_relu", None, None, "relu", None]  # fmt: skip
    assert net.layers[1].leaky_factor == 0.25
    # RGB, range [0, 1]: mean 0.5 -> 127.5 and std 0.5 -> 127.5 on the 0..255 scale.
    assert net.preprocessing.channel_order == "rgb"
    assert net.preprocessing.mean == (127.5, 63.75, 31.875)
    assert net.preprocessing.std == (127.5, 127.5, 127.5)
    x = np.array([1, -2, 3, -4], np.float32).reshape(1, 2, 2)
    tensors = forward_ref(net, x, keep=True)
    np.testing.assert_array_equal(tensors[3].reshape(-1), [7.25, -4])
    np.testing.assert_array_equal(tensors[5].reshape(-1), [8, 0])
    e = np.exp(-8.0)
    np.testing.assert_allclose(forward_ref(net, x), [1 / (1 + e), e / (1 + e)], rtol=1e-6)


def test_dialect_quirks_are_accepted():
    doc = parse(b'{"a": [1, 2,], "b": "it\\\'s \\/ \\\\", "c": nan, "d": -inf, "e": {"_type": "X",\n},'
                b' "f": [18446744073709551615, 9007199254740993], "g": "1.output[0:2]"}')  # fmt: skip
    root = doc.root
    assert root["a"] == [1, 2] and root["b"] == "it's / \\" and root["g"] == "1.output[0:2]"
    assert np.isnan(root["c"]) and root["d"] == -np.inf and root["e"] == {"_type": "X"}
    assert doc.integers(root["f"]).tolist() == [2**64 - 1, 2**53 + 1]


def test_long_arrays_are_parsed_lazily_and_exactly():
    words = [2**64 - 1, 2**63 + 12345, 2**53 + 1] * 40
    floats = [1e-05, -3.40282e38, 0.0123457] * 40
    text = json.dumps({"w": words, "f": floats}).encode()
    doc = parse(text)
    assert doc.spans  # both arrays went around json
    assert doc.integers(doc.root["w"]).tolist() == words
    np.testing.assert_array_equal(doc.floats(doc.root["f"]).astype(np.float32), np.float32(floats))


# -- round trips through the writer: both dialects, zipped and not, bit-exact ---------------------
@pytest.fixture(scope="module")
def small_net() -> Network:
    return d_series(64, SMALL_ARCH, seed=3)


@pytest.mark.parametrize("suffix", [".ell", ".ell.zip"])
@pytest.mark.parametrize("dialect", ["2017", "new"])
def test_round_trip_bit_exact(tmp_path, small_net, dialect, suffix):
    path = write_ell(small_net, tmp_path / f"{small_net.name}{suffix}", dialect=dialect)
    loaded = edgebnn.load(path)
    assert loaded.metadata["ell_dialect"] == dialect
    assert loaded.name == small_net.name
    same_parameters(small_net, loaded)
    big = [w for layer in small_net.layers if isinstance(layer, BinaryConvolutionalLayer)
           for w in layer.weights_bits.reshape(-1).tolist() if w > 2**53]  # fmt: skip
    assert big, "the test needs uint64 words beyond 2**53"
    x = np.random.default_rng(1).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(forward_ref(loaded, x), forward_ref(small_net, x))


def test_headline_architecture_round_trip_with_the_engine(tmp_path):
    """The 55-layer headline network (at 64x64), zipped 2017 file, run by the engine itself."""
    net = d_series(64)
    loaded = edgebnn.load(write_ell(net, tmp_path / "d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A.ell.zip"))
    assert len(loaded.layers) == 55
    assert loaded.summary().splitlines()[1:] == net.summary().splitlines()[1:]
    x = np.random.default_rng(2).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))


def test_six_digit_2017_floats_read_as_ell_reads_them(tmp_path, small_net):
    """ELL 2017 printed 6 significant digits; a value is read as float32(float(token))."""
    loaded = read_ell(write_ell(small_net, tmp_path / "six.ell", digits=6))
    for original, layer in zip(small_net.layers, loaded.layers, strict=True):
        if isinstance(layer, BiasLayer):
            expected = np.array([float(f"{v:g}") for v in original.bias.tolist()]).astype(
                np.float32
            )
            np.testing.assert_array_equal(layer.bias, expected)


def mixed_network() -> Network:
    """Every other layer kind the reader supports: FC, depthwise conv, mean-scaled binary
    conv, mean pooling, and all activation functions."""
    rng = np.random.default_rng(5)
    layers = [
        ConvolutionalLayer((6, 6, 4), weights=rng.normal(size=(4, 3, 3, 4))),
        ActivationLayer((6, 6, 4), function="sigmoid"),
        ConvolutionalLayer((6, 6, 4), weights=rng.normal(size=(4, 1, 1, 1))),  # depthwise
        ActivationLayer((6, 6, 4), function="tanh"),
        ActivationLayer((6, 6, 4), function="hard_sigmoid"),
        ActivationLayer((6, 6, 4), function="leaky_relu", leaky_factor=0.2),
        ActivationLayer(
            (8, 8, 4), output_padding=Padding(PaddingScheme.ZEROS, 1), function="hard_tanh"
        ),
        BinaryConvolutionalLayer.from_real_weights(
            rng.normal(size=(5, 3, 3, 4)),
            output_shape=(6, 6, 5),
            input_padding=Padding(PaddingScheme.ZEROS, 1),
            weights_scale=1,
        ),
        ActivationLayer((6, 6, 5), function="prelu", alpha=rng.uniform(0, 0.3, (6, 6, 5))),
        PoolingLayer((3, 3, 5), function="mean", size=2, stride=2),
        FullyConnectedLayer((10, 1, 1), weights=rng.normal(size=(10, 45))),
        SoftmaxLayer((10, 1, 1)),
    ]
    return Network(InputLayer((8, 8, 4)), layers, name="mixed")


@pytest.mark.parametrize("dialect", ["2017", "new"])
def test_every_layer_kind_round_trips(tmp_path, dialect):
    net = mixed_network()
    loaded = read_ell(write_ell(net, tmp_path / "mixed.ell", dialect=dialect))
    same_parameters(net, loaded)
    x = np.random.default_rng(0).normal(size=(8, 8, 4)).astype(np.float32)
    np.testing.assert_array_equal(forward_ref(loaded, x), forward_ref(net, x))


# -- bad files: one ModelError naming the file, the layer and the field ---------------------------
def tiny_doc() -> dict:
    return parse((DATA / "tiny_2017.ell").read_bytes()).root


def write_doc(tmp_path: Path, doc: dict, name: str = "bad.ell") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def layers_of(doc: dict) -> list[dict]:
    return doc["model"]["nodes"][1]["predictor"]["layers"]


BAD_LAYERS = {
    "unknown-type": (1, "_type", lambda ls: ls[1].update(_type="RegionDetectionLayer<float>")),
    "missing-field": (1, "stride", lambda ls: ls[1].pop("stride")),
    "wrong-weight-count": (1, "binarizedWeights_values", lambda ls: ls[1].update(binarizedWeights_values=[1])),
    "wrong-bias-count": (0, "bias", lambda ls: ls[0].update(bias=[1.0, 2.0, 3.0])),
    "string-for-int": (1, "stride", lambda ls: ls[1].update(stride="1")),
    "word-beyond-uint64": (1, "binarizedWeights_values", lambda ls: ls[1].update(binarizedWeights_values=[2**64, 1])),
    "negative-word": (1, "binarizedWeights_values", lambda ls: ls[1].update(binarizedWeights_values=[-1, 1])),
    "float-word": (1, "binarizedWeights_values", lambda ls: ls[1].update(binarizedWeights_values=[1.5, 1])),
    "unused-bits-set": (1, "binarizedWeights_values", lambda ls: ls[1].update(binarizedWeights_values=[262143 | 1 << 40, 1])),
    "shape-chain": (1, "outputShape", lambda ls: ls[1].update(outputShape=[5, 5, 2])),
    "padding-size": (1, "inputPaddingSize", lambda ls: ls[1].update(inputPaddingSize=0)),
    "padding-scheme": (1, "inputPaddingScheme", lambda ls: ls[1].update(inputPaddingScheme=4)),
    "bad-shape": (0, "outputShape", lambda ls: ls[0].update(outputShape=[6, 6])),
    "huge-float": (0, "bias", lambda ls: ls[0].update(bias=[1e39, 0.0])),
    "float-layer-type": (0, "_type", lambda ls: ls[0].update(_type="BiasLayer<double>")),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_LAYERS))
def test_bad_layer_names_layer_and_field(tmp_path, case):
    index, field, mutate = BAD_LAYERS[case]
    doc = copy.deepcopy(tiny_doc())
    mutate(layers_of(doc))
    path = write_doc(tmp_path, doc)
    with pytest.raises(edgebnn.ModelError) as info:
        edgebnn.load(path)
    err = info.value
    assert (err.layer, err.field) == (index, field)
    assert err.layer_type == layers_of(doc)[index]["_type"]
    assert str(path) in str(err) and f"layer {index}" in str(err) and repr(field) in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("token,field", [("nan", "bias"), ("inf", "bias"), ("-inf", "bias")])
def test_non_finite_weights(tmp_path, token, field):
    text = (DATA / "tiny_2017.ell").read_text().replace("-117.3]", f"{token}]")
    path = tmp_path / "nan.ell"
    path.write_text(text)
    with pytest.raises(edgebnn.ModelError, match="NaN/inf") as info:
        read_ell(path)
    assert (info.value.layer, info.value.field) == (0, field)


def test_non_finite_weight_in_a_long_array(tmp_path, small_net):
    """The lazily parsed arrays are checked too (here the PReLU alpha of layer 10)."""
    net = d_series(64, SMALL_ARCH, seed=3)
    net.layers[10].alpha[3, 4, 5] = np.inf
    path = write_ell(net, tmp_path / "inf.ell")
    with pytest.raises(edgebnn.ModelError, match="NaN/inf") as info:
        read_ell(path)
    assert (info.value.layer, info.value.field) == (10, "alpha_values")
    assert info.value.layer_type == "ActivationLayer<float,ParametricReLUActivation>"


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def bad_container_cases() -> dict[str, tuple[str, bytes, str]]:
    good = (DATA / "tiny_2017.ell").read_bytes()
    zipped = zip_bytes({"tiny.ell": good})
    return {
        "truncated-zip": ("m.ell.zip", zipped[: len(zipped) // 2], "zip"),
        "not-a-zip": ("m.ell.zip", b"<html>404 Not Found</html>", "not a zip"),
        "zip-without-ell": ("m.ell.zip", zip_bytes({"readme.txt": b"hi"}), "no .ell member"),
        "invalid-json": ("m.ell", good[:-40], "invalid JSON"),
        "garbage-json": ("m.ell", b'{"_type": "DynamicMap", "model": [1, 2', "invalid JSON"),
        "wrong-root": ("m.ell", b'{"_type": "Model", "nodes": []}', "root _type"),
        "no-predictor": ("m.ell", b'{"_type": "Map", "model": {"_type": "Model", "nodes": []}}', "NeuralNetworkPredictorNode"),
        "deep-nesting": ("m.ell", b"[" * 100000 + b"]" * 100000, "invalid JSON"),
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(bad_container_cases()))
def test_bad_containers_and_json(tmp_path, case):
    name, data, message = bad_container_cases()[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(edgebnn.ModelError, match=message) as info:
        edgebnn.load(path)
    assert str(path) in str(info.value)


def test_zip_member_is_found_and_named(tmp_path):
    data = zip_bytes(
        {"docs/readme.txt": b"x", "d_I4x4x3Foo.ell": (DATA / "tiny_2017.ell").read_bytes()}
    )
    path = tmp_path / "download.zip"
    path.write_bytes(data)
    assert edgebnn.load(path).name == "d_I4x4x3Foo"


HUGE = "7" * 5000


@pytest.mark.parametrize(
    "old,new,field",
    [
        ('"stride": 1', f'"stride": {HUGE}', "stride"),  # a scalar field
        ('"binarizedWeights_numVectors": 2', f'"binarizedWeights_numVectors": -{HUGE}',
         "binarizedWeights_numVectors"),
        ("[262143, 229373]", f"[262143, {HUGE}]", "binarizedWeights_values"),  # words
        ("-117.3]", f"-{HUGE}]", "bias"),  # an array of floats
        ("[-104.5, -117.3]", f"[-104.5, -117.3, {HUGE}]", "bias"),
    ],
)  # fmt: skip
def test_integer_literal_beyond_pythons_limit_names_the_field(tmp_path, old, new, field):
    """Python refuses to convert integers of more than 4300 digits; the reader says where."""
    text = (DATA / "tiny_2017.ell").read_text()
    assert old in text
    path = tmp_path / "huge.ell"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(edgebnn.ModelError) as info:
        read_ell(path)
    assert info.value.field == field
    assert "\n" not in str(info.value) and len(str(info.value)) < 300
