"""A .tflite model in the daemon: preprocessing and labels from the config."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_support import free_endpoint
from edgebnn.daemon.config import ConfigError, config_from_dict, parse_config
from edgebnn.engine.errors import ModelError

import edgebnn

DATA = Path(__file__).resolve().parents[1] / "data" / "larq"
MODEL = DATA / "float_ops.tflite"  # 31x29x3 input, 10 classes


def _config(tmp_path: Path, **extra):
    data = {
        "model": str(MODEL),
        "cameras": [{"name": "stills", "source": str(tmp_path / "images"), "max_fps": 40}],
        "publish": {"endpoints": [free_endpoint()]},
        "stats": {"interval": 0.5, "status_interval": 0.5},
        **extra,
    }
    return config_from_dict(data, base_dir=tmp_path)


def test_config_sets_preprocessing_and_labels(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.txt").write_text("".join(f"thing {i}\n" for i in range(10)) + "\n")
    config = _config(
        tmp_path,
        preprocessing={
            "channel_order": "bgr",
            "scale": 0.5,
            "resize": "stretch",
            "crop_fraction": 0.5,
        },
        labels="labels.txt",
    )
    net = config.model_options.apply(edgebnn.load(MODEL))
    assert net.labels == [f"thing {i}" for i in range(10)]
    pre = net.preprocessing
    assert (pre.channel_order, pre.resize, pre.crop_fraction) == ("bgr", "stretch", 0.5)
    assert pre.std == (2.0, 2.0, 2.0)
    assert pre.mean == (123.675, 116.28, 103.53)  # unset keys keep the model's own
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[10:30, 20:60] = (10, 20, 30)  # the centre half of each side, stretched
    x = net.preprocess(frame)
    assert x.shape == (31, 29, 3)
    np.testing.assert_allclose(x[15, 14], (np.array([10, 20, 30]) - pre.mean) / 2.0, rtol=1e-5)
    top = net.classify(frame, top_k=2)
    assert top[0].label == f"thing {top[0].index}"


def test_labels_that_do_not_fit_the_model_are_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.txt").write_text("a\nb\n")
    config = _config(tmp_path, labels="labels.txt")
    with pytest.raises(ModelError, match="2 labels, the model 10 outputs"):
        config.model_options.apply(edgebnn.load(MODEL))


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("preprocessing: {mean: [1, 2]}\n", "preprocessing.mean", ["3 numbers"]),
        ("preprocessing: {std: [1, 0, 1]}\n", "preprocessing.std", ["std > 0"]),
        ("preprocessing: {scale: -1}\n", "preprocessing.scale", ["> 0"]),
        ("preprocessing: {scale: 2, std: [1, 1, 1]}\n", "preprocessing.scale", ["not both"]),
        ("preprocessing: {channel_order: grb}\n", "preprocessing.channel_order", ["rgb"]),
        ("preprocessing: {resize: pad}\n", "preprocessing.resize", ["crop"]),
        ("preprocessing: {crop_fraction: 0}\n", "preprocessing.crop_fraction", ["(0, 1]"]),
        ("preprocessing: {crop: 1}\n", "preprocessing.crop", ["unknown key"]),
        ("labels: absent.txt\n", "labels", ["cannot read"]),
        ("labels: [a, b]\n", "labels", ["path of a text file"]),
    ],
)
def test_bad_options_are_config_errors(tmp_path: Path, text: str, key: str, words) -> None:
    (tmp_path / "images").mkdir()
    document = f"model: {MODEL}\ncameras:\n  - name: c\n    source: images\n" + text
    with pytest.raises(ConfigError) as info:
        parse_config(document, base_dir=tmp_path, filename="edgebnn.yaml")
    issue = next(i for i in info.value.issues if i.key == key)
    for word in words:
        assert word in issue.message


def test_daemon_publishes_tflite_predictions_with_config_labels(
    tmp_path: Path, start_daemon, recorder
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(images / "a.png"), frame)
    (tmp_path / "labels.txt").write_text("".join(f"thing {i}\n" for i in range(10)))
    config = _config(tmp_path, labels="labels.txt", predictions={"top_k": 3})
    rec = recorder(config.publish.endpoints[0])
    running = start_daemon(config)
    running.wait_ready()
    assert rec.wait_for(lambda r: len(r.of("predictions/stills/")) >= 2)
    assert running.stop() == 0
    net = config.model_options.apply(edgebnn.load(MODEL))
    probs = net.predict(cv2.imread(str(images / "a.png")))
    best = np.argsort(-probs, kind="stable")[:3]
    for p in rec.of("predictions/stills/"):
        assert [t["index"] for t in p["top"]] == [int(i) for i in best]
        assert [t["label"] for t in p["top"]] == [f"thing {i}" for i in best]
        assert p["model"] == "float_ops.tflite"
