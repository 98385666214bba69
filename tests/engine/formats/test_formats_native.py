"""The native format: bit-exact round trips, no pickle, provenance, tampered files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from edgebnn.engine.d_series import d_series
from edgebnn.engine.formats.ell_writer import write_ell
from edgebnn.engine.formats.native import HEADER, read_native, write_native
from edgebnn.engine.network import Preprocessing
from edgebnn.engine.reference import forward_ref
from test_formats_ell import SMALL_ARCH, mixed_network, same_parameters

import edgebnn


@pytest.fixture(scope="module")
def native_file(tmp_path_factory) -> tuple[Path, edgebnn.Network]:
    net = d_series(64, SMALL_ARCH, seed=7)
    path = write_native(net, tmp_path_factory.mktemp("native") / "small.ebnn")
    return path, net


def rewrite(src: Path, dst: Path, edit_header=None, edit_arrays=None) -> Path:
    """Copy a native file, editing its header dict and/or its arrays."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop(HEADER).tobytes())
    if edit_header:
        edit_header(header)
    if edit_arrays:
        edit_arrays(arrays)
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with dst.open("wb") as stream:
        np.savez(stream, **arrays)
    return dst


def test_round_trip_is_bit_exact(native_file):
    path, net = native_file
    loaded = edgebnn.load(path)
    same_parameters(net, loaded)
    assert loaded.labels == net.labels and loaded.name == net.name
    x = np.random.default_rng(3).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))


def test_file_is_a_pickle_free_npz_with_a_json_header(native_file):
    path, _ = native_file
    with zipfile.ZipFile(path) as archive:
        assert f"{HEADER}.npy" in archive.namelist()
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz[HEADER].tobytes())
        words = [npz[name] for name in npz.files if npz[name].dtype == np.uint64]
    assert header["format"] == "edgebnn-native" and header["version"] == 1
    assert len(header["labels"]) == 1000 and len(header["labels_sha256"]) == 64
    assert [n["type"] for n in header["nodes"]][:3] == [
        "InputLayer",
        "BiasLayer",
        "ConvolutionalLayer",
    ]
    assert words and all(w.ndim == 2 for w in words)  # binary weights stay packed uint64 words


def test_provenance_and_settings_survive_conversion(tmp_path):
    net = mixed_network()
    net.preprocessing = Preprocessing(
        channel_order="rgb", mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0)
    )
    net.maxpool_ring_value = 0.0
    net.labels = [f"thing {i}" for i in range(10)]
    ell = write_ell(mixed_network(), tmp_path / "mixed.ell.zip", dialect="new")
    from_ell = edgebnn.load(ell)
    converted = read_native(write_native(from_ell, tmp_path / "from_ell.ebnn"))
    assert converted.source_sha256 == from_ell.source_sha256 is not None
    assert converted.metadata["ell_dialect"] == "new"
    loaded = read_native(write_native(net, tmp_path / "mixed.ebnn"))
    assert loaded.preprocessing == net.preprocessing
    assert loaded.maxpool_ring_value == 0.0 and loaded.labels == net.labels
    x = np.random.default_rng(0).normal(size=(8, 8, 4)).astype(np.float32)
    np.testing.assert_array_equal(forward_ref(loaded, x), forward_ref(net, x))


def _drop_last_label(h):
    h["labels"][-1] = "tampered"


def _bad_version(h):
    h["version"] = 99


def _unknown_type(h):
    h["nodes"][2]["type"] = "Mystery"


def _bad_shape(h):
    h["nodes"][2]["output_shape"] = [60, 60, 16]


def _unknown_param(h):
    h["nodes"][3]["params"]["strides"] = 2


def _float_bits(arrays):
    key = next(k for k, v in arrays.items() if v.dtype == np.uint64)
    arrays[key] = arrays[key].astype(np.float32)


def _nan_weight(arrays):
    arrays["a1"] = arrays["a1"].copy()
    arrays["a1"].reshape(-1)[0] = np.nan


def _object_array(arrays):
    arrays["a1"] = np.array([{"x": 1}], dtype=object)


TAMPERED = {
    "labels-hash": ({"edit_header": _drop_last_label}, "labels_sha256"),
    "version": ({"edit_header": _bad_version}, "version"),
    "unknown-type": ({"edit_header": _unknown_type}, "type"),
    "shape-chain": ({"edit_header": _bad_shape}, "output_shape"),
    "unknown-param": ({"edit_header": _unknown_param}, "strides"),
    "float-bits": ({"edit_arrays": _float_bits}, "weights_bits"),
    "nan-weight": ({"edit_arrays": _nan_weight}, "weights"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_files_raise_model_error(tmp_path, native_file, case):
    edits, field = TAMPERED[case]
    bad = rewrite(native_file[0], tmp_path / "bad.ebnn", **edits)
    with pytest.raises(edgebnn.ModelError) as info:
        edgebnn.load(bad)
    assert info.value.field == field and str(bad) in str(info.value)


def test_pickled_arrays_are_refused(tmp_path, native_file):
    bad = tmp_path / "pickled.ebnn"
    with np.load(native_file[0], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    _object_array(arrays)
    with bad.open("wb") as stream:
        np.savez(stream, **arrays)
    with pytest.raises(edgebnn.ModelError, match="not a readable native model file"):
        read_native(bad)


def test_unknown_files_are_refused(tmp_path):
    for name, data in {
        "x.ebnn": b"hello",
        "x.bin": b"\x00\x01",
        "y.zip": b"PK\x03\x04broken",
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(edgebnn.ModelError):
            edgebnn.load(path)
