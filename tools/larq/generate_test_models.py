"""Build Larq models with random calibrated weights, convert them with LCE, store LCE's answers.

Writes ``tests/data/larq/<name>.tflite`` and ``<name>.npz`` (LCE interpreter outputs for the
inputs of :func:`make_input`: default kernels, XNNPACK, and the indirect BGEMM kernels) plus
``manifest.json`` (operators per model, versions). The tests read these files, so CI needs
no TensorFlow. Run it in a Python 3.11 environment with::

    pip install tensorflow-cpu==2.16.2 larq==0.14.0 larq-compute-engine==0.16.0 \
        numpy==1.26.4 protobuf==4.25.9 click typeguard
    pip install --no-deps tf-keras==2.16.0 larq-zoo==2.4.0 zookeeper==1.4.0
    TF_USE_LEGACY_KERAS=1 python tools/larq/generate_test_models.py [--only NAME ...]

Weights are random; every BatchNormalization gets the mean/variance of its own input on a
few calibration images (in network order) and a random scale (negative for some channels in
the small models, which exercises LCE's filter flipping for bitpacked output), and the
classifier is rescaled so logits have a standard deviation of about 2: outputs spread over
many classes instead of saturating the softmax.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "larq"
INPUTS_PER_MODEL = 2


def make_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A deterministic test input (NumPy's legacy RandomState stream never changes).

    Smooth structure plus noise in [-1, 1], with exact zeros and negative zeros sprinkled
    in (LCE binarizes 0 and -0 to +1)."""
    rng = np.random.RandomState(seed)
    rows, cols, chans = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    phase = rng.uniform(0, 6.283, size=(chans, 2))
    smooth = np.stack([np.sin(3 * yy + p[0]) * np.cos(2 * xx + p[1]) for p in phase], axis=-1)
    x = 0.6 * smooth + 0.4 * rng.uniform(-1, 1, size=shape)
    x = x.astype(np.float32)
    flat = x.reshape(-1)
    flat[::11] = 0.0
    flat[5::13] = -0.0
    return x


def _stub_tensorflow_datasets() -> None:
    """larq_zoo imports tensorflow_datasets (through zookeeper) for training helpers only."""
    if "tensorflow_datasets" in sys.modules:
        return
    tfds = types.ModuleType("tensorflow_datasets")
    tfds.decode = types.SimpleNamespace(Decoder=type("Decoder", (), {}))
    tfds.core = types.SimpleNamespace(
        DatasetInfo=type("DatasetInfo", (), {}), DatasetBuilder=type("DatasetBuilder", (), {})
    )
    tfds.Split = types.SimpleNamespace(TRAIN="train", VALIDATION="validation", TEST="test")
    sys.modules["tensorflow_datasets"] = tfds


def _grid(values: np.ndarray, step: float) -> np.ndarray:
    """Round to multiples of ``step``: random weights on a coarse grid compress ~4x in git."""
    return (np.round(values / step) * step).astype(np.float32)


def calibrate(
    model, images: np.ndarray, rng: np.random.Generator, signed: bool, passes: int
) -> None:
    """Set BatchNorm statistics from their own inputs; scale the classifier to logits std 2.

    Float kernels are rounded to a grid of 1/256 of their spread first (binary kernels only
    keep their sign anyway). Each pass measures every BatchNorm's input at once and updates
    all of them; a layer's statistics are exact once those before it have settled, so deep
    models get a few passes (or ``passes=0``: one layer at a time, exact, in network order).
    """
    import tensorflow as tf

    for layer in model.layers:
        if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)) and layer.weights:
            weights = layer.get_weights()
            step = float(np.std(weights[0])) / 64 or 1.0
            layer.set_weights([_grid(w, step) for w in weights])
    norms = [
        layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
    ]
    params = {}
    for layer in norms:
        n = int(layer.weights[0].shape[0])
        gamma = rng.uniform(0.5, 1.5, n).astype(np.float32)
        if signed:
            gamma *= np.where(rng.uniform(size=n) < 0.25, -1.0, 1.0).astype(np.float32)
        params[layer.name] = (gamma, rng.normal(0.0, 0.2, n).astype(np.float32))

    def update(layer, act) -> None:
        axes = tuple(range(act.ndim - 1))
        mean, var = act.mean(axis=axes), act.var(axis=axes) + 1e-3
        gamma, beta = params[layer.name]
        named = {"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": var}
        layer.set_weights([named[w.name.split("/")[-1].split(":")[0]] for w in layer.weights])

    if passes == 0:
        for layer in norms:
            update(layer, tf.keras.Model(model.inputs, layer.input).predict(images, verbose=0))
    for _ in range(passes):
        probe = tf.keras.Model(model.inputs, [layer.input for layer in norms])
        for layer, act in zip(norms, probe.predict(images, verbose=0), strict=True):
            update(layer, act)
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    if dense:
        last = dense[-1]
        features = tf.keras.Model(model.inputs, last.input).predict(images, verbose=0)
        kernel, bias = last.get_weights()
        logits = features.reshape(len(images), -1) @ kernel + bias
        scale = 2.0 / max(float(logits.std()), 1e-6)
        step = float(np.std(kernel * scale)) / 64 or 1.0
        last.set_weights([_grid(kernel * scale, step), _grid(bias * scale, step)])


# -- small models, one option each ---------------------------------------------------------
def _small_models():
    import larq as lq
    import tensorflow as tf

    layers = tf.keras.layers
    binary = {
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
    }

    def bconv(filters, k=3, **kw):
        return lq.layers.QuantConv2D(filters, k, **{**binary, **kw})

    def build(name, shape, body):
        x_in = tf.keras.Input(shape)
        return name, tf.keras.Model(x_in, body(x_in), name=name)

    def head(x, classes=10):
        x = layers.GlobalAveragePooling2D()(x)
        return layers.Dense(classes, activation="softmax")(x)

    yield build(
        "bconv_same_zero",
        (9, 11, 37),
        lambda x: layers.BatchNormalization()(bconv(35, padding="same", pad_values=0.0)(x)),
    )
    yield build(
        "bconv_same_one_stride2",
        (12, 13, 70),
        lambda x: layers.BatchNormalization()(
            bconv(40, padding="same", pad_values=1.0, strides=2)(x)
        ),
    )
    yield build(
        "bconv_same_zero_stride2_k5",
        (13, 12, 33),
        lambda x: layers.BatchNormalization()(
            bconv(17, k=5, padding="same", pad_values=0.0, strides=(2, 3))(x)
        ),
    )
    yield build(
        "bconv_valid_dilated",
        (14, 15, 64),
        lambda x: layers.BatchNormalization()(bconv(65, padding="valid", dilation_rate=2)(x)),
    )
    yield build(
        "bconv_same_zero_dilated",
        (11, 12, 96),
        lambda x: layers.BatchNormalization()(
            bconv(31, padding="same", pad_values=0.0, dilation_rate=(2, 3))(x)
        ),
    )
    yield build(
        "bconv_relu",
        (8, 9, 40),
        lambda x: bconv(24, padding="same", pad_values=1.0, activation="relu")(x),
    )
    yield build(
        "bconv_relu6_valid",
        (8, 9, 40),
        lambda x: layers.ReLU(max_value=6.0)(bconv(24, padding="valid")(x)),
    )
    yield build(
        "bconv_1x1",
        (7, 6, 130),
        lambda x: layers.BatchNormalization()(bconv(129, k=1)(x)),
    )

    def chain(pad_values, padding):
        def body(x):
            y = layers.BatchNormalization()(bconv(45, padding=padding, pad_values=pad_values)(x))
            y = layers.BatchNormalization()(bconv(50, padding=padding, pad_values=pad_values)(y))
            return layers.BatchNormalization()(bconv(33, padding="same", pad_values=1.0)(y))

        return body

    yield build("bitpacked_chain_one", (10, 10, 35), chain(1.0, "same"))
    yield build("bitpacked_chain_valid", (12, 12, 64), chain(0.0, "valid"))
    yield build("bitpacked_chain_zero", (10, 10, 35), chain(0.0, "same"))

    def bmaxpool(x):
        y = layers.BatchNormalization()(bconv(48, padding="same", pad_values=1.0)(x))
        y = layers.MaxPool2D(pool_size=3, strides=2, padding="same")(y)
        y = layers.BatchNormalization()(bconv(40, padding="same", pad_values=1.0)(y))
        y = layers.MaxPool2D(pool_size=2, strides=2, padding="valid")(y)
        y = layers.BatchNormalization()(bconv(36, padding="valid")(y))
        return head(y)

    yield build("bmaxpool_mean", (17, 16, 32), bmaxpool)

    def dequantize(x):
        y = layers.BatchNormalization()(bconv(70, padding="same", pad_values=1.0)(x))
        return lq.quantizers.SteSign()(y)

    yield build("dequantize", (6, 7, 24), dequantize)

    def padv2(x):
        y = lq.layers.QuantConv2D(
            20, 3, padding="same", pad_values=1.0, kernel_quantizer="ste_sign", use_bias=False
        )(x)
        return layers.BatchNormalization()(y)

    yield build("padv2", (8, 8, 5), padv2)

    def float_ops(x):
        a = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        b = layers.DepthwiseConv2D(3, padding="same")(a)
        b = layers.BatchNormalization()(b)
        c = layers.Add()([a, b])
        c = layers.ReLU()(c)
        d = layers.DepthwiseConv2D(5, strides=2, padding="valid", depth_multiplier=2)(c)
        e = layers.Conv2D(24, 1, padding="valid")(c)
        e = layers.AveragePooling2D(2, strides=2, padding="same")(e)
        e = layers.Cropping2D(((0, e.shape[1] - d.shape[1]), (0, e.shape[2] - d.shape[2])))(e)
        f = layers.Concatenate()([d, layers.Multiply()([e, e])])
        f = layers.MaxPool2D(2, strides=1, padding="valid")(f)
        f = layers.Conv2D(20, 3, padding="valid", dilation_rate=1, activation="relu6")(f)
        return head(f)

    yield build("float_ops", (31, 29, 3), float_ops)

    def binary_block_ops(x):
        a = layers.Conv2D(32, 3, strides=2, padding="same")(x)
        a = layers.BatchNormalization()(a)
        b = layers.BatchNormalization()(bconv(32, padding="same", pad_values=1.0)(a))
        c = layers.Add()([a, b])
        d = layers.BatchNormalization()(bconv(32, padding="same", pad_values=0.0)(c))
        g = layers.Multiply()(
            [d, layers.Activation("sigmoid")(layers.GlobalAveragePooling2D(keepdims=True)(d))]
        )
        h = layers.Concatenate()([c, g])
        return head(h, classes=12)

    yield build("binary_block_ops", (20, 18, 3), binary_block_ops)


def _zoo_models():
    _stub_tensorflow_datasets()
    import larq_zoo as lqz

    yield "quicknet_small", lqz.sota.QuickNetSmall(weights=None, input_shape=(224, 224, 3))
    yield "quicknet", lqz.sota.QuickNet(weights=None, input_shape=(224, 224, 3))
    yield "quicknet_large", lqz.sota.QuickNetLarge(weights=None, input_shape=(224, 224, 3))
    yield "birealnet", lqz.literature.BiRealNet(weights=None, input_shape=(224, 224, 3))
    yield (
        "binary_resnet_e18",
        lqz.literature.BinaryResNetE18(weights=None, input_shape=(224, 224, 3)),
    )
    yield (
        "binary_densenet28_160x192",
        lqz.literature.BinaryDenseNet28(weights=None, input_shape=(160, 192, 3)),
    )


def _extra_models():
    """Files edgebnn must refuse: an int8-quantized model and an unsupported operator."""
    import tensorflow as tf

    layers = tf.keras.layers
    x_in = tf.keras.Input((8, 8, 3))
    y = layers.Conv2D(4, 3)(x_in)
    y = layers.Lambda(tf.math.sin)(y)
    yield "unsupported_sin", tf.keras.Model(x_in, y), None

    x_in = tf.keras.Input((8, 8, 3))
    y = layers.Conv2D(4, 3, activation="relu")(x_in)
    model = tf.keras.Model(x_in, layers.Flatten()(y))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.RandomState(0)
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)] for _ in range(8)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    yield "int8_quantized", None, converter.convert()


def op_names(flatbuffer: bytes) -> list[str]:
    """Operator names in execution order, from LCE's own analyzer-free view (tflite schema)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=flatbuffer)
    return [d["op_name"] for d in interp._get_ops_details()]


def lce_outputs(flatbuffer: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    from larq_compute_engine import testing

    runs = {
        "default": {"use_xnnpack": False, "use_indirect_bgemm": False},
        "xnnpack": {"use_xnnpack": True, "use_indirect_bgemm": False},
        "indirect_bgemm": {"use_xnnpack": False, "use_indirect_bgemm": True},
    }
    out = {}
    for key, options in runs.items():
        interp = testing.Interpreter(flatbuffer, num_threads=1, **options)
        out[key] = np.asarray(interp.predict(x[None])).reshape(-1)
    return out


def store(name: str, model, flatbuffer: bytes, seed: int, manifest: dict) -> None:
    shape = tuple(int(d) for d in model.input_shape[1:]) if model is not None else None
    (OUT / f"{name}.tflite").write_bytes(flatbuffer)
    entry = {"bytes": len(flatbuffer), "ops": sorted(set(op_names(flatbuffer)))}
    if shape is not None:
        arrays: dict[str, np.ndarray] = {}
        for i in range(INPUTS_PER_MODEL):
            x = make_input(shape, seed + i)
            arrays[f"input_sha256_{i}"] = np.frombuffer(
                hashlib.sha256(x.tobytes()).digest(), np.uint8
            )
            for key, value in lce_outputs(flatbuffer, x).items():
                arrays[f"{key}_{i}"] = value.astype(np.float32)
            arrays[f"keras_{i}"] = model.predict(x[None], verbose=0).reshape(-1).astype(np.float32)
        np.savez_compressed(OUT / f"{name}.npz", **arrays)
        spread = max(
            float(np.abs(arrays[f"xnnpack_{i}"] - arrays[f"default_{i}"]).max())
            for i in range(INPUTS_PER_MODEL)
        )
        entry.update({"input_shape": list(shape), "seed": seed, "xnnpack_vs_default": spread})
    manifest[name] = entry
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"{name}: {len(flatbuffer)} bytes, ops {entry['ops']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="model names to (re)build")
    parser.add_argument("--skip-zoo", action="store_true")
    args = parser.parse_args()

    import larq_compute_engine as lce
    import tensorflow as tf

    tf.random.set_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    wanted = set(args.only or [])
    sources = [(n, m, True) for n, m in _small_models()]
    if not args.skip_zoo:
        sources += [(n, m, False) for n, m in _zoo_models()]
    for index, (name, model, small) in enumerate(sources):
        if wanted and name not in wanted:
            continue
        seed = 1000 + 10 * index
        rng = np.random.default_rng(seed)
        shape = tuple(int(d) for d in model.input_shape[1:])
        images = np.stack([make_input(shape, seed + 100 + i) for i in range(8 if small else 4)])
        calibrate(model, images, rng, signed=small, passes=0 if small else 6)
        store(name, model, lce.convert_keras_model(model), seed, manifest)
    for name, model, flatbuffer in _extra_models():
        if wanted and name not in wanted:
            continue
        if flatbuffer is None:
            flatbuffer = lce.convert_keras_model(model)
        store(name, None, flatbuffer, 0, manifest)
    manifest["_versions"] = {
        "tensorflow": tf.__version__,
        "larq_compute_engine": lce.__version__,
        "numpy": np.__version__,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
