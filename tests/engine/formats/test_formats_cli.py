"""``edgebnn models info/convert/export``: listings, conversions and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from edgebnn.engine.reference import forward_ref

import edgebnn
from edgebnn.cli import main

DATA = Path(__file__).resolve().parents[2] / "data"


def test_export_info_convert(tmp_path, capsys):
    ell = tmp_path / "d_I64x64x3NCMNBMNBMNC1A.ell.zip"
    assert main(["models", "export", "--ell", str(ell), "--size", "64", "--arch", "NCMNBMNBMNC1A",
                 "--dialect", "new", "--seed", "4"]) == 0  # fmt: skip
    assert "new dialect" in capsys.readouterr().out
    assert main(["models", "info", str(ell)]) == 0
    out = capsys.readouterr().out
    assert "BinaryConvolution: 34x34x16 -> 32x32x64" in out and "ELL new dialect" in out
    assert (
        "parameters:" in out
        and "packed size:" in out
        and "load time:" in out
        and "peak RSS during the load:" in out
    )
    native = tmp_path / "model.ebnn"
    assert main(["models", "convert", str(ell), str(native)]) == 0
    assert "the native file in" in capsys.readouterr().out
    assert main(["models", "info", str(native)]) == 0
    assert "native (converted from ELL new dialect)" in capsys.readouterr().out
    a, b = edgebnn.load(ell), edgebnn.load(native)
    x = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(forward_ref(a, x), forward_ref(b, x))
    assert b.source_sha256 == a.source_sha256


def test_bad_file_is_one_line_and_exit_1(tmp_path, capsys):
    doc = (DATA / "tiny_2017.ell").read_text().replace('"stride": 1,', '"stride": -2,')
    bad = tmp_path / "bad.ell"
    bad.write_text(doc)
    assert main(["models", "info", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"edgebnn: error: {bad}: layer 1 (BinaryConvolutionalLayer<float>): field 'stride': "
                   "value -2 is outside [1, 4096]")  # fmt: skip


def test_export_refuses_an_unknown_architecture(tmp_path, capsys):
    assert (
        main(
            ["models", "export", "--ell", str(tmp_path / "x.ell"), "--arch", "QQQ", "--size", "64"]
        )
        == 1
    )
    assert "unsupported architecture" in capsys.readouterr().err


def test_convert_keeps_the_random_seed_metadata(tmp_path, capsys):
    out = tmp_path / "r.ebnn"
    assert main(["models", "convert", "random:d_I64x64x3NCMNBMNBMNC1A", str(out)]) == 0
    capsys.readouterr()
    with np.load(out, allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
    assert header["metadata"] == {"random_seed": 0} and header["name"] == "d_I64x64x3NCMNBMNBMNC1A"


def test_convert_refuses_a_tflite_model_in_one_line(tmp_path, capsys):
    model = DATA / "larq" / "bconv_relu.tflite"
    out = tmp_path / "m.ebnn"
    assert main(["models", "convert", str(model), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"edgebnn: error: {model}: a .tflite model has no native form; edgebnn runs the .tflite file as it is"
    )
    assert not out.exists()
