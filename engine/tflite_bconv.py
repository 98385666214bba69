"""Plan Larq Compute Engine's ``LceBconv2d``: options, packed filters, output transform.

Inputs: 0 bit-packed activations, 1 bit-packed filters (O, kh, kw, ceil(C/32)) int32,
2 post-activation multiplier and 3 bias (float output), 4 thresholds (bitpacked output);
absent ones are -1. The output is float32 or, when its type is int32, bit-packed.
Options (a FlexBuffer map): channels_in, padding, pad_values, stride_*, dilation_*_factor,
fused_activation_function. The arithmetic is LCE's, see :mod:`edgebnn.kernels.lce`.
"""

from __future__ import annotations

import numpy as np
from edgebnn.engine.tflite_context import (
    ACT_CLAMPS,
    SAME,
    Context,
    KernelRun,
    Ref,
    Run,
    conv_geometry,
)
from edgebnn.engine.tflite_graph import Operator
from edgebnn.kernels import lce

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

#: TFLite's ``CalculateActivationRange`` for int32 accumulators, per fused activation.
NOMINAL_RANGE = {0: (INT32_MIN, INT32_MAX), 1: (0, INT32_MAX), 2: (-1, 1), 3: (0, 6)}


def popcounts(words: np.ndarray) -> np.ndarray:
    """Set bits per element of the last axis' words, summed over that axis."""
    as_bytes = np.ascontiguousarray(words).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.int64)


def output_transform(
    multiplier: np.ndarray, bias: np.ndarray, k: int, activation: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """LCE's fused float transform of ``2·acc``: (mul', bias', clamp_lo, clamp_hi).

    ``y = (K − 2·acc)·m + b = 2·acc·(−m) + (b + K·m)``, fused in double and rounded to float;
    the activation's clamp of ``K − 2·acc`` becomes a clamp of ``2·acc``.
    """
    m = multiplier.astype(np.float64)
    mul = (-m).astype(np.float32)
    fused_bias = (bias.astype(np.float64) + float(k) * m).astype(np.float32)
    lo, hi = NOMINAL_RANGE[activation]
    lo, hi = max(lo, -k), min(hi, k)
    return mul, fused_bias, k - hi, k - lo


def outside_taps(
    geometry: np.ndarray, in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> np.ndarray:
    """(out_rows, out_cols, kh, kw) True where a tap reads outside the input."""
    kh, kw, sh, sw, dh, dw, top, left = (int(v) for v in geometry)
    oy = np.arange(out_hw[0])[:, None] * sh - top + np.arange(kh)[None, :] * dh  # (rows, kh)
    ox = np.arange(out_hw[1])[:, None] * sw - left + np.arange(kw)[None, :] * dw  # (cols, kw)
    inside_y = (oy >= 0) & (oy < in_hw[0])
    inside_x = (ox >= 0) & (ox < in_hw[1])
    return ~(inside_y[:, None, :, None] & inside_x[None, :, None, :])


def zero_padding_correction(
    filters_u64: np.ndarray, chans: int, geometry: np.ndarray, in_hw: tuple[int, int],
    out_hw: tuple[int, int], mul: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """LCE's 'same zero' correction (out_rows, out_cols, O) float32: for each output pixel,
    ``(−m) · Σ_{taps outside the input} (C − 2·popcount(w_tap))``, in float32 as LCE does."""
    filters = filters_u64.shape[0]
    taps = filters_u64.shape[1] * filters_u64.shape[2]
    tap_values = chans - 2 * popcounts(filters_u64.reshape(filters, taps, -1))  # (O, taps)
    outside = outside_taps(geometry, in_hw, out_hw)
    counts = outside.reshape(out_hw[0], out_hw[1], taps).astype(np.int64) @ tap_values.T
    return (mul[None, None, :] * counts.astype(np.float32)).astype(np.float32)


def plan_bconv(ctx: Context, op: Operator) -> Run:
    o = op.options
    src, dst = op.inputs[0], op.outputs[0]
    if src not in ctx.packed:
        raise ctx.fail(op, "input must be bit-packed (the output of LceQuantize or a binary op)")
    if int(o.get("groups", 1)) != 1:
        raise ctx.fail(op, f"grouped binary convolutions (groups={o['groups']}) are not supported")
    rows, cols, words = ctx.shape(op, src)
    chans = int(o.get("channels_in", ctx.packed[src]))
    if chans != ctx.packed[src]:
        raise ctx.fail(op, f"channels_in={chans} but the input has {ctx.packed[src]} channels")
    packed = ctx.const(op, 1)
    if packed.dtype != np.int32 or packed.ndim != 4 or packed.shape[3] != -(-chans // 32):
        raise ctx.fail(op, f"filters must be bit-packed int32 (O, kh, kw, {-(-chans // 32)}), "
                       f"got {packed.dtype} {list(packed.shape)}")  # fmt: skip
    filters, kh, kw, _ = packed.shape
    filters_u64 = lce.lce_words_to_u64(packed)  # (O, kh, kw, words)
    weights = np.ascontiguousarray(filters_u64.reshape(filters, kh * kw * words).T)
    padding, pad_values = int(o.get("padding", 0)), int(o.get("pad_values", 0))
    if pad_values not in (0, 1):
        raise ctx.fail(op, f"pad_values must be 0 or 1, got {pad_values}")
    stride = (int(o.get("stride_height", 1)), int(o.get("stride_width", 1)))
    dilation = (int(o.get("dilation_height_factor", 1)), int(o.get("dilation_width_factor", 1)))
    out_h, out_w, geometry = conv_geometry(
        ctx, op, (rows, cols), (kh, kw), stride, dilation, padding
    )
    zero_same = padding == SAME and pad_values == 0
    zero_same = zero_same and bool(outside_taps(geometry, (rows, cols), (out_h, out_w)).any())

    if ctx.graph.tensors[dst].type_name == "int32":
        if zero_same:
            raise ctx.fail(op, "bit-packed output with 'same' zero padding (LCE never writes it)")
        thresholds = ctx.const(op, 4).astype(np.int64)
        if thresholds.shape != (filters,):
            raise ctx.fail(op, f"{thresholds.shape} thresholds for {filters} filters")
        out = ctx.packed_output(dst, (out_h, out_w, lce.words_for(filters)), filters)
        return KernelRun(lce.bconv_bits, (Ref(src), weights, geometry, thresholds, out), {dst: out})

    activation = int(o.get("fused_activation_function", 0))
    if activation not in NOMINAL_RANGE:
        raise ctx.fail(op, f"unsupported fused activation {activation}")
    multiplier = ctx.const(op, 2).astype(np.float32).reshape(-1)
    bias = ctx.const(op, 3).astype(np.float32).reshape(-1)
    if multiplier.shape != (filters,) or bias.shape != (filters,):
        raise ctx.fail(
            op, f"multiplier/bias of {multiplier.size}/{bias.size} for {filters} filters"
        )
    mul, fused_bias, lo, hi = output_transform(multiplier, bias, kh * kw * chans, activation)
    correction = np.zeros((0, 0, 0), np.float32)
    if zero_same:
        correction = zero_padding_correction(filters_u64, chans, geometry, (rows, cols),
                                             (out_h, out_w), mul)  # fmt: skip
    shape = (out_h, out_w, filters)
    fused = _fuse_add_quantize(ctx, op, shape)
    if fused is None:
        out, sum_dst, res_src, add_lo, add_hi = ctx.output(op, shape), dst, -1, -np.inf, np.inf
        bits_dst, packed_out = -1, lce.NO_BITS
    else:
        (out, sum_dst, res_src, add_lo, add_hi), (bits_dst, packed_out) = fused
    args = (Ref(src), weights, geometry, lo, hi, mul, fused_bias, correction,
            lce.NO_FLOATS if res_src < 0 else Ref(res_src), np.float32(add_lo),
            np.float32(add_hi), out, packed_out)  # fmt: skip
    writes = {sum_dst: out} if bits_dst < 0 else {sum_dst: out, bits_dst: packed_out}
    return KernelRun(lce.bconv_float_fused, args, writes)


def _fuse_add_quantize(ctx: Context, op: Operator, shape: tuple[int, int, int]):
    """If the convolution's only reader is an ADD of a residual computed before it (same
    shape), the step computes the sum (the ADD's output, its buffer allocated here) and, if
    an LceQuantize reads the sum, its bits too; those operators become part of this step.

    Returns ((sum buffer, sum tensor, residual tensor, clamp lo, clamp hi), (bits tensor or
    -1, packed buffer)) or None."""
    add = ctx.only_reader(op.outputs[0])
    if add is None or add.name != "ADD" or len(add.inputs) != 2 or len(add.outputs) != 1:
        return None
    activation = int(add.options.get("fused_activation_function", 0))
    if activation not in ACT_CLAMPS or add.inputs[0] == add.inputs[1]:
        return None
    residual = add.inputs[1] if add.inputs[0] == op.outputs[0] else add.inputs[0]
    tensor = ctx.graph.tensors[residual]
    if tensor.data is not None or residual in ctx.packed or ctx.shapes.get(residual) != shape:
        return None
    if ctx.graph.tensors[add.outputs[0]].type_name != "float32":
        return None
    ctx.shapes[op.outputs[0]] = shape
    total = ctx.output(add, shape)  # checked against the file's shape
    ctx.fused[add.index] = op.index
    lo, hi = ACT_CLAMPS[activation]
    bits_dst, packed = ctx.fuse_quantize(op, add.outputs[0], shape)
    return (total, add.outputs[0], residual, lo, hi), (bits_dst, packed)
