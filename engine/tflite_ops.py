"""One step per TFLite operator: plan-time checks and constants, run-time kernel calls.

Each ``build_<op>`` takes the graph, the operator and the :class:`Context` (tensor shapes
without the batch axis, which tensors are bit-packed and their channel counts, constants)
and returns a closure ``run(values)`` that reads and writes ``values[tensor_index]``.
Shapes are static: the outputs are allocated once and reused on every frame.
"""

from __future__ import annotations

import numpy as np
from edgebnn.engine.tflite_context import (
    ACT_CLAMPS,
    Context,
    KernelRun,
    Ref,
    Run,
    conv_geometry,
    fused_activation,
    rank3,
)
from edgebnn.engine.tflite_graph import Operator
from edgebnn.kernels import lce, tflite_conv, tflite_float
from edgebnn.kernels.tflite_float import activate


# -- Larq Compute Engine ops -----------------------------------------------------------------
def build_lce_quantize(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = rank3(ctx, op, ctx.shape(op, src))
    out = ctx.packed_output(dst, (rows, cols, lce.words_for(chans)), chans)
    return KernelRun(lce.quantize, (Ref(src), out), {dst: out})


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
    out_h, out_w, g = conv_geometry(
        ctx, op, (rows, cols), k, stride, (1, 1), int(o.get("padding", 0))
    )
    out = ctx.packed_output(dst, (out_h, out_w, words), ctx.packed[src])

    def run(values: list) -> None:
        lce.bmaxpool(values[src], k[0], k[1], stride[0], stride[1], g[6], g[7], out)
        values[dst] = out

    return run


# -- builtin float ops ------------------------------------------------------------------------
def build_conv_2d(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = rank3(ctx, op, ctx.shape(op, src))
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
    out_h, out_w, g = conv_geometry(ctx, op, (rows, cols), (kh, kw),
                                (int(o["stride_h"]), int(o["stride_w"])),
                                (int(o["dilation_h_factor"]), int(o["dilation_w_factor"])),
                                int(o["padding"]))  # fmt: skip
    act = fused_activation(ctx, op)
    out = ctx.output(op, (out_h, out_w, filters))
    taps = np.ascontiguousarray(w.transpose(1, 2, 3, 0).reshape(kh * kw * chans, filters))
    panels, _ = tflite_conv.pack_panels(taps)
    bias = tflite_conv.pad_bias(bias)
    lo, hi = (np.float32(v) for v in ACT_CLAMPS.get(act, (-np.inf, np.inf)))
    if act not in ACT_CLAMPS:  # TANH, after the kernel
        return _then_activate(
            KernelRun(tflite_conv.conv2d, (Ref(src), panels, bias, g, lo, hi, out, lce.NO_BITS),
                      {dst: out}), out, act)  # fmt: skip
    bits_dst, packed = ctx.fuse_quantize(op, dst, out.shape)
    writes = {dst: out} if bits_dst < 0 else {dst: out, bits_dst: packed}
    return KernelRun(tflite_conv.conv2d, (Ref(src), panels, bias, g, lo, hi, out, packed), writes)


def _then_activate(step: KernelRun, out: np.ndarray, act: int) -> Run:
    """``step`` then the activation ``act`` in place on ``out`` (no task form: one call)."""

    def run(values: list) -> None:
        step(values)
        activate(out, act)

    return run


def build_depthwise_conv_2d(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = rank3(ctx, op, ctx.shape(op, src))
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
    out_h, out_w, g = conv_geometry(ctx, op, (rows, cols), (kh, kw),
                                (int(o["stride_h"]), int(o["stride_w"])),
                                (int(o["dilation_h_factor"]), int(o["dilation_w_factor"])),
                                int(o["padding"]))  # fmt: skip
    act = fused_activation(ctx, op)
    out = ctx.output(op, (out_h, out_w, out_chans))
    taps = np.ascontiguousarray(w[0])
    lo, hi = (np.float32(v) for v in ACT_CLAMPS.get(act, (-np.inf, np.inf)))
    step = KernelRun(tflite_float.depthwise_clamped,
                     (Ref(src), taps, bias, g, multiplier, lo, hi, out), {dst: out})  # fmt: skip
    return step if act in ACT_CLAMPS else _then_activate(step, out, act)


def _build_pool(ctx: Context, op: Operator, is_max: bool) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    rows, cols, chans = rank3(ctx, op, ctx.shape(op, src))
    o = op.options
    k = (int(o["filter_height"]), int(o["filter_width"]))
    stride = (int(o["stride_h"]), int(o["stride_w"]))
    out_h, out_w, g = conv_geometry(ctx, op, (rows, cols), k, stride, (1, 1), int(o["padding"]))
    act = fused_activation(ctx, op)
    out = ctx.output(op, (out_h, out_w, chans))
    lo, hi = (np.float32(v) for v in ACT_CLAMPS.get(act, (-np.inf, np.inf)))
    args = (Ref(src), is_max, k[0], k[1], stride[0], stride[1], g[6], g[7], lo, hi, out)
    step = KernelRun(tflite_float.pool_clamped, args, {dst: out})
    return step if act in ACT_CLAMPS else _then_activate(step, out, act)


def build_max_pool_2d(ctx: Context, op: Operator) -> Run:
    return _build_pool(ctx, op, True)


def build_average_pool_2d(ctx: Context, op: Operator) -> Run:
    return _build_pool(ctx, op, False)
