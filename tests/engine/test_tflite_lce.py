"""LCE-converted Larq models against LCE's own interpreter (outputs stored by
``tools/larq/generate_test_models.py``): same top-5, max |Δp| ≤ 1e-4 (or 3x LCE's own
XNNPACK-vs-default disagreement where that is larger); binary-only models bit-exact."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from edgebnn.engine.errors import ModelError

import edgebnn

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "larq"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
MODELS = sorted(k for k, v in MANIFEST.items() if "input_shape" in v)
#: Models whose output comes straight from binary ops: LCE's integers, compared bit for bit.
BINARY_OPS = {"LceQuantize", "LceBconv2d", "LceDequantize", "LceBMaxPool2d"}
EXACT = [m for m in MODELS if set(MANIFEST[m]["ops"]) <= BINARY_OPS]
KERNEL_SETS = ("default", "xnnpack", "indirect_bgemm")


def _generator():
    spec = importlib.util.spec_from_file_location(
        "generate_test_models", ROOT / "tools" / "larq" / "generate_test_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # numpy only at import; TensorFlow only inside functions
    return module


make_input = _generator().make_input


def _inputs(name: str):
    entry = MANIFEST[name]
    stored = np.load(DATA / f"{name}.npz")
    for i in range(sum(1 for k in stored.files if k.startswith("input_sha256_"))):
        x = make_input(tuple(entry["input_shape"]), entry["seed"] + i)
        assert hashlib.sha256(x.tobytes()).digest() == stored[f"input_sha256_{i}"].tobytes()
        yield x, {k: stored[f"{k}_{i}"] for k in KERNEL_SETS}


@pytest.fixture(scope="module")
def networks():
    return {}


def _net(networks, name):
    if name not in networks:
        networks[name] = edgebnn.load(DATA / f"{name}.tflite")
    return networks[name]


@pytest.mark.parametrize("name", MODELS)
def test_matches_lce_interpreter(name: str, networks) -> None:
    net = _net(networks, name)
    disagreement = MANIFEST[name]["xnnpack_vs_default"]
    tolerance = max(1e-4, 3 * disagreement)
    for x, lce in _inputs(name):
        y = net.forward(x)
        assert y.shape == lce["default"].shape
        for kernels in KERNEL_SETS:
            assert np.abs(y - lce[kernels]).max() <= tolerance, kernels
        if y.size >= 5 and disagreement == 0 or y.size >= 5 and np.isclose(y.sum(), 1.0):
            top = np.argsort(-y, kind="stable")[:5]
            ref = np.argsort(-lce["default"], kind="stable")[:5]
            assert top.tolist() == ref.tolist() or np.allclose(
                y[top], lce["default"][ref], atol=tolerance
            )


@pytest.mark.parametrize("name", EXACT)
def test_binary_models_are_bit_exact(name: str, networks) -> None:
    net = _net(networks, name)
    for x, lce in _inputs(name):
        y = net.forward(x)
        for kernels in KERNEL_SETS:
            np.testing.assert_array_equal(y, lce[kernels])


@pytest.mark.parametrize("name", ["quicknet_small", "bitpacked_chain_zero", "float_ops"])
def test_frame_regions_compute_what_the_steps_compute(name: str, networks) -> None:
    """A frame runs consecutive kernel steps as one parallel region of tasks; operator by
    operator (what the benchmark's breakdown times) gives the same output, bit for bit."""
    x, _ = next(_inputs(name))
    y = _net(networks, name).forward(x)
    other = edgebnn.load(DATA / f"{name}.tflite")  # buffers of its own
    values = other.run_all(np.zeros_like(x))
    values[other.graph.inputs[0]] = x
    for step in other.steps:
        step.run(values)
    np.testing.assert_array_equal(np.asarray(values[other.graph.outputs[0]]).reshape(-1), y)


def test_outputs_spread_over_classes() -> None:
    """The calibration worked: the Zoo models' answers are not one saturated class."""
    for name in MODELS:
        if not name.startswith(("quicknet", "birealnet", "binary_")):
            continue
        p = np.load(DATA / f"{name}.npz")["default_0"]
        if p.size == 1000:
            assert p.max() < 0.5 and (p > 1e-3).sum() > 20, name


def test_forward_takes_hwc_without_batch_axis() -> None:
    net = edgebnn.load(DATA / "bmaxpool_mean.tflite")
    assert net.input_shape == (17, 16, 32)
    x = make_input(net.input_shape, 1)
    flat = net.forward(x.reshape(-1))
    np.testing.assert_array_equal(flat, net.forward(x))
    with pytest.raises(ValueError, match="input must have shape"):
        net.forward(x[None])
    rgb = edgebnn.load(DATA / "float_ops.tflite")
    top = rgb.classify(np.full((40, 30, 3), 200, np.uint8), top_k=3)
    assert [p.label for p in top] == [f"class {p.index}" for p in top] and len(top) == 3


def test_unsupported_operator_is_named_with_its_index() -> None:
    with pytest.raises(ModelError) as err:
        edgebnn.load(DATA / "unsupported_sin.tflite")
    assert "SIN" in str(err.value) and "layer 1" in str(err.value)
    assert err.value.layer == 1 and err.value.layer_type == "SIN"


def test_int8_quantized_tensors_are_refused_by_name() -> None:
    with pytest.raises(ModelError, match=r"tensor '.*' is int8-quantized"):
        edgebnn.load(DATA / "int8_quantized.tflite")


@pytest.mark.parametrize("cut", [0, 3, 7, 8, 16, 100, 1000, 4000, -100, -1])
def test_truncated_file_is_a_model_error(tmp_path: Path, cut: int) -> None:
    data = (DATA / "bitpacked_chain_one.tflite").read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelError):
        edgebnn.load(path)


def test_corrupt_bytes_give_model_error_or_a_model(tmp_path: Path) -> None:
    """Random byte flips: a ModelError or a loadable model, never another exception."""
    data = bytearray((DATA / "bmaxpool_mean.tflite").read_bytes())
    rng = np.random.default_rng(0)
    errors = 0
    for trial in range(60):
        corrupt = bytearray(data)
        for pos in rng.integers(8, len(data), size=4):
            corrupt[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"c{trial}.tflite"
        path.write_bytes(bytes(corrupt))
        try:
            edgebnn.load(path)
        except ModelError:
            errors += 1
    assert errors > 0


def test_not_a_tflite_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TFLite file"):
        edgebnn.load(path)
