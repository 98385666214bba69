"""TFLite's CONV_2D, register-blocked, rounded exactly as TFLite's kernels round it.

A tile of :data:`TILE_PIXELS` output pixels x :data:`PANEL` output channels keeps its
accumulators in vector registers over the whole receptive field (SSA values with phi nodes
in LLVM IR, as :mod:`.microkernel` does; Numba arrays would make a memory round trip per
tap). Each accumulator starts at the bias and takes one fused multiply-add (``llvm.fma``:
one rounding, also where the CPU has no FMA instruction) per tap in (ky, kx, c) order: the
arithmetic of :func:`.tflite_float.conv2d`, bit for bit, which is that of LCE's default and
XNNPACK convolutions. A tap outside the input reads 0 (``fma(0, w, acc)``, as there).

A pixel's receptive field is read in place when the kernel is 1x1 (a pixel's channels are
contiguous), else gathered into a zero-padded row first. The weights are packed at plan
time into panels of :data:`PANEL` output channels (``K x PANEL`` floats, zero-padded).
The epilogue clamps (the fused activation) and stores; the rows variant also packs the
result's sign bits for a following LceQuantize.
"""

from __future__ import annotations

import numpy as np
from edgebnn.kernels._jit import HOT_JIT, JIT, PJIT, prange
from edgebnn.kernels.lce import pack_pixel
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Floats per vector, vectors per panel, output channels per panel.
LANES, NV = 8, 2
PANEL = LANES * NV
#: Output pixels per tile: 6 x 2 accumulators + 2 weight vectors + 1 broadcast = 15 of the
#: 16 AVX2 registers (NEON: 8-float vectors are register pairs, 29 of 32).
TILE_PIXELS = 6


@intrinsic
def _tile(typingctx, a_tab, c_tab, c_offset, panel, bias, k, lo, hi):
    """``c[i] = clamp(bias + Σ_k a[i][k] · w[k])`` for ``TILE_PIXELS`` rows ``i``; ``a_tab``
    and ``c_tab`` are addresses of int64 tables of row addresses (``c`` + ``c_offset``
    bytes), ``panel`` of ``k x PANEL`` floats, ``bias`` of ``PANEL`` floats; ``k >= 1``."""
    i64t, f32t = types.int64, types.float32
    sig = types.void(i64t, i64t, i64t, i64t, i64t, i64t, f32t, f32t)

    def codegen(context, builder, signature, args):
        a_tab, c_tab, c_offset, panel, bias, k, lo, hi = args
        f32, i64, i32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
        vec = ir.VectorType(f32, LANES)
        fptr, vptr = f32.as_pointer(), vec.as_pointer()
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{LANES}f32"
        )
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)

        def table_ptr(table, i: int, offset=None):
            tab = builder.inttoptr(table, i64.as_pointer())
            addr = builder.load(builder.gep(tab, [i64(i)]), align=8)
            if offset is not None:
                addr = builder.add(addr, offset)
            return builder.inttoptr(addr, fptr)

        def vec_at(base, offset):
            return builder.bitcast(builder.gep(base, [offset]), vptr)

        def broadcast(value):
            return builder.shuffle_vector(
                builder.insert_element(undef, value, i32(0)), undef, splat
            )

        a_rows = [table_ptr(a_tab, i) for i in range(TILE_PIXELS)]
        wp, bp = builder.inttoptr(panel, fptr), builder.inttoptr(bias, fptr)
        bv = [builder.load(vec_at(bp, i64(v * LANES)), align=4) for v in range(NV)]
        entry = builder.block
        loop = builder.append_basic_block("conv_tile_loop")
        done = builder.append_basic_block("conv_tile_done")
        builder.branch(loop)
        builder.position_at_end(loop)
        kk = builder.phi(i64)
        kk.add_incoming(i64(0), entry)
        accs = []
        for _ in range(TILE_PIXELS):
            for v in range(NV):
                acc = builder.phi(vec)
                acc.add_incoming(bv[v], entry)
                accs.append(acc)
        step = builder.mul(kk, i64(PANEL))
        wv = [
            builder.load(vec_at(wp, builder.add(step, i64(v * LANES))), align=4) for v in range(NV)
        ]
        new = []
        for i in range(TILE_PIXELS):
            av = broadcast(builder.load(builder.gep(a_rows[i], [kk]), align=4))
            for v in range(NV):
                new.append(builder.call(fma, [av, wv[v], accs[i * NV + v]]))
        nxt = builder.add(kk, i64(1))
        kk.add_incoming(nxt, loop)
        for acc, val in zip(accs, new, strict=True):
            acc.add_incoming(val, loop)
        builder.cbranch(builder.icmp_signed("<", nxt, k), loop, done)
        builder.position_at_end(done)
        lov, hiv = broadcast(lo), broadcast(hi)
        for i in range(TILE_PIXELS):
            c = table_ptr(c_tab, i, c_offset)
            for v in range(NV):
                y = new[i * NV + v]
                y = builder.select(builder.fcmp_ordered("<", y, lov), lov, y)  # NaN stays
                y = builder.select(builder.fcmp_ordered(">", y, hiv), hiv, y)
                builder.store(y, vec_at(c, i64(v * LANES)), align=4)
        return context.get_dummy_value()

    return sig, codegen


def pack_panels(taps: np.ndarray) -> tuple[np.ndarray, int]:
    """(K, filters) weights -> (panels, K, PANEL) float32, zero-padded; and filters."""
    k, filters = taps.shape
    panels = -(-filters // PANEL)
    padded = np.zeros((k, panels * PANEL), np.float32)
    padded[:, :filters] = taps
    return np.ascontiguousarray(padded.reshape(k, panels, PANEL).transpose(1, 0, 2)), filters


def pad_bias(bias: np.ndarray) -> np.ndarray:
    """The bias zero-padded to whole panels."""
    padded = np.zeros(-(-bias.size // PANEL) * PANEL, np.float32)
    padded[: bias.size] = bias
    return padded


@njit(**HOT_JIT)
def _gather(flat, rows, cols, chans, y0, x0, kh, kw, dh, dw, patch):
    """One pixel's receptive field in (ky, kx, c) order, zeros outside the input; a tap row
    wholly inside is one contiguous copy."""
    span = kw * chans
    for ky in range(kh):
        y = y0 + ky * dh
        j = ky * span
        if 0 <= y < rows and dw == 1 and 0 <= x0 and x0 + kw <= cols:
            base = (y * cols + x0) * chans
            for t in range(span):
                patch[j + t] = flat[base + t]
            continue
        for kx in range(kw):
            xx = x0 + kx * dw
            inside = 0 <= y < rows and 0 <= xx < cols
            base = (y * cols + xx) * chans
            for c in range(chans):
                patch[j + c] = flat[base + c] if inside else np.float32(0.0)
            j += chans


@njit(**JIT)
def conv2d_pixels(first, last, x, panels, bias, geometry, lo, hi, out, packed):
    """Output pixels [first, last) (row-major) of :func:`conv2d`."""
    kh, kw, sh, sw, dh, dw, pad_top, pad_left = geometry
    rows, cols, chans = x.shape
    out_cols, filters = out.shape[1], out.shape[2]
    n_panels, k = panels.shape[0], panels.shape[1]
    width = n_panels * PANEL
    in_place = kh == 1 and kw == 1
    whole = filters == width  # else tiles store to scratch, copied out
    pack = packed.shape[0] > 0
    patches = np.zeros((TILE_PIXELS, k), np.float32)
    scratch = np.empty((TILE_PIXELS, width), np.float32)
    a_tab = np.empty(TILE_PIXELS, np.int64)
    c_tab = np.empty(TILE_PIXELS, np.int64)
    flat = x.reshape(rows * cols * chans)
    xa, pa, sa, oa = x.ctypes.data, patches.ctypes.data, scratch.ctypes.data, out.ctypes.data
    for p0 in range(first, last, TILE_PIXELS):
        n = min(TILE_PIXELS, last - p0)
        for i in range(TILE_PIXELS):
            p = p0 + min(i, n - 1)  # the last pixel again fills the tile
            oy, ox = p // out_cols, p % out_cols
            y0, x0 = oy * sh - pad_top, ox * sw - pad_left
            if in_place and 0 <= y0 < rows and 0 <= x0 < cols:
                a_tab[i] = xa + 4 * ((y0 * cols + x0) * chans)
            else:
                _gather(flat, rows, cols, chans, y0, x0, kh, kw, dh, dw, patches[i])
                a_tab[i] = pa + 4 * i * k
            c_tab[i] = oa + 4 * p * filters if whole and i < n else sa + 4 * i * width
        for j in range(n_panels):
            _tile(a_tab.ctypes.data, c_tab.ctypes.data, 4 * j * PANEL,
                  panels.ctypes.data + 4 * j * k * PANEL, bias.ctypes.data + 4 * j * PANEL,
                  k, lo, hi)  # fmt: skip
        for i in range(n):
            oy, ox = (p0 + i) // out_cols, (p0 + i) % out_cols
            if not whole:
                for o in range(filters):
                    out[oy, ox, o] = scratch[i, o]
            if pack:
                pack_pixel(out[oy, ox], packed[oy, ox])


@njit(**PJIT)
def conv2d(x, panels, bias, geometry, lo, hi, out, packed):
    """CONV_2D with a fused clamp ``[lo, hi]`` (the activation) and, if ``packed`` is not
    empty, the sign bits of the result (LceQuantize). ``x`` and ``out`` C-contiguous,
    ``panels``/``bias`` from :func:`pack_panels`/:func:`pad_bias`."""
    pixels = out.shape[0] * out.shape[1]
    chunks = min(out.shape[0], -(-pixels // (4 * TILE_PIXELS)))
    for t in prange(chunks):
        first, last = pixels * t // chunks, pixels * (t + 1) // chunks
        conv2d_pixels(first, last, x, panels, bias, geometry, lo, hi, out, packed)
