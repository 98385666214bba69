"""The same network, same weights, as an ONNX graph for ONNX Runtime (the peer we time).

Binary convolutions are emulated in float, as a float runtime must: ``sign(x)`` (+1 iff
x > 0, else -1) convolved with the ±1 weights and zero padding, which is exactly ELL's
masked XNOR sum. Padding rings become the consumers' ``pads`` (zeros for convolutions,
ignored cells for max-pooling: ELL's −FLT_MAX ring). Layout is NCHW. Needs ``onnx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from edgebnn.engine.layers import (
    ActivationLayer,
    AddLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    FullyConnectedLayer,
    PoolingLayer,
    ScalingLayer,
    SoftmaxLayer,
)
from edgebnn.kernels.reference import unpack_filter_signs


def to_onnx(net) -> bytes:
    """Serialised ONNX model computing ``net`` (input ``x``: 1x3xHxW float32, NCHW)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list = []
    inits: list = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def const(values: np.ndarray) -> str:
        n = name("c")
        inits.append(numpy_helper.from_array(np.ascontiguousarray(values), n))
        return n

    def per_channel(v: np.ndarray) -> str:
        return const(np.asarray(v, np.float32).reshape(1, -1, 1, 1))

    def op(kind: str, inputs: list[str], **attrs) -> str:
        out = name(kind.lower())
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    rows, cols, chans = net.input_shape
    tensors = ["x"]
    if net.input_layer.scale != 1.0:
        tensors[0] = op("Mul", ["x", const(np.array(net.input_layer.scale, np.float32))])
    nodes_all = [net.input_layer, *net.layers]
    for i, layer in enumerate(net.layers, start=1):
        producer = net.node_inputs[i][0]
        x = tensors[producer]
        ring = nodes_all[producer].output_padding.size
        pads = [ring] * 4
        if isinstance(layer, BiasLayer):
            y = op("Add", [x, per_channel(layer.bias)])
        elif isinstance(layer, ScalingLayer):
            y = op("Mul", [x, per_channel(layer.scales)])
        elif isinstance(layer, BatchNormalizationLayer):
            y = op(
                "Add",
                [op("Mul", [x, per_channel(layer.multiplication)]), per_channel(layer.addition)],
            )
        elif isinstance(layer, ActivationLayer):
            f = layer.function
            if f == "relu":
                y = op("Relu", [x])
            elif f == "prelu":
                assert layer.alpha is not None  # a PReLU always has its alphas
                y = op("PRelu", [x, const(np.transpose(layer.alpha, (2, 0, 1))[None].copy())])
            elif f == "leaky_relu":
                y = op("LeakyRelu", [x], alpha=float(layer.leaky_factor))
            elif f == "relu6":
                y = op("Clip", [x, const(np.array(0, np.float32)), const(np.array(6, np.float32))])
            elif f == "sigmoid":
                y = op("Sigmoid", [x])
            elif f == "tanh":
                y = op("Tanh", [x])
            else:
                raise NotImplementedError(f"activation {f} in ONNX export")
        elif isinstance(layer, ConvolutionalLayer):
            w = np.transpose(layer.weights, (0, 3, 1, 2)).copy()  # F, C, k, k
            k = layer.receptive_field
            group = 1
            if layer.is_depthwise(nodes_all[producer].output_shape[2]):
                group = w.shape[0]
            y = op(
                "Conv",
                [x, const(w)],
                kernel_shape=[k, k],
                strides=[layer.stride] * 2,
                pads=pads,
                group=group,
            )
        elif isinstance(layer, BinaryConvolutionalLayer):
            k = layer.receptive_field
            c_in = nodes_all[producer].output_shape[2]
            signs = unpack_filter_signs(layer.weights_bits, k * k * c_in).astype(np.float32)
            w = np.transpose(signs.reshape(-1, k, k, c_in), (0, 3, 1, 2)).copy()
            sx = op(
                "Where",
                [
                    op("Greater", [x, const(np.array(0, np.float32))]),
                    const(np.array(1, np.float32)),
                    const(np.array(-1, np.float32)),
                ],
            )
            if not layer.masks_padding() and ring:
                raise NotImplementedError("ONNX export of unmasked binary padding")
            y = op(
                "Conv", [sx, const(w)], kernel_shape=[k, k], strides=[layer.stride] * 2, pads=pads
            )
            if layer.weights_scale == 1:
                assert layer.filter_means is not None  # filled in by the layer itself
                y = op("Mul", [y, per_channel(layer.filter_means)])
        elif isinstance(layer, PoolingLayer):
            kind = "MaxPool" if layer.function == "max" else "AveragePool"
            attrs: dict[str, Any] = {
                "kernel_shape": [layer.size] * 2,
                "strides": [layer.stride] * 2,
                "pads": pads,
            }
            if kind == "AveragePool":
                attrs["count_include_pad"] = 1
            y = op(kind, [x], **attrs)
        elif isinstance(layer, SoftmaxLayer):
            shape = op("Shape", [x])
            flat = op("Flatten", [x], axis=1)
            y = op("Reshape", [op("Softmax", [flat], axis=1), shape])
        elif isinstance(layer, AddLayer):
            y = op("Add", [x, tensors[net.node_inputs[i][1]]])
        elif isinstance(layer, FullyConnectedLayer):
            flat = op("Flatten", [op("Transpose", [x], perm=[0, 2, 3, 1])], axis=1)
            y = op("Gemm", [flat, const(layer.weights)], transB=1)
            y = op("Reshape", [y, const(np.array([1, -1, 1, 1], np.int64))])
        else:
            raise NotImplementedError(f"{type(layer).__name__} in ONNX export")
        tensors.append(y)
    out_r, out_c, out_k = net.layers[-1].interior_shape
    graph = helper.make_graph(
        nodes,
        "edgebnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, chans, rows, cols])],
        [helper.make_tensor_value_info(tensors[-1], TensorProto.FLOAT, [1, out_k, out_r, out_c])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def nchw(x: np.ndarray) -> np.ndarray:
    """An HWC input as the 1xCxHxW tensor the ONNX graph takes."""
    return np.ascontiguousarray(np.transpose(x, (2, 0, 1))[None])
