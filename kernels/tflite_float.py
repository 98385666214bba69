"""Float kernels with TensorFlow Lite's semantics: explicit (possibly asymmetric) padding.

TFLite's 'same' padding puts the odd pixel at the bottom/right; outside pixels are zeros for
convolutions and are skipped by pooling (average pooling divides by the in-bounds count).
Activations are (rows, cols, channels) float32 arrays without a batch axis.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: TFLite ``ActivationFunctionType`` codes.
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6, ACT_TANH = 0, 1, 2, 3, 4


def activate(x: np.ndarray, code: int) -> np.ndarray:
    """Apply a fused activation in place (NONE, RELU, RELU_N1_TO_1, RELU6, TANH)."""
    if code == ACT_RELU:
        np.maximum(x, 0.0, out=x)
    elif code == ACT_RELU6:
        np.clip(x, 0.0, 6.0, out=x)
    elif code == ACT_RELU_N1_TO_1:
        np.clip(x, -1.0, 1.0, out=x)
    elif code == ACT_TANH:
        np.tanh(x, out=x)
    return x


@intrinsic
def fma32(typingctx, a, b, c):
    """LLVM's ``fma.f32``: a·b + c rounded once (one instruction where the CPU has FMA)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = cgutils.ir.FloatType()
        fn = cgutils.get_or_insert_function(
            builder.module, cgutils.ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32"
        )
        return builder.call(fn, list(args))

    return sig, codegen


def same_padding(size: int, k: int, stride: int, dilation: int, same: bool) -> tuple[int, int]:
    """(output size, padding before) for one spatial axis, as TFLite computes them."""
    effective = (k - 1) * dilation + 1
    if same:
        out = -(-size // stride)
        total = max((out - 1) * stride + effective - size, 0)
        return out, total // 2
    return (size - effective + stride) // stride, 0


@njit(**HOT_JIT)
def _tap_value(x, y, xx, c, inside):
    return x[y, xx, c] if inside else np.float32(0.0)


@njit(**PJIT)
def conv2d(x, w, bias, geometry, out):
    """Convolution as TFLite's kernels round it: the accumulator starts at the bias and
    takes one fused multiply-add per tap in (ky, kx, c) order (bit-exact to LCE's default
    and XNNPACK convolutions). ``w`` is (kh*kw*C, filters) in (ky, kx, c) order; a tap
    outside the input adds fma(0, w, acc) = acc. Four pixels share each weight load."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left = geometry
    rows, cols, chans = x.shape
    out_rows, out_cols, filters = out.shape
    for oy in prange(out_rows):
        # separate allocations: LLVM knows they do not alias and vectorises over filters
        a0, a1 = np.empty(filters, np.float32), np.empty(filters, np.float32)
        a2, a3 = np.empty(filters, np.float32), np.empty(filters, np.float32)
        for ox0 in range(0, out_cols, 4):
            for o in range(filters):
                a0[o] = bias[o]
                a1[o] = bias[o]
                a2[o] = bias[o]
                a3[o] = bias[o]
            for ky in range(kh):
                y = oy * sh - pad_top + ky * dh
                if y < 0 or y >= rows:
                    continue
                for kx in range(kw):
                    x0 = ox0 * sw - pad_left + kx * dw
                    x1, x2, x3 = x0 + sw, x0 + 2 * sw, x0 + 3 * sw
                    in0 = 0 <= x0 < cols
                    in1 = 0 <= x1 < cols and ox0 + 1 < out_cols
                    in2 = 0 <= x2 < cols and ox0 + 2 < out_cols
                    in3 = 0 <= x3 < cols and ox0 + 3 < out_cols
                    base = (ky * kw + kx) * chans
                    for c in range(chans):
                        v0 = _tap_value(x, y, x0, c, in0)
                        v1 = _tap_value(x, y, x1, c, in1)
                        v2 = _tap_value(x, y, x2, c, in2)
                        v3 = _tap_value(x, y, x3, c, in3)
                        wc = w[base + c]
                        for o in range(filters):
                            wo = wc[o]
                            a0[o] = fma32(v0, wo, a0[o])
                            a1[o] = fma32(v1, wo, a1[o])
                            a2[o] = fma32(v2, wo, a2[o])
                            a3[o] = fma32(v3, wo, a3[o])
            for o in range(filters):
                out[oy, ox0, o] = a0[o]
            if ox0 + 1 < out_cols:
                for o in range(filters):
                    out[oy, ox0 + 1, o] = a1[o]
            if ox0 + 2 < out_cols:
                for o in range(filters):
                    out[oy, ox0 + 2, o] = a2[o]
            if ox0 + 3 < out_cols:
                for o in range(filters):
                    out[oy, ox0 + 3, o] = a3[o]


@njit(**PJIT)
def dense(x, w, bias, out):
    """Fully connected: ``out = bias + Σ_k x[k]·w[k]`` with one fused multiply-add per
    input in order, as :func:`conv2d`. ``w`` is (inputs, units); blocks of units run in
    parallel."""
    depth, units = w.shape
    blocks = (units + 63) // 64
    for b in prange(blocks):
        lo = b * 64
        hi = min(units, lo + 64)
        acc = np.empty(hi - lo, np.float32)
        for u in range(lo, hi):
            acc[u - lo] = bias[u]
        for k in range(depth):
            v = x[k]
            for u in range(lo, hi):
                acc[u - lo] = fma32(v, w[k, u], acc[u - lo])
        for u in range(lo, hi):
            out[u] = acc[u - lo]


@njit(**HOT_JIT)
def clamp_row(row, lo, hi):
    """A fused activation's clamp in place (NaN stays NaN, as NumPy's clip)."""
    for o in range(row.shape[0]):
        v = row[o]
        if v < lo:  # noqa: PLR1730
            v = lo
        if v > hi:  # noqa: PLR1730
            v = hi
        row[o] = v


@njit(**JIT)
def depthwise_rows(r0, r1, x, w, bias, geometry, multiplier, lo, hi, out):
    """Output rows [r0, r1) of :func:`depthwise_clamped`."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left = geometry
    rows, cols, _ = x.shape
    out_cols, out_chans = out.shape[1], out.shape[2]
    clamp = lo > -np.inf or hi < np.inf
    for oy in range(r0, r1):
        for ox in range(out_cols):
            acc = out[oy, ox]
            for o in range(out_chans):
                acc[o] = bias[o]
            for ky in range(kh):
                y = oy * sh - pad_top + ky * dh
                if y < 0 or y >= rows:
                    continue
                for kx in range(kw):
                    xx = ox * sw - pad_left + kx * dw
                    if xx < 0 or xx >= cols:
                        continue
                    src, wk = x[y, xx], w[ky, kx]
                    if multiplier == 1:
                        for o in range(out_chans):
                            product = src[o] * wk[o]
                            acc[o] = acc[o] + product
                    else:
                        for o in range(out_chans):
                            product = src[o // multiplier] * wk[o]
                            acc[o] = acc[o] + product
            if clamp:
                clamp_row(acc, lo, hi)


@njit(**PJIT)
def depthwise_clamped(x, w, bias, geometry, multiplier, lo, hi, out):
    """Depthwise conv with a fused clamp ``[lo, hi]``; ``w`` is (kh, kw, C*multiplier),
    output channel c*m + j reads c.

    Rounded as TFLite's default kernel does: the accumulator starts at the bias, then one
    multiply and one add (two roundings) per tap in (ky, kx) order."""
    for oy in prange(out.shape[0]):
        depthwise_rows(oy, oy + 1, x, w, bias, geometry, multiplier, lo, hi, out)


def depthwise(x, w, bias, geometry, multiplier, out) -> None:
    """:func:`depthwise_clamped` without a clamp."""
    inf = np.float32(np.inf)
    depthwise_clamped(x, w, bias, geometry, multiplier, -inf, inf, out)


@njit(**JIT)
def pool_rows(r0, r1, x, is_max, fh, fw, sh, sw, pad_top, pad_left, lo, hi, out):
    """Output rows [r0, r1) of :func:`pool_clamped`."""
    if is_max:
        _max_pool_rows(r0, r1, x, fh, fw, sh, sw, pad_top, pad_left, out)
    else:
        for oy in range(r0, r1):
            _average_pool_row(x, oy, fh, fw, sh, sw, pad_top, pad_left, out)
    if lo > -np.inf or hi < np.inf:
        for oy in range(r0, r1):
            for ox in range(out.shape[1]):
                clamp_row(out[oy, ox], lo, hi)


@njit(**HOT_JIT)
def _average_pool_row(x, oy, fh, fw, sh, sw, pad_top, pad_left, out):
    """One output row of average pooling: the sum over in-bounds taps in (ky, kx) order,
    divided by their count."""
    rows, cols, chans = x.shape
    y0 = oy * sh - pad_top
    ya, yb = max(y0, 0), min(y0 + fh, rows)
    for ox in range(out.shape[1]):
        x0 = ox * sw - pad_left
        xa, xb = max(x0, 0), min(x0 + fw, cols)
        acc = out[oy, ox]
        for c in range(chans):
            acc[c] = np.float32(0.0)
        for y in range(ya, yb):
            for xx in range(xa, xb):
                src = x[y, xx]
                for c in range(chans):
                    acc[c] += src[c]
        count = np.float32(max((yb - ya) * (xb - xa), 1))
        for c in range(chans):
            acc[c] = acc[c] / count


@njit(**JIT)
def _max_pool_rows(r0, r1, x, fh, fw, sh, sw, pad_top, pad_left, out):
    """Output rows [r0, r1) of max pooling: ``acc = v if acc < v else acc`` (C++'s
    std::max, TFLite's) over the in-bounds taps in (ky, kx) order, whole output rows per
    tap: the pixels that read inside the input take the tap at once (contiguous runs when
    the stride is 1). Each tap reads one buffer and writes the other, both allocated here:
    LLVM then knows the stores alias neither the loads nor the input, and vectorises
    (measured 2x faster than updating one buffer in place)."""
    rows, cols, chans = x.shape
    out_cols = out.shape[1]
    n = out_cols * chans
    acc = np.empty(n, np.float32)
    tmp = np.empty(n, np.float32)
    for oy in range(r0, r1):
        for i in range(n):
            acc[i] = -np.inf
        y0 = oy * sh - pad_top
        for y in range(max(y0, 0), min(y0 + fh, rows)):
            src = x[y].reshape(cols * chans)
            for kx in range(fw):
                # the output columns whose tap kx reads column ox * sw - pad_left + kx inside
                ox_lo = max(0, -(-(pad_left - kx) // sw))
                ox_hi = min(out_cols, (cols - 1 + pad_left - kx) // sw + 1)
                if ox_hi <= ox_lo:
                    continue
                lo_i, hi_i = ox_lo * chans, ox_hi * chans
                for i in range(lo_i):  # pixels this tap misses keep their value
                    tmp[i] = acc[i]
                for i in range(hi_i, n):
                    tmp[i] = acc[i]
                if sw == 1:
                    s0 = (ox_lo - pad_left + kx) * chans
                    a_run, t_run = acc[lo_i:hi_i], tmp[lo_i:hi_i]
                    s_run = src[s0 : s0 + hi_i - lo_i]
                    for i in range(hi_i - lo_i):
                        a, v = a_run[i], s_run[i]
                        t_run[i] = v if a < v else a  # noqa: FURB136 (std::max, NaN)
                else:
                    for ox in range(ox_lo, ox_hi):
                        d0, s0 = ox * chans, (ox * sw - pad_left + kx) * chans
                        for c in range(chans):
                            a, v = acc[d0 + c], src[s0 + c]
                            tmp[d0 + c] = v if a < v else a  # noqa: FURB136
                acc, tmp = tmp, acc
        row = out[oy].reshape(n)
        for i in range(n):
            row[i] = acc[i]


@njit(**PJIT)
def pool_clamped(x, is_max, fh, fw, sh, sw, pad_top, pad_left, lo, hi, out):
    """Max or average pooling over in-bounds positions (TFLite's 'same' semantics), then
    a fused clamp ``[lo, hi]``."""
    for oy in prange(out.shape[0]):
        pool_rows(oy, oy + 1, x, is_max, fh, fw, sh, sw, pad_top, pad_left, lo, hi, out)


def pool(x, is_max, fh, fw, sh, sw, pad_top, pad_left, out) -> None:
    """:func:`pool_clamped` without a clamp."""
    inf = np.float32(np.inf)
    pool_clamped(x, is_max, fh, fw, sh, sw, pad_top, pad_left, -inf, inf, out)
