"""ELL's layer objects, one builder per layer type: checked fields in, engine layers out.

:data:`BUILDERS` maps the base name of each archive object's ``_type`` to its builder
(as ELL's importers map operations); an unknown type is an error, never skipped. Every
builder checks its required fields and names the culprit (``layer 3 (ConvolutionalLayer):
missing 'stride'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from edgebnn.engine.errors import ShapeError
from edgebnn.engine.formats.ell_fields import MAX_ELEMENTS, Fields
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


def require_float(fields: Fields, type_name: str) -> None:
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


def build_input_layer(fields: Fields) -> InputLayer:
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


def layer_from(fields: Fields, previous: Layer) -> Layer:
    base_name, args = split_type(_checked_type(fields))
    builder = BUILDERS.get(base_name)
    if builder is None:
        known = ", ".join(sorted(BUILDERS))
        raise fields.error(f"unsupported layer type {base_name!r} (supported: {known})", "_type")
    if args[:1] != ["float"]:
        raise fields.error(f"only float layers are supported, got {fields.type_name()!r}", "_type")
    return builder(fields, args[1:], _base(fields), previous.output_shape)


def check_link(fields: Fields, previous: Layer, layer: Layer) -> None:
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
