"""Read ELL model files (``.ell`` JSON or the gallery's ``.ell.zip``) into a :class:`Network`.

Both dialects of spec section 2: the 2017 one (root ``DynamicMap``, activation names like
``ActivationLayer<float,ParametricReLUActivation>``, ``InputNode`` ``size``/``shape``) and the
newer one (root ``Map``, a nested ``activation`` object, ``layout``, metadata). Layers are
kept one for one, exactly as ELL computes them; fusing is the planner's business.

Everything is checked: each field's presence and type, weight counts against the shapes
(a layer's input is the previous layer's full ``outputShape``, spec 2.6), NaN/inf weights,
padding that does not connect, and the shape chain. Any fault is a :class:`ModelError`
naming the file, the layer index and ``_type``, and the field.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from edgebnn.engine.errors import ModelError, ShapeError
from edgebnn.engine.formats.ell_fields import MAX_ELEMENTS, Fields, Where
from edgebnn.engine.formats.ell_json import DialectError, Document, parse
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    FullyConnectedLayer,
    InputLayer,
    Layer,
    Padding,
    PaddingScheme,
    PoolingLayer,
    ScalingLayer,
    Shape,
    SoftmaxLayer,
)
from edgebnn.engine.network import Network, Preprocessing

#: The largest ``.ell`` JSON text accepted (a zip member is never inflated beyond it).
MAX_JSON_BYTES = 1 << 30
#: The largest network output accepted (one label per output value is made).
MAX_OUTPUTS = 1 << 22
ZIP_MAGIC = b"PK\x03\x04"

ACTIVATIONS = {
    "ReLUActivation": "relu",
    "LeakyReLUActivation": "leaky_relu",
    "ParametricReLUActivation": "prelu",
    "SigmoidActivation": "sigmoid",
    "TanhActivation": "tanh",
    "HardSigmoidActivation": "hard_sigmoid",
    "HardTanhActivation": "hard_tanh",
}
POOLING = {"MaxPoolingFunction": "max", "MeanPoolingFunction": "mean"}


def read_ell(path: str | Path) -> Network:
    """The network in an ELL file, zipped (as downloaded) or not."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    return parse_ell(data, str(path))


def parse_ell(data: bytes, path: str = "<bytes>") -> Network:
    """The network in the bytes of an ELL file (``path`` is used in messages and the name)."""
    sha256 = hashlib.sha256(data).hexdigest()
    text, member = unpack(data, path)
    try:
        doc = parse(text)
    except DialectError as exc:
        raise ModelError(str(exc), path=path) from None
    return build_network(doc, path, name=_model_name(member or path), source_sha256=sha256)


def unpack(data: bytes, path: str) -> tuple[bytes, str | None]:
    """The JSON text of an ELL file and, for a zip, the name of its ``.ell`` member."""
    if not data.startswith(ZIP_MAGIC):
        if path.lower().endswith(".zip"):
            raise ModelError("not a zip archive (a truncated or wrong download?)", path=path)
        if len(data) > MAX_JSON_BYTES:
            raise ModelError(f"larger than {MAX_JSON_BYTES} bytes", path=path)
        return data, None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if m.filename.lower().endswith(".ell")]
            if not members:
                names = ", ".join(archive.namelist()[:5]) or "none"
                raise ModelError(
                    f"the zip archive has no .ell member (members: {names})", path=path
                )
            member = members[0]
            with archive.open(member) as stream:
                text = stream.read(MAX_JSON_BYTES + 1)
    except ModelError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, ValueError) as exc:  # fmt: skip
        raise ModelError(f"broken zip archive ({exc})", path=path) from None
    if len(text) > MAX_JSON_BYTES:
        raise ModelError(f"the .ell member is larger than {MAX_JSON_BYTES} bytes", path=path)
    return text, member.filename


def _model_name(name: str) -> str:
    base = re.split(r"[\\/]", name)[-1]
    return re.sub(r"(\.ell)?(\.zip)?$", "", base, flags=re.IGNORECASE) or "network"


def split_type(name: str) -> tuple[str, list[str]]:
    """``"A<float,B<float>>"`` -> ``("A", ["float", "B<float>"])`` (spec 2.3)."""
    if "<" not in name:
        return name, []
    if not name.endswith(">"):
        raise ValueError(name)
    base, inner = name.split("<", 1)
    args, depth, start = [], 0, 0
    inner = inner[:-1]
    for i, ch in enumerate(inner):
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if depth < 0:
            raise ValueError(name)
        if ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    if depth != 0:
        raise ValueError(name)
    args.append(inner[start:].strip())
    return base, args


def build_network(doc: Document, path: str, name: str = "network",
                  source_sha256: str | None = None) -> Network:  # fmt: skip
    """A :class:`Network` from a parsed ELL document."""
    root = Fields(doc.root, doc, Where(path, layer_type="map"), "map")
    root_type = root.type_name()
    if root_type not in ("Map", "DynamicMap"):
        raise root.error(f"root _type is {root_type!r}, expected 'Map' or 'DynamicMap'", "_type")
    dialect = "2017" if root_type == "DynamicMap" else "new"
    model = Fields(root.get("model"), doc, Where(path, layer_type="model"), "model")
    nodes = model.get("nodes")
    if not isinstance(nodes, list):
        raise model.error("expected an array of nodes", "nodes")
    node_fields = [
        Fields(n, doc, Where(path, layer_type=f"node {i}"), "node") for i, n in enumerate(nodes)
    ]
    found: dict[str, list[Fields]] = {"NeuralNetworkPredictorNode": [], "InputNode": []}
    for node in node_fields:
        base = node.type_name().split("<", 1)[0]
        if base in found:
            found[base].append(node)
    predictors = found["NeuralNetworkPredictorNode"]
    if len(predictors) != 1:
        raise ModelError(
            f"expected one NeuralNetworkPredictorNode, found {len(predictors)}",
            path=path,
            field="nodes",
        )
    node = predictors[0]
    _require_float(node, node.type_name())
    predictor = Fields(node.get("predictor"), doc, Where(path, layer_type="predictor"), "predictor")
    _require_float(predictor, predictor.type_name())

    where = Where(path, layer_type="inputLayer")
    input_fields = Fields(predictor.get("inputLayer"), doc, where, "inputLayer")
    where.layer_type = input_fields.type_name()
    input_layer = _input_layer(input_fields)
    layer_list = predictor.get("layers")
    if not isinstance(layer_list, list) or not layer_list:
        raise predictor.error("expected a non-empty array of layers", "layers")
    layers: list[Layer] = []
    types: list[str] = []
    previous: Layer = input_layer
    for index, obj in enumerate(layer_list):
        where = Where(path, layer=index)
        fields = Fields(obj, doc, where, "layer")
        where.layer_type = fields.type_name()
        layer = _layer(fields, previous)
        _check_link(fields, previous, layer)
        layers.append(layer)
        types.append(where.layer_type)
        previous = layer
    out_count = int(np.prod(previous.output_shape))
    if out_count > MAX_OUTPUTS:
        raise ModelError(f"the network has {out_count} outputs (at most {MAX_OUTPUTS})", path=path,
                         layer=len(layers) - 1, layer_type=types[-1], field="outputShape")  # fmt: skip
    inputs = found["InputNode"]
    metadata: dict[str, Any] = {"source_format": "ell", "ell_dialect": dialect}
    ell_metadata = _metadata(root) | (_metadata(inputs[0]) if inputs else {})
    if inputs:
        _check_input_node(inputs[0], input_layer)
    if ell_metadata:
        metadata["ell_metadata"] = ell_metadata
    try:
        net = Network(
            input_layer,
            layers,
            name=name,
            preprocessing=_preprocessing(ell_metadata, Where(path, layer_type="InputNode")),
            source_sha256=source_sha256,
            metadata=metadata,
        )
    except ShapeError as exc:
        index = exc.layer if exc.layer is not None else 0
        raise ModelError(exc.reason, path=path, layer=exc.layer,
                         layer_type=types[index], field="outputShape") from None  # fmt: skip
    if predictor.has("output") and doc.is_array(predictor.get("output")):
        n = doc.length(predictor.get("output"))
        if n != out_count:
            raise predictor.error(
                f"has {n} values, but the last layer outputs {out_count}", "output"
            )
    return net


def _require_float(fields: Fields, type_name: str) -> None:
    try:
        _, args = split_type(type_name)
    except ValueError:
        raise fields.error(f"malformed type name {type_name!r}", "_type") from None
    if args[:1] != ["float"]:
        raise fields.error(f"only float networks are supported, got {type_name!r}", "_type")


def _padding(fields: Fields, prefix: str) -> Padding:
    return Padding(
        PaddingScheme(fields.integer(f"{prefix}PaddingScheme", 0, 5)),
        fields.integer(f"{prefix}PaddingSize", 0, 1 << 16),
    )


def _base(fields: Fields) -> dict[str, Any]:
    return {
        "output_shape": fields.shape("outputShape"),
        "input_padding": _padding(fields, "input"),
        "output_padding": _padding(fields, "output"),
    }


LayerT = TypeVar("LayerT", bound=Layer)


def _construct(
    fields: Fields, cls: Callable[..., LayerT], field: str | None, **kwargs: Any
) -> LayerT:
    try:
        return cls(**kwargs)
    except (ShapeError, ValueError) as exc:
        raise fields.error(getattr(exc, "reason", str(exc)), field) from None


def _interior(fields: Fields, base: dict[str, Any]) -> Shape:
    rows, cols, chans = base["output_shape"]
    p = base["output_padding"].size
    if rows <= 2 * p or cols <= 2 * p:
        raise fields.error(f"padding {p} leaves no interior in {rows}x{cols}", "outputPaddingSize")
    return rows - 2 * p, cols - 2 * p, chans


def _input_layer(fields: Fields) -> InputLayer:
    if split_type(_checked_type(fields))[0] != "InputLayer":
        raise fields.error(f"expected an InputLayer, got {fields.type_name()!r}", "_type")
    base = _base(fields)
    interior = _interior(fields, base)
    dims = tuple(
        fields.integer(f"data_{d}", 1, MAX_ELEMENTS) for d in ("rows", "columns", "channels")
    )
    if dims != interior:
        raise fields.error(f"data is {dims}, but the output interior is {interior}", "data_rows")
    fields.check_count("data_values", int(np.prod(dims)))  # zeros in files: counted, not parsed
    return _construct(fields, InputLayer, "outputShape", scale=fields.number("scale"), **base)


def _checked_type(fields: Fields) -> str:
    type_name = fields.type_name()
    try:
        split_type(type_name)
    except ValueError:
        raise fields.error(f"malformed type name {type_name!r}", "_type") from None
    return type_name


def _layer(fields: Fields, previous: Layer) -> Layer:
    base_name, args = split_type(_checked_type(fields))
    builder = BUILDERS.get(base_name)
    if builder is None:
        known = ", ".join(sorted(BUILDERS))
        raise fields.error(f"unsupported layer type {base_name!r} (supported: {known})", "_type")
    if args[:1] != ["float"]:
        raise fields.error(f"only float layers are supported, got {fields.type_name()!r}", "_type")
    return builder(fields, args[1:], _base(fields), previous.output_shape)


def _check_link(fields: Fields, previous: Layer, layer: Layer) -> None:
    """Layer i's output padding must be layer i+1's input padding (spec 2.8)."""
    if layer.input_padding.size != previous.output_padding.size:
        raise fields.error(
            f"input padding size {layer.input_padding.size} does not match the "
            f"{previous.output_padding.size} of the layer before it",
            "inputPaddingSize",
        )
    if layer.input_padding.scheme != previous.output_padding.scheme:
        raise fields.error(
            f"input padding scheme {layer.input_padding.scheme.name.lower()} does not match the "
            f"{previous.output_padding.scheme.name.lower()} of the layer before it",
            "inputPaddingScheme",
        )


# -- one builder per layer type (spec 2.10) ------------------------------------------------
def _bias(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    bias = fields.floats("bias", base["output_shape"][2])
    return _construct(fields, BiasLayer, "outputShape", bias=bias, **base)


def _scaling(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    scales = fields.floats("scales", base["output_shape"][2])
    return _construct(fields, ScalingLayer, "outputShape", scales=scales, **base)


def _batch_norm(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    k = base["output_shape"][2]
    return _construct(
        fields,
        BatchNormalizationLayer,
        "outputShape",
        multiplication=fields.floats("multiplicationValues", k),
        addition=fields.floats("additionValues", k),
        epsilon=fields.number("epsilon"),
        epsilon_summand=fields.integer("epsilonSummand", 0, 1),
        **base,
    )


def _activation(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    if args:  # 2017: ActivationLayer<float,ParametricReLUActivation>, fields inline
        source, kind = fields, split_type(args[0])[0]
    else:  # newer: ActivationLayer<float> with a nested "activation" object
        source = Fields(fields.get("activation"), fields.doc, fields.where, "activation")
        try:
            kind = split_type(source.type_name())[0]
        except ValueError:
            raise fields.error(
                f"malformed activation type {source.type_name()!r}", "activation"
            ) from None
    function = ACTIVATIONS.get(kind)
    if function is None:
        known = ", ".join(ACTIVATIONS)
        raise fields.error(
            f"unsupported activation {kind!r} (supported: {known})",
            "activation" if not args else "_type",
        )
    extra: dict[str, Any] = {}
    if function == "leaky_relu":
        extra["leaky_factor"] = source.number("leakyFactor") if source.has("leakyFactor") else 0.1
    if function == "prelu":
        extra["alpha"] = source.tensor("alpha", _interior(fields, base))
    return _construct(fields, ActivationLayer, "outputShape", function=function, **extra, **base)


def _conv(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    k = fields.integer("receptiveField", 1, 1 << 12)
    stride = fields.integer("stride", 1, 1 << 12)
    method = fields.integer("method", 0, 4)
    fields.integer("numFiltersAtATime", 0)
    filters, chans = base["output_shape"][2], in_shape[2]
    rows = fields.integer("weights_rows", 1)
    if rows != filters * k:
        raise fields.error(f"is {rows}, expected filters*k = {filters}*{k}", "weights_rows")
    if fields.integer("weights_columns", 1) != k:
        raise fields.error(f"expected k = {k}", "weights_columns")
    wchans = fields.integer("weights_channels", 1)
    if wchans != chans and not (wchans == 1 and filters == chans):
        raise fields.error(f"is {wchans}, the input has {chans} channels", "weights_channels")
    weights = fields.floats("weights_values", rows * k * wchans).reshape(filters, k, k, wchans)
    return _construct(
        fields,
        ConvolutionalLayer,
        "outputShape",
        weights=weights,
        stride=stride,
        method=method,
        **base,
    )


def _binary_conv(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    k = fields.integer("receptiveField", 1, 1 << 12)
    stride = fields.integer("stride", 1, 1 << 12)
    method = fields.integer("method", 0, 1)
    scale = fields.integer("weightsScale", 0, 1)
    filters = base["output_shape"][2]
    n = fields.integer("binarizedWeights_numVectors", 0)
    if n != filters:
        raise fields.error(
            f"is {n}, but the output has {filters} channels", "binarizedWeights_numVectors"
        )
    volume = k * k * in_shape[2]
    blocks = -(-volume // 64)
    if filters * blocks > MAX_ELEMENTS:
        raise fields.error("too many weights", "binarizedWeights_values")
    words = fields.uint64s("binarizedWeights_values", filters * blocks).reshape(filters, blocks)
    if volume % 64 and (words[:, -1] >> np.uint64(volume % 64)).any():
        raise fields.error(
            f"bits beyond the {volume}-bit filter volume are set (they must be 0)",
            "binarizedWeights_values",
        )
    means = fields.floats("filterMeans", filters)
    return _construct(fields, BinaryConvolutionalLayer, "outputShape", weights_bits=words, receptive_field=k,
                      stride=stride, weights_scale=scale, filter_means=means, method=method, **base)  # fmt: skip


def _pooling(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    kind = split_type(args[0])[0] if args else ""
    function = POOLING.get(kind)
    if function is None:
        raise fields.error(
            f"unsupported pooling function {kind!r} (supported: {', '.join(POOLING)})", "_type"
        )
    size = fields.integer("poolingSize", 1, 1 << 12)
    stride = fields.integer("stride", 1, 1 << 12)
    rows, cols, _ = _interior(fields, base)
    if (rows - 1) * stride >= in_shape[0] or (cols - 1) * stride >= in_shape[1]:
        raise fields.error(
            f"a {rows}x{cols} output with stride {stride} starts windows outside the "
            f"{in_shape[0]}x{in_shape[1]} input",
            "outputShape",
        )
    return _construct(
        fields, PoolingLayer, "outputShape", function=function, size=size, stride=stride, **base
    )


def _fully_connected(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    n_out = int(np.prod(_interior(fields, base)))
    n_in = int(np.prod(in_shape))
    if fields.integer("weights_rows", 1) != n_out:
        raise fields.error(f"expected the output interior size {n_out}", "weights_rows")
    if fields.integer("weights_columns", 1) != n_in:
        raise fields.error(f"expected the full input size {n_in}", "weights_columns")
    if n_out * n_in > MAX_ELEMENTS:
        raise fields.error("too many weights", "weights_values")
    weights = fields.floats("weights_values", n_out * n_in).reshape(n_out, n_in)
    return _construct(fields, FullyConnectedLayer, "outputShape", weights=weights, **base)


def _softmax(fields: Fields, args: list[str], base: dict, in_shape: Shape) -> Layer:
    return _construct(fields, SoftmaxLayer, "outputShape", **base)


BUILDERS: dict[str, Callable[[Fields, list[str], dict, Shape], Layer]] = {
    "BiasLayer": _bias,
    "ScalingLayer": _scaling,
    "BatchNormalizationLayer": _batch_norm,
    "ActivationLayer": _activation,
    "ConvolutionalLayer": _conv,
    "BinaryConvolutionalLayer": _binary_conv,
    "PoolingLayer": _pooling,
    "FullyConnectedLayer": _fully_connected,
    "SoftmaxLayer": _softmax,
}


# -- nodes and metadata ----------------------------------------------------------------------
def _check_input_node(node: Fields, input_layer: InputLayer) -> None:
    """The InputNode's ``shape`` (2017) or ``layout.size`` (newer) must match the input."""
    expected = list(input_layer.input_shape)
    if node.has("shape"):
        if node.get("shape") != expected:
            raise node.error(f"is {node.get('shape')!r}, the input layer takes {expected}", "shape")
    elif node.has("layout") and isinstance(node.get("layout"), dict):
        size = node.get("layout").get("size")
        if size is not None and size != expected:
            raise node.error(f"layout size is {size!r}, the input layer takes {expected}", "layout")


def _metadata(fields: Fields) -> dict[str, str]:
    """A PropertyBag (spec 2.11) as a dict of strings; empty when absent."""
    if not fields.has("metadata"):
        return {}
    bag = fields.get("metadata")
    entries = bag.get("data", []) if isinstance(bag, dict) else None
    if not isinstance(entries, list):
        raise fields.error("expected a PropertyBag object with a data array", "metadata")
    out: dict[str, str] = {}
    for entry in entries:
        value = entry.get("v") if isinstance(entry, dict) else None
        if isinstance(value, dict):
            value = value.get("value")
        key = entry.get("k") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not isinstance(value, str | int | float):
            raise fields.error("expected entries {k: key, v: {value: ...}}", "metadata")
        out[key] = str(value)
    return out


def _preprocessing(meta: dict[str, str], where: Where) -> Preprocessing:
    """Preprocessing from ELL's image metadata keys (spec 2.11); gallery defaults without.

    ELL reorders channels, scales 0..255 to [low, high], subtracts the mean and divides by
    the std; with ``s = (high - low) / 255`` that is ``(x - (mean - low)/s) / (std/s)``.
    """
    prefix = "model.input."
    if not any(k.startswith(prefix) for k in meta):
        return Preprocessing()
    try:
        order = meta.get(prefix + "expectedColorChannelOrder", "bgr").strip().lower()
        low = float(meta.get(prefix + "expectedPixelRangeLow", 0))
        high = float(meta.get(prefix + "expectedPixelRangeHigh", 255))
        s = (high - low) / 255.0
        colors = ("blue", "green", "red") if order == "bgr" else ("red", "green", "blue")
        means = tuple((float(meta.get(f"{prefix}{c}ChannelMean", low)) - low) / s for c in colors)
        stds = tuple(float(meta.get(f"{prefix}{c}ChannelStdDev", s)) / s for c in colors)
        if not all(np.isfinite(means + stds)) or not all(v > 0 for v in stds):
            raise ValueError("non-finite or non-positive values")
        return Preprocessing(channel_order=order, mean=means, std=stds)
    except (ValueError, ZeroDivisionError) as exc:
        raise where.error(f"bad image preprocessing metadata ({exc})", "metadata") from None
