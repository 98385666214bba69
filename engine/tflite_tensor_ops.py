"""TFLite's element-wise, reduction and shape operators on batch-less float tensors.

Axes in the file count the batch axis; here they are shifted by one (an axis of 0, the
batch, is refused). Constants with a leading batch axis of 1 lose it before broadcasting.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from edgebnn.engine.tflite_context import Context, Run, fused_activation
from edgebnn.engine.tflite_graph import Operator
from edgebnn.kernels import tflite_float
from edgebnn.kernels.tflite_float import activate


def _stored_rank(ctx: Context, index: int) -> int:
    return len(ctx.graph.tensors[index].shape)


def _operand(ctx: Context, op: Operator, position: int) -> tuple[int, np.ndarray | None, tuple]:
    """(tensor, constant without batch axis or None, shape without batch axis)."""
    index = op.inputs[position]
    data = ctx.graph.tensors[index].data
    if data is None:
        return index, None, ctx.shape(op, index)
    data = data.astype(np.float32)
    if data.ndim == _stored_rank(ctx, op.outputs[0]) and data.ndim > 0 and data.shape[0] == 1:
        data = data[0]
    return index, data, data.shape


def _axis(ctx: Context, op: Operator, axis: int, rank: int) -> int:
    """A file axis (batch included, may be negative) -> an axis of the batch-less tensor."""
    stored = rank + 1
    axis = axis + stored if axis < 0 else axis
    if not 1 <= axis < stored:
        raise ctx.fail(op, f"axis {axis} is the batch axis or out of range")
    return axis - 1


def _binary(ctx: Context, op: Operator, ufunc: np.ufunc) -> Run:
    (a, ca, sa), (b, cb, sb) = _operand(ctx, op, 0), _operand(ctx, op, 1)
    try:
        shape = np.broadcast_shapes(sa, sb)
    except ValueError:
        raise ctx.fail(op, f"shapes {list(sa)} and {list(sb)} do not broadcast") from None
    act = fused_activation(ctx, op)
    out = ctx.output(op, shape)
    dst = op.outputs[0]

    def run(values: list) -> None:
        ufunc(values[a] if ca is None else ca, values[b] if cb is None else cb, out=out)
        activate(out, act)
        values[dst] = out

    return run


def build_add(ctx: Context, op: Operator) -> Run:
    return _binary(ctx, op, np.add)


def build_sub(ctx: Context, op: Operator) -> Run:
    return _binary(ctx, op, np.subtract)


def build_mul(ctx: Context, op: Operator) -> Run:
    return _binary(ctx, op, np.multiply)


def _unary(ctx: Context, op: Operator, fn: Callable[[np.ndarray, np.ndarray], object]) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    out = ctx.output(op, ctx.shape(op, src))

    def run(values: list) -> None:
        fn(values[src], out)
        values[dst] = out

    return run


def _logistic(x: np.ndarray, out: np.ndarray) -> None:
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += np.float32(1.0)
    np.reciprocal(out, out=out)


def build_logistic(ctx: Context, op: Operator) -> Run:
    return _unary(ctx, op, _logistic)


def build_relu(ctx: Context, op: Operator) -> Run:
    return _unary(ctx, op, lambda x, out: np.maximum(x, 0.0, out=out))


def build_relu6(ctx: Context, op: Operator) -> Run:
    return _unary(ctx, op, lambda x, out: np.clip(x, 0.0, 6.0, out=out))


def build_tanh(ctx: Context, op: Operator) -> Run:
    return _unary(ctx, op, lambda x, out: np.tanh(x, out=out))


def build_softmax(ctx: Context, op: Operator) -> Run:
    beta = np.float32(op.options.get("beta", 1.0))

    def softmax(x: np.ndarray, out: np.ndarray) -> None:
        np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
        out *= beta
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)

    return _unary(ctx, op, softmax)


def build_fully_connected(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    w = ctx.const(op, 1).astype(np.float32)
    if w.ndim != 2:
        raise ctx.fail(op, f"weights must be 2-D, got shape {list(w.shape)}")
    units, depth = w.shape
    size = int(np.prod(ctx.shape(op, src)))
    if size != depth:
        raise ctx.fail(op, f"input has {size} values, weights expect {depth}")
    bias = (
        ctx.const(op, 2).astype(np.float32) if ctx.has_input(op, 2) else np.zeros(units, np.float32)
    )
    weights = np.ascontiguousarray(w.T)
    act = fused_activation(ctx, op)
    out = (
        ctx.output(op, (units,))
        if not op.options.get("keep_num_dims")
        else ctx.output(op, (*ctx.shape(op, src)[:-1], units))
    )
    flat = out.reshape(units)

    def run(values: list) -> None:
        tflite_float.dense(values[src].reshape(depth), weights, bias, flat)
        activate(out, act)
        values[dst] = out

    return run


def build_concatenation(ctx: Context, op: Operator) -> Run:
    shapes = [ctx.shape(op, t) for t in op.inputs]
    axis = _axis(ctx, op, int(op.options.get("axis", -1)), len(shapes[0]))
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(
            a != b for i, (a, b) in enumerate(zip(s, shapes[0], strict=True)) if i != axis
        ):
            raise ctx.fail(op, f"cannot concatenate shapes {[list(s) for s in shapes]}")
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for s in shapes)
    act = fused_activation(ctx, op)
    out = ctx.output(op, tuple(shape))
    inputs, dst = op.inputs, op.outputs[0]
    consts = {t: d for t in inputs if (d := ctx.graph.tensors[t].data) is not None}

    def run(values: list) -> None:
        np.concatenate(
            [consts[t] if t in consts else values[t] for t in inputs], axis=axis, out=out
        )
        activate(out, act)
        values[dst] = out

    return run


def build_mean(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    shape = ctx.shape(op, src)
    axes = tuple(sorted({_axis(ctx, op, int(a), len(shape)) for a in np.ravel(ctx.const(op, 1))}))
    keep = bool(op.options.get("keep_dims", False))
    result = np.zeros(shape, np.float32).mean(axis=axes, keepdims=keep).shape
    out = ctx.output(op, result)

    def run(values: list) -> None:
        np.mean(values[src], axis=axes, keepdims=keep, out=out)
        values[dst] = out

    return run


def build_pad(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    shape = ctx.shape(op, src)
    pads = np.asarray(ctx.const(op, 1), np.int64).reshape(-1, 2)
    if pads.shape[0] != len(shape) + 1 or pads[0].any() or (pads < 0).any():
        raise ctx.fail(op, f"paddings {pads.tolist()} must be non-negative and not pad the batch")
    value = np.float32(ctx.const(op, 2).reshape(-1)[0]) if ctx.has_input(op, 2) else np.float32(0)
    pads = pads[1:]
    out = ctx.output(op, tuple(int(s + p.sum()) for s, p in zip(shape, pads, strict=True)))
    out.fill(value)
    inner = tuple(slice(int(p[0]), int(p[0]) + s) for s, p in zip(shape, pads, strict=True))

    def run(values: list) -> None:
        out[inner] = values[src]
        values[dst] = out

    return run


def build_padv2(ctx: Context, op: Operator) -> Run:
    return build_pad(ctx, op)


def build_reshape(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    stored = ctx.graph.tensors[dst].shape
    shape = tuple(stored[1:])
    if int(np.prod(shape)) != int(np.prod(ctx.shape(op, src))):
        raise ctx.fail(op, f"cannot reshape {list(ctx.shape(op, src))} to {list(shape)}")
    ctx.shapes[dst] = shape

    def run(values: list) -> None:
        values[dst] = values[src].reshape(shape)

    return run


def build_strided_slice(ctx: Context, op: Operator) -> Run:
    src, dst = op.inputs[0], op.outputs[0]
    shape = ctx.shape(op, src)
    o = op.options
    if (
        o.get("ellipsis_mask")
        or o.get("new_axis_mask")
        or o.get("shrink_axis_mask")
        or o.get("offset")
    ):
        raise ctx.fail(op, "ellipsis, new-axis, shrink-axis and offset masks are not supported")
    begin, end, strides = (np.ravel(ctx.const(op, i)).astype(np.int64) for i in (1, 2, 3))
    slices = []
    for axis in range(1, len(shape) + 1):
        b = None if (int(o.get("begin_mask", 0)) >> axis) & 1 else int(begin[axis])
        e = None if (int(o.get("end_mask", 0)) >> axis) & 1 else int(end[axis])
        slices.append(slice(b, e, int(strides[axis])))
    index = tuple(slices)
    out = ctx.output(op, np.zeros(shape, np.float32)[index].shape)

    def run(values: list) -> None:
        out[...] = values[src][index]
        values[dst] = out

    return run
