"""Convert a pretrained Larq Zoo model to a ``.tflite`` file that edgebnn runs.

On a workstation (x86-64 or aarch64 Linux/macOS, Python 3.11, network access for the
weights)::

    python3.11 -m venv lce && . lce/bin/activate
    pip install tensorflow-cpu==2.16.2 larq==0.14.0 larq-compute-engine==0.16.0 \
        numpy==1.26.4 protobuf==4.25.9 click typeguard
    pip install --no-deps tf-keras==2.16.0 larq-zoo==2.4.0 zookeeper==1.4.0
    TF_USE_LEGACY_KERAS=1 python convert_zoo_model.py QuickNet quicknet.tflite

Then copy ``quicknet.tflite`` to the Pi and run it with edgebnn (no TensorFlow there)::

    edgebnn models info quicknet.tflite
    edgebnn bench --model quicknet.tflite

Names: QuickNetSmall, QuickNet, QuickNetLarge (``larq_zoo.sota``), BiRealNet,
BinaryResNetE18, BinaryDenseNet28/37/45, RealToBinaryNet, XNORNet, DoReFaNet, ...
(``larq_zoo.literature``). ``--check image.jpg`` also prints LCE's top-5 for an image,
preprocessed the Larq Zoo way, to compare with ``edgebnn`` on the Pi.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _stub_tensorflow_datasets() -> None:
    """larq_zoo imports tensorflow_datasets (through zookeeper) for training helpers only."""
    if "tensorflow_datasets" in sys.modules:
        return
    try:
        import tensorflow_datasets  # noqa: F401

        return
    except ImportError:
        pass
    tfds = types.ModuleType("tensorflow_datasets")
    tfds.decode = types.SimpleNamespace(  # type: ignore[attr-defined]
        Decoder=type("Decoder", (), {}), SkipDecoding=lambda: None
    )
    tfds.core = types.SimpleNamespace(  # type: ignore[attr-defined]
        DatasetInfo=type("DatasetInfo", (), {}), DatasetBuilder=type("DatasetBuilder", (), {})
    )
    tfds.Split = types.SimpleNamespace(TRAIN="train", VALIDATION="validation", TEST="test")  # type: ignore[attr-defined]
    sys.modules["tensorflow_datasets"] = tfds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="Larq Zoo class name, e.g. QuickNet")
    parser.add_argument("output", help="the .tflite file to write")
    parser.add_argument("--size", type=int, default=224, help="input rows = cols (default 224)")
    parser.add_argument("--check", metavar="IMAGE", help="print LCE's top-5 for this image")
    args = parser.parse_args()

    _stub_tensorflow_datasets()
    import larq_compute_engine as lce
    import larq_zoo as lqz

    build = getattr(lqz.sota, args.model, None) or getattr(lqz.literature, args.model, None)
    if build is None:
        parser.error(f"no Larq Zoo model named {args.model}")
    model = build(weights="imagenet", input_shape=(args.size, args.size, 3))
    flatbuffer = lce.convert_keras_model(model)
    with open(args.output, "wb") as f:
        f.write(flatbuffer)
    print(f"wrote {args.output} ({len(flatbuffer) / 1e6:.1f} MB)")
    if args.check:
        import numpy as np
        import tensorflow as tf

        image = tf.io.decode_image(tf.io.read_file(args.check), channels=3).numpy()
        x = lqz.preprocess_input(image)[None]
        p = lce.testing.Interpreter(flatbuffer).predict(x).reshape(-1)
        for i in np.argsort(-p)[:5]:
            print(f"{i:4d} {p[i]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
