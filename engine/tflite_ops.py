"""One step per TFLite operator: plan-time checks and constants, run-time kernel calls.

Each ``build_<op>`` takes the graph, the operator and the :class:`Context` (tensor shapes
without the batch axis, which tensors are bit-packed and their channel counts, constants)
and returns a closure ``run(values)`` that reads and writes ``values[tensor_index]``.
Shapes are static: the outputs are allocated once and reused on every frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError
from edgebnn.engine.tflite_graph import Graph, Operator
from edgebnn.kernels import lce, tflite_float
from edgebnn.kernels.tflite_float import activate, same_padding

Run = Callable[[list], None]

#: TFLite ``Padding`` (builtin options and LCE's custom options alike).
SAME, VALID = 0, 1


@dataclass
class Context:
    """What the planner knows about each tensor while building the steps."""

    graph: Graph
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    packed: dict[int, int] = field(default_factory=dict)  # tensor -> unpacked channels

    def fail(self, op: Operator, message: str) -> ModelError:
        return ModelError(message, path=self.graph.path, layer=op.index, layer_type=op.name)

    def const(self, op: Operator, position: int) -> np.ndarray:
        index = op.inputs[position] if position < len(op.inputs) else -1
        data = self.graph.tensors[index].data if index >= 0 else None
        if data is None:
            raise self.fail(op, f"input {position} must be a constant tensor")
        return data

    def has_input(self, op: Operator, position: int) -> bool:
        return position < len(op.inputs) and op.inputs[position] >= 0

    def shape(self, op: Operator, index: int) -> tuple[int, ...]:
        if index in self.shapes:
            return self.shapes[index]
        tensor = self.graph.tensors[index]
        if tensor.data is not None:
            return tuple(tensor.data.shape)
        raise self.fail(op, f"tensor {tensor.name!r} is used before it is computed")

    def output(self, op: Operator, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """Record the output's shape and allocate its buffer."""
        stored = self.graph.tensors[op.outputs[0]].shape
        if stored and dtype is np.float32 and tuple(stored[1:]) != tuple(shape):
            raise self.fail(op, f"computes shape {list(shape)}, file says {list(stored[1:])}")
        self.shapes[op.outputs[0]] = tuple(shape)
        return np.zeros(shape, dtype)


def _geometry(ctx: Context, op: Operator, hw: tuple[int, int], k: tuple[int, int],
              stride: tuple[int, int], dilation: tuple[int, int], padding: int):  # fmt: skip
    if padding not in (SAME, VALID):
        raise ctx.fail(op, f"unknown padding {padding}")
    if min(*stride, *dilation, *k) < 1:
        raise ctx.fail(op, f"strides {stride}, dilations {dilation}, kernel {k} must be >= 1")
    out_h, top = same_padding(hw[0], k[0], stride[0], dilation[0], padding == SAME)
    out_w, left = same_padding(hw[1], k[1], stride[1], dilation[1], padding == SAME)
    if out_h < 1 or out_w < 1:
        raise ctx.fail(op, f"kernel {k} does not fit the {hw[0]}x{hw[1]} input")
    geometry = np.array([k[0], k[1], *stride, *dilation, top, left], np.int64)
    return out_h, out_w, geometry


def _fused(ctx: Context, op: Operator) -> int:
    code = int(op.options.get("fused_activation_function", 0))
    if code not in (0, 1, 2, 3, 4):
        raise ctx.fail(op, f"unsupported fused activation {code}")
    return code


# -- Larq Compute Engine ops -----------------------------------------------------------------
def build_lce_quantize(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = _rank3(ctx, op, ctx.shape(op, src))
    out = np.zeros((rows, cols, lce.words_for(chans)), np.uint64)
    ctx.shapes[dst], ctx.packed[dst] = out.shape, chans

    def run(values: list) -> None:
        lce.quantize(values[src], out)
        values[dst] = out

    return run


def build_lce_dequantize(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    if src not in ctx.packed:
        raise ctx.fail(op, "input is not a bit-packed tensor")
    rows, cols, _ = ctx.shape(op, src)
    out = ctx.output(op, (rows, cols, ctx.packed[src]))

    def run(values: list) -> None:
        lce.dequantize(values[src], out)
        values[dst] = out

    return run


def build_lce_bmaxpool(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    if src not in ctx.packed:
        raise ctx.fail(op, "input is not a bit-packed tensor")
    o = op.options
    rows, cols, words = ctx.shape(op, src)
    k = (int(o.get("filter_height", 1)), int(o.get("filter_width", 1)))
    stride = (int(o.get("stride_height", 1)), int(o.get("stride_width", 1)))
    out_h, out_w, g = _geometry(ctx, op, (rows, cols), k, stride, (1, 1), int(o.get("padding", 0)))
    out = np.zeros((out_h, out_w, words), np.uint64)
    ctx.shapes[dst], ctx.packed[dst] = out.shape, ctx.packed[src]

    def run(values: list) -> None:
        lce.bmaxpool(values[src], k[0], k[1], stride[0], stride[1], g[6], g[7], out)
        values[dst] = out

    return run


def build_lce_bconv2d(ctx: Context, op: Operator) -> Run:
    from edgebnn.engine.tflite_bconv import plan_bconv

    return plan_bconv(ctx, op)


# -- builtin float ops ------------------------------------------------------------------------
def _rank3(ctx: Context, op: Operator, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ctx.fail(op, f"expects a rows x cols x channels input, got shape {list(shape)}")
    return shape  # type: ignore[return-value]


def build_conv_2d(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = _rank3(ctx, op, ctx.shape(op, src))
    w = ctx.const(op, 1).astype(np.float32)
    filters, kh, kw, wc = w.shape
    if wc != chans:
        raise ctx.fail(
            op, f"filter has {wc} input channels, input has {chans} (groups unsupported)"
        )
    bias = (
        ctx.const(op, 2).astype(np.float32)
        if ctx.has_input(op, 2)
        else np.zeros(filters, np.float32)
    )
    o = op.options
    out_h, out_w, g = _geometry(ctx, op, (rows, cols), (kh, kw),
                                (int(o["stride_h"]), int(o["stride_w"])),
                                (int(o["dilation_h_factor"]), int(o["dilation_w_factor"])),
                                int(o["padding"]))  # fmt: skip
    act = _fused(ctx, op)
    out = ctx.output(op, (out_h, out_w, filters))
    taps = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(kh * kw * chans, filters))

    def run(values: list) -> None:
        tflite_float.conv2d(values[src], taps, bias, g, out)
        activate(out, act)
        values[dst] = out

    return run


def build_depthwise_conv_2d(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = _rank3(ctx, op, ctx.shape(op, src))
    w = ctx.const(op, 1).astype(np.float32)
    _, kh, kw, out_chans = w.shape
    multiplier = max(1, int(op.options.get("depth_multiplier", 1)))
    if out_chans != chans * multiplier:
        multiplier = out_chans // chans if out_chans % chans == 0 else 0
        if multiplier < 1:
            raise ctx.fail(op, f"{out_chans} output channels for {chans} input channels")
    bias = (
        ctx.const(op, 2).astype(np.float32)
        if ctx.has_input(op, 2)
        else np.zeros(out_chans, np.float32)
    )
    o = op.options
    out_h, out_w, g = _geometry(ctx, op, (rows, cols), (kh, kw),
                                (int(o["stride_h"]), int(o["stride_w"])),
                                (int(o["dilation_h_factor"]), int(o["dilation_w_factor"])),
                                int(o["padding"]))  # fmt: skip
    act = _fused(ctx, op)
    out = ctx.output(op, (out_h, out_w, out_chans))
    taps = np.ascontiguousarray(w[0])

    def run(values: list) -> None:
        tflite_float.depthwise(values[src], taps, bias, g, multiplier, out)
        activate(out, act)
        values[dst] = out

    return run


def _build_pool(ctx: Context, op: Operator, is_max: bool) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = _rank3(ctx, op, ctx.shape(op, src))
    o = op.options
    k = (int(o["filter_height"]), int(o["filter_width"]))
    stride = (int(o["stride_h"]), int(o["stride_w"]))
    out_h, out_w, g = _geometry(ctx, op, (rows, cols), k, stride, (1, 1), int(o["padding"]))
    act = _fused(ctx, op)
    out = ctx.output(op, (out_h, out_w, chans))

    def run(values: list) -> None:
        tflite_float.pool(values[src], is_max, k[0], k[1], stride[0], stride[1], g[6], g[7], out)
        activate(out, act)
        values[dst] = out

    return run


def build_max_pool_2d(ctx: Context, op: Operator) -> Run:
    return _build_pool(ctx, op, True)


def build_average_pool_2d(ctx: Context, op: Operator) -> Run:
    return _build_pool(ctx, op, False)
