"""The RGB stem's register tile: 27 fused multiply-adds for a few output pixels x 16 filters,
then the interval tests of :mod:`.stem`, as bit masks, in registers.

Numba arrays would make a memory round trip per tap, and LLVM's vectoriser, given a column
loop, vectorises along the output pixels: 27 input loads and a broadcast of every weight per
tap and pixel vector (the weights of more than a few filters do not fit the registers).
Here, as in :mod:`.tflite_conv`, the accumulators are SSA values (``TILE_PIXELS`` pixels x
two 8-float vectors of filters), written in LLVM IR: per tap two weight-vector loads and
one broadcast input value per pixel, 12 multiply-adds, nothing spilled (15 of AVX2's 16
registers, 29 of NEON's 32).

The taps are summed in the reference's order, (kernel row, kernel column, channel), each
with ``llvm.fmuladd`` (a fused multiply-add where the CPU has one, else a multiply and an
add: either is within the error bound :mod:`.stem` tests against). The input is a row of
interleaved channels, so kernel row ``i``'s nine taps of pixel ``q`` are the nine floats
from ``row_i[3 q]``. The epilogue compares the 16 sums with four bounds per filter (the
intervals shrunk and widened by the error bound): it stores bit f of pixel q's word where
the sum is inside the shrunk interval, and returns whether any sum is inside the widened
but not the shrunk one (then the tile is recomputed in the reference order).
"""

from __future__ import annotations

import struct

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Floats per vector, vectors per panel, filters per panel.
LANES, NV = 8, 2
PANEL = LANES * NV
#: Output pixels per tile: 6 x 2 accumulators + 2 weight vectors + 1 broadcast = 15 AVX2
#: registers (NEON: 8-float vectors are register pairs, 29 of 32). 32-bit ARM has 16
#: quad registers: 2 pixels there.
TILE_PIXELS = 6 if struct.calcsize("P") == 8 else 2
#: Taps of a 3x3 kernel on 3 channels, and the floats of a kernel row (3 columns x 3 channels).
TAPS, ROW_TAPS = 27, 9
#: The four bounds of a panel, in this order, each ``PANEL`` floats.
IN_LO, IN_HI, OUT_LO, OUT_HI = 0, 1, 2, 3


@intrinsic
def stem_tile(typingctx, row0, row1, row2, panel, bounds, sure):
    """Sums of ``TILE_PIXELS`` pixels x ``PANEL`` filters and their test masks (module
    docstring). ``row0..2`` are the addresses of the three input rows' floats at the tile's
    first pixel, ``panel`` of ``TAPS x PANEL`` weights, ``bounds`` of ``4 x PANEL`` floats;
    pixel q's ``PANEL`` test bits go to the two bytes at ``sure + 4 q`` (little-endian: the
    panel's half of a uint32 word). Returns 1 where a sum is within the error bound of its
    interval's ends (the bits are not sure then), else 0."""
    i64t = types.int64
    sig = types.int64(i64t, i64t, i64t, i64t, i64t, i64t)

    def codegen(context, builder, signature, args):
        row0, row1, row2, panel, bounds, sure = args
        f32, i64, i32, i8 = ir.FloatType(), ir.IntType(64), ir.IntType(32), ir.IntType(8)
        vec = ir.VectorType(f32, LANES)
        fptr, vptr, bptr = f32.as_pointer(), vec.as_pointer(), i8.as_pointer()
        fmuladd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{LANES}f32"
        )
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)

        def vec_at(base, offset: int):
            return builder.load(builder.bitcast(builder.gep(base, [i64(offset)]), vptr), align=4)

        def broadcast(value):
            return builder.shuffle_vector(
                builder.insert_element(undef, value, i32(0)), undef, splat
            )

        # Pixel offsets through an empty inline asm: LLVM cannot see that pixel q's fourth
        # tap is pixel q + 1's first, so it does not merge those loads into values live
        # across taps (its registers would spill then).
        intp = context.get_value_type(types.intp)
        opaque = ir.FunctionType(intp, [intp])
        offsets = [
            builder.asm(opaque, "", "=r,0", [intp(3 * q)], False) for q in range(TILE_PIXELS)
        ]
        pixels = [
            [builder.gep(builder.inttoptr(r, fptr), [offset]) for offset in offsets]
            for r in (row0, row1, row2)
        ]
        wp, bp = builder.inttoptr(panel, fptr), builder.inttoptr(bounds, fptr)
        accs: list = [None] * (TILE_PIXELS * NV)  # the first tap is a product (0 + p = p)
        for t in range(TAPS):
            row, offset = pixels[t // ROW_TAPS], t % ROW_TAPS
            wv = [vec_at(wp, t * PANEL + v * LANES) for v in range(NV)]
            for q in range(TILE_PIXELS):
                x = builder.load(builder.gep(row[q], [i64(offset)]), align=4)
                xv = broadcast(x)
                for v in range(NV):
                    acc = accs[q * NV + v]
                    accs[q * NV + v] = (
                        builder.fmul(xv, wv[v])
                        if acc is None
                        else builder.call(fmuladd, [xv, wv[v], acc])
                    )

        ivec = ir.VectorType(i32, LANES)

        def inside(y, lo, hi, v):
            """All-ones lanes (i32) where ``bounds[lo] <= y <= bounds[hi]``: masks as wide as
            the floats, so that x86 combines them with vector logic, not packed bytes."""
            low = vec_at(bp, lo * PANEL + v * LANES)
            high = vec_at(bp, hi * PANEL + v * LANES)
            above = builder.sext(builder.fcmp_ordered(">=", y, low), ivec)
            below = builder.sext(builder.fcmp_ordered("<=", y, high), ivec)
            return builder.and_(above, below)

        def bits(mask):
            return builder.bitcast(builder.trunc(mask, ir.VectorType(ir.IntType(1), LANES)), i8)

        out = builder.inttoptr(sure, bptr)
        unsure = None
        for q in range(TILE_PIXELS):
            for v in range(NV):
                y = accs[q * NV + v]
                inner = inside(y, IN_LO, IN_HI, v)
                near = builder.and_(inside(y, OUT_LO, OUT_HI, v), builder.not_(inner))
                unsure = near if unsure is None else builder.or_(unsure, near)
                builder.store(bits(inner), builder.gep(out, [i64(4 * q + v)]), align=1)
        flag = builder.icmp_unsigned("!=", bits(unsure), i8(0))
        return builder.zext(flag, i64)

    return sig, codegen
