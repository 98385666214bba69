"""Write a :class:`Network` as an ELL model file, in the 2017 or the newer dialect.

The output is what ELL's JsonArchiver writes (spec 2.2-2.13), quirks included: ``\\'``
escapes, a trailing comma after ``_version`` in field-less objects, ``nan``/``inf``
tokens. Floats are printed with 9 significant digits by default, so a float32 survives
the round trip bit for bit; ``digits=6`` (2017) or ``7`` (newer) mimics ELL exactly.
Used by the tests and by ``edgebnn models export --ell``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    FullyConnectedLayer,
    InputLayer,
    Layer,
    PoolingLayer,
    ScalingLayer,
    SoftmaxLayer,
)
from edgebnn.engine.network import Network, Preprocessing

DIALECTS = ("2017", "new")
_ACTIVATION_TYPES = {
    "relu": "ReLUActivation",
    "leaky_relu": "LeakyReLUActivation",
    "prelu": "ParametricReLUActivation",
    "sigmoid": "SigmoidActivation",
    "tanh": "TanhActivation",
    "hard_sigmoid": "HardSigmoidActivation<float>",
    "hard_tanh": "HardTanhActivation<float>",
}


def write_ell(net: Network, path: str | Path, dialect: str = "2017", digits: int = 9) -> Path:
    """Write ``net`` to ``path``; a name ending in ``.zip`` gets the gallery's zip container."""
    path = Path(path)
    text = ell_text(net, dialect, digits)
    if path.name.lower().endswith(".zip"):
        member = path.name[: -len(".zip")]
        member = member if member.lower().endswith(".ell") else member + ".ell"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, text)
        path.write_bytes(buffer.getvalue())
    else:
        path.write_bytes(text)
    return path


def ell_text(net: Network, dialect: str = "2017", digits: int = 9) -> bytes:
    """The ELL JSON text of ``net`` (bytes)."""
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    if net.maxpool_ring_value is not None:
        raise ModelError("ELL files cannot store a max-pool ring override", layer_type=net.name)
    writer = _Writer(dialect, digits)
    return writer.dump(_map(net, dialect)).encode("ascii")


def _map(net: Network, dialect: str) -> dict[str, Any]:
    old = dialect == "2017"
    n_out = int(np.prod(net.output_shape))
    predictor = {
        "_type": "NeuralNetworkPredictor<float>",
        "_version": "1",
        "inputLayer": _input_layer(net.input_layer),
        "layers": [_layer(layer, i, old) for i, layer in enumerate(net.layers)],
        "output": np.zeros(n_out, np.float32),
    }
    shape = list(net.input_shape)
    input_node: dict[str, Any] = {"_type": "InputNode<float>", "_version": "2", "id": "1000"}
    if old:
        input_node |= {"size": int(np.prod(shape)), "shape": shape}
    else:
        input_node["layout"] = _layout(shape)
        meta = _preprocessing_metadata(net.preprocessing)
        if meta:
            input_node["metadata"] = _property_bag(meta)
    nodes = [
        input_node,
        {"_type": "NeuralNetworkPredictorNode<float>", "_version": "0", "id": "1001",
         "input": _port("1001", f"1000.output[0:{int(np.prod(shape))}]" if old else "1000.output"),
         "predictor": predictor},
        {"_type": "OutputNode<float>", "_version": "2", "id": "1002",
         "input": _port("1002", f"1001.output[0:{n_out}]" if old else "1001.output"),
         **({"shape": list(net.output_shape)} if old else {"layout": _layout(list(net.output_shape))})},
    ]  # fmt: skip
    root: dict[str, Any] = {
        "_type": "DynamicMap" if old else "Map",
        "_version": "2" if old else "3",
        "model": {"_type": "Model", "_version": "2" if old else "3", "nodes": nodes},
        "inputNames": ["input"],
        "inputIds": ["1000"],
        "outputNames": ["output"],
        "outputElements": ["1002.output"],
    }
    if not old:
        root["metadata"] = _property_bag(
            {"edgebnn.name": net.name, "edgebnn.writer": "edgebnn's ELL writer"}
        )
    return root


def _port(node: str, source: str) -> dict[str, Any]:
    return {"_type": "InputPort<float>", "_version": "0", "nodeId": node, "name": "input", "type": 1,
            "input": source}  # fmt: skip


def _layout(shape: list[int]) -> dict[str, Any]:
    _, c, k = shape
    return {"_type": "MemoryLayout", "_version": "0", "size": shape, "extent": shape,
            "offset": [0, 0, 0], "order": [0, 1, 2], "increment": [c * k, k, 1]}  # fmt: skip


def _property_bag(values: dict[str, str]) -> dict[str, Any]:
    data = [
        {"_type": "PropertyBag::KeyValue", "_version": "0", "k": k,
         "v": {"_type": "Variant", "_version": "0", "type": "std::string", "value": v}}
        for k, v in values.items()
    ]  # fmt: skip
    return {"_type": "PropertyBag", "_version": "0", "data": data}


def _preprocessing_metadata(pre: Preprocessing) -> dict[str, str]:
    if pre == Preprocessing():
        return {}
    prefix = "model.input."
    colors = ("blue", "green", "red") if pre.channel_order == "bgr" else ("red", "green", "blue")
    meta = {prefix + "expectedColorChannelOrder": pre.channel_order,
            prefix + "expectedPixelRangeLow": "0", prefix + "expectedPixelRangeHigh": "255"}  # fmt: skip
    for color, mean, std in zip(colors, pre.mean, pre.std, strict=True):
        meta[f"{prefix}{color}ChannelMean"] = repr(float(mean))
        meta[f"{prefix}{color}ChannelStdDev"] = repr(float(std))
    return meta


def _base(layer: Layer, type_name: str) -> dict[str, Any]:
    return {
        "_type": type_name,
        "_version": "0",
        "inputPaddingScheme": int(layer.input_padding.scheme),
        "inputPaddingSize": layer.input_padding.size,
        "outputShape": list(layer.output_shape),
        "outputPaddingScheme": int(layer.output_padding.scheme),
        "outputPaddingSize": layer.output_padding.size,
    }


def _input_layer(layer: InputLayer) -> dict[str, Any]:
    r, c, k = layer.input_shape
    return _base(layer, "InputLayer<float>") | {
        "data_rows": r, "data_columns": c, "data_channels": k,
        "data_values": np.zeros(r * c * k, np.float32), "scale": float(layer.scale),
    }  # fmt: skip


def _layer(layer: Layer, index: int, old: bool) -> dict[str, Any]:
    def refuse(why: str) -> ModelError:
        return ModelError(
            f"cannot be written to an ELL file: {why}", layer=index, layer_type=type(layer).__name__
        )

    if layer.inputs is not None:
        raise refuse("ELL's predictor runs layers in a chain, not a graph")
    if isinstance(layer, BiasLayer):
        return _base(layer, "BiasLayer<float>") | {"bias": layer.bias}
    if isinstance(layer, ScalingLayer):
        return _base(layer, "ScalingLayer<float>") | {"scales": layer.scales}
    if isinstance(layer, BatchNormalizationLayer):
        return _base(layer, "BatchNormalizationLayer<float>") | {
            "multiplicationValues": layer.multiplication, "additionValues": layer.addition,
            "epsilon": float(layer.epsilon), "epsilonSummand": int(layer.epsilon_summand),
        }  # fmt: skip
    if isinstance(layer, ActivationLayer):
        return _activation(layer, old, refuse)
    if isinstance(layer, BinaryConvolutionalLayer):
        return _base(layer, "BinaryConvolutionalLayer<float>") | {
            "receptiveField": layer.receptive_field, "stride": layer.stride, "method": layer.method,
            "weightsScale": layer.weights_scale, "binarizedWeights_numVectors": layer.weights_bits.shape[0],
            "binarizedWeights_values": layer.weights_bits.reshape(-1), "filterMeans": layer.filter_means,
        }  # fmt: skip
    if isinstance(layer, ConvolutionalLayer):
        f, k, _, c = layer.weights.shape
        return _base(layer, "ConvolutionalLayer<float>") | {
            "receptiveField": k, "stride": layer.stride, "method": layer.method, "numFiltersAtATime": f,
            "weights_rows": f * k, "weights_columns": k, "weights_channels": c,
            "weights_values": layer.weights.reshape(-1),
        }  # fmt: skip
    if isinstance(layer, PoolingLayer):
        function = "MaxPoolingFunction" if layer.function == "max" else "MeanPoolingFunction"
        return _base(layer, f"PoolingLayer<float,{function}>") | {
            "poolingSize": layer.size,
            "stride": layer.stride,
        }
    if isinstance(layer, FullyConnectedLayer):
        rows, cols = layer.weights.shape
        return _base(layer, "FullyConnectedLayer<float>") | {
            "weights_rows": rows,
            "weights_columns": cols,
            "weights_values": layer.weights.reshape(-1),
        }
    if isinstance(layer, SoftmaxLayer):
        return _base(layer, "SoftmaxLayer<float>")
    raise refuse("ELL has no such layer")


def _activation(layer: ActivationLayer, old: bool, refuse: Any) -> dict[str, Any]:
    kind = _ACTIVATION_TYPES.get(layer.function)
    if kind is None:
        raise refuse(f"ELL has no {layer.function!r} activation")
    fields: dict[str, Any] = {}
    if layer.function == "leaky_relu" and (not old or layer.leaky_factor != np.float32(0.1)):
        fields["leakyFactor"] = float(layer.leaky_factor)
    if layer.function == "prelu":
        assert layer.alpha is not None
        r, c, k = layer.alpha.shape
        fields |= {
            "alpha_rows": r,
            "alpha_columns": c,
            "alpha_channels": k,
            "alpha_values": layer.alpha.reshape(-1),
        }
    if old:
        return _base(layer, f"ActivationLayer<float,{kind}>") | fields
    nested = kind if kind.endswith(">") else f"{kind}<float>"
    return _base(layer, "ActivationLayer<float>") | {
        "activation": {"_type": nested, "_version": "0", **fields}
    }


class _Writer:
    """ELL's JsonArchiver output format (spec 2.2)."""

    def __init__(self, dialect: str, digits: int) -> None:
        self.old = dialect == "2017"
        self.float_format = f"%.{int(digits)}g"

    def dump(self, value: Any, indent: int = 0) -> str:
        out: list[str] = []
        self._value(value, indent, out)
        out.append("\n")
        return "".join(out)

    def _value(self, value: Any, indent: int, out: list[str]) -> None:
        if isinstance(value, dict):
            self._object(value, indent, out)
        elif isinstance(value, np.ndarray):
            out.append("[" + ", ".join(self._numbers(value)) + "]")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            pad = "  " * (indent + 1)
            out.append("[")
            for i, item in enumerate(value):
                out.append(("" if i == 0 else ", ") + "\n" + pad)
                self._object(item, indent + 1, out)
            out.append("]")
        elif isinstance(value, list):
            out.append("[" + ", ".join(self._scalar(v) for v in value) + "]")
        else:
            out.append(self._scalar(value))

    def _object(self, obj: dict[str, Any], indent: int, out: list[str]) -> None:
        pad = "  " * (indent + 1)
        out.append("{")
        items = list(obj.items())
        for i, (key, value) in enumerate(items):
            out.append(("\n" if i == 0 else ",\n") + pad + self._string(key) + ": ")
            self._value(value, indent + 1, out)
        if len(items) == 2:  # only _type and _version: ELL <= 2.3.7 leaves a comma
            out.append(",")
        out.append("\n" + "  " * indent + "}")

    def _numbers(self, values: np.ndarray) -> list[str]:
        if values.dtype.kind in "ui":
            return [str(v) for v in values.tolist()]
        fmt = self.float_format
        return [fmt % v for v in values.astype(np.float64).tolist()]

    def _scalar(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | np.integer):
            return str(int(value))
        if isinstance(value, float | np.floating):
            return self.float_format % float(value)
        if isinstance(value, str):
            return self._string(value)
        raise TypeError(f"cannot archive {type(value).__name__}")

    def _string(self, text: str) -> str:
        """ELL's EncodeString: escapes ' as \\' (invalid JSON) and, in newer ELL, / as \\/."""
        escapes = {"\\": "\\\\", '"': '\\"', "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                   "\b": "\\b", "\f": "\\f"}  # fmt: skip
        if not self.old:
            escapes["/"] = "\\/"
        return '"' + "".join(escapes.get(ch, ch) for ch in text) + '"'
