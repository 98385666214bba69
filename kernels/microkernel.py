"""A register-blocked float32 GEMM micro-kernel written in LLVM IR, callable from Numba.

BLAS ``sgemm`` repacks its operands on every call; for the small pointwise GEMMs of a
mobile network (14x14 = 196 and 7x7 = 49 pixels, 80-1280 channels) that is a large part
of the time, and the weights never change. :mod:`.gemm` packs them once, at plan time,
into panels of :data:`PANEL` output channels (``K x PANEL`` floats, contiguous), and each
call of :func:`tile` computes a ``rows x PANEL`` block of the output: ``rows x NV``
vector accumulators kept in registers over the whole ``K`` loop (SSA values with phi
nodes, so LLVM cannot spill them to an aliasing array as it must for Numba arrays), one
broadcast of each input and ``NV`` weight-vector loads per step, ``llvm.fmuladd`` (an FMA
where the CPU has one). The epilogue adds the bias, clamps to [0, 6] for ReLU6 and adds a
residual row, then stores. Summation order differs from the exact kernels (FMA, BLAS-like
order): only networks that opt in to BLAS (``pointwise: blas``) use it.

Rows are given as pointer tables (``ptrs[0, i]`` the input row, ``ptrs[1, i]`` the output,
``ptrs[2, i]`` the residual), so a block may span image rows of a ringed output, and
padding rows can point at scratch. The shape is chosen for the host: 16-float vectors and
up to 12 rows where there are 32 vector registers (AVX-512), 8-float vectors and 6 rows on
AVX2, 4-float vectors on ARM NEON (12 rows on AArch64, 6 on 32-bit).
"""

from __future__ import annotations

import platform

import llvmlite.binding as llvm
from edgebnn.kernels._jit import JIT
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Epilogue flags of :func:`tile`.
RELU6, RESIDUAL = 1, 2


def _host_shape() -> tuple[int, int]:
    """(floats per vector, most rows per tile) for this CPU."""
    machine = platform.machine().lower()
    try:
        features = llvm.get_host_cpu_features()
        avx512 = bool(features.get("avx512f", False))
        avx = bool(features.get("avx", False))
    except (RuntimeError, OSError):
        avx512 = avx = False
    if avx512:
        return 16, 12
    if machine in ("x86_64", "amd64", "i686", "x86"):
        return (8, 6) if avx else (4, 6)
    return 4, (12 if machine in ("aarch64", "arm64") else 6)


#: Floats per vector, and the most rows of a tile (its accumulators: rows x 2 vectors).
LANES, ROWS = _host_shape()
#: Vectors per panel, and output channels per packed weight panel.
NV = 2
PANEL = NV * LANES
#: The smaller tile heights, for the last rows of a block.
MID, SMALL = ROWS * 2 // 3, ROWS // 3


def _make_tile(rows: int, nv: int):  # type: ignore[no-untyped-def]
    """An intrinsic computing a ``rows x (nv * LANES)`` output block (see the module doc)."""

    @intrinsic
    def tile_intrinsic(typingctx, ptrs, b, bias, k, flags, pf):  # type: ignore[no-untyped-def]
        sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            ptrs, b, bias, k, flags, pf = args
            f32, i64, i32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
            vec = ir.VectorType(f32, LANES)
            fptr, vptr = f32.as_pointer(), vec.as_pointer()
            table = builder.inttoptr(ptrs, i64.as_pointer())

            def row_ptr(kind: int, i: int):  # type: ignore[no-untyped-def]
                return builder.inttoptr(builder.load(builder.gep(table, [i64(kind * ROWS + i)])), fptr)

            def load_vec(base, offset):  # type: ignore[no-untyped-def]
                return builder.load(builder.bitcast(builder.gep(base, [offset]), vptr), align=4)

            a_rows = [row_ptr(0, i) for i in range(rows)]
            bp = builder.inttoptr(b, fptr)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{LANES}f32"
            )
            i8p = ir.IntType(8).as_pointer()
            prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8"
            )
            pfp = builder.inttoptr(pf, i8p)
            zero = ir.Constant(vec, None)
            undef = ir.Constant(vec, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
            entry = builder.block
            loop = builder.append_basic_block("tile_loop")
            done = builder.append_basic_block("tile_done")
            builder.branch(loop)
            # The K loop (K >= 1): accumulators are phi nodes, i.e. registers.
            builder.position_at_end(loop)
            kk = builder.phi(i64)
            kk.add_incoming(i64(0), entry)
            accs = []
            for _ in range(rows * nv):
                acc = builder.phi(vec)
                acc.add_incoming(zero, entry)
                accs.append(acc)
            step = builder.mul(kk, i64(nv * LANES))
            # One cache line of the next panel per step (read, keep in L2, data).
            builder.call(prefetch, [builder.gep(pfp, [builder.mul(kk, i64(64))]), i32(0), i32(2), i32(1)])
            wv = [load_vec(bp, builder.add(step, i64(v * LANES))) for v in range(nv)]
            new = []
            for i in range(rows):
                a = builder.load(builder.gep(a_rows[i], [kk]), align=4)
                av = builder.shuffle_vector(builder.insert_element(undef, a, i32(0)), undef, splat)
                for v in range(nv):
                    new.append(builder.call(fma, [av, wv[v], accs[i * nv + v]]))
            nxt = builder.add(kk, i64(1))
            kk.add_incoming(nxt, loop)
            for acc, val in zip(accs, new, strict=True):
                acc.add_incoming(val, loop)
            builder.cbranch(builder.icmp_signed("<", nxt, k), loop, done)
            # Epilogue: + bias, ReLU6 (flag), + residual (flag), store.
            builder.position_at_end(done)
            biasp = builder.inttoptr(bias, fptr)
            bv = [load_vec(biasp, i64(v * LANES)) for v in range(nv)]
            six = ir.Constant(vec, [6.0] * LANES)
            relu6 = builder.icmp_signed("!=", builder.and_(flags, i64(RELU6)), i64(0))
            residual = builder.icmp_signed("!=", builder.and_(flags, i64(RESIDUAL)), i64(0))
            ys = []
            for i in range(rows):
                for v in range(nv):
                    y = builder.fadd(new[i * nv + v], bv[v])
                    lo = builder.select(builder.fcmp_ordered(">", y, zero), y, zero)
                    hi = builder.select(builder.fcmp_ordered("<", lo, six), lo, six)
                    ys.append(builder.select(relu6, hi, y))
            with builder.if_else(residual) as (with_res, plain):
                with with_res:
                    for i in range(rows):
                        c, r = row_ptr(1, i), row_ptr(2, i)
                        for v in range(nv):
                            y = builder.fadd(ys[i * nv + v], load_vec(r, i64(v * LANES)))
                            builder.store(y, builder.bitcast(builder.gep(c, [i64(v * LANES)]), vptr), align=4)
                with plain:
                    for i in range(rows):
                        c = row_ptr(1, i)
                        for v in range(nv):
                            builder.store(ys[i * nv + v], builder.bitcast(builder.gep(c, [i64(v * LANES)]), vptr), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile_intrinsic


_big1, _big2 = _make_tile(ROWS, 1), _make_tile(ROWS, 2)
_mid1, _mid2 = _make_tile(MID, 1), _make_tile(MID, 2)
_small1, _small2 = _make_tile(SMALL, 1), _make_tile(SMALL, 2)


@njit(**JIT)
def tile(rows, nv, ptrs, b, bias, k, flags, pf):  # type: ignore[no-untyped-def]
    """One ``rows x (nv * LANES)`` block, ``rows`` one of :data:`ROWS`, :data:`MID`,
    :data:`SMALL` and ``nv`` 1 or 2: ``out = epilogue(sum_k a[i, k] * w[k, :])``.

    ``ptrs`` is the address of an int64 (3, :data:`ROWS`) table of row addresses (input,
    output, residual), ``b`` of the packed panel (``k x nv * LANES`` floats), ``bias`` of
    ``nv * LANES`` floats; ``k >= 1``; ``flags`` :data:`RELU6` | :data:`RESIDUAL`.
    """
    if rows == ROWS:
        if nv == 2:
            _big2(ptrs, b, bias, k, flags, pf)
        else:
            _big1(ptrs, b, bias, k, flags, pf)
    elif rows == MID:
        if nv == 2:
            _mid2(ptrs, b, bias, k, flags, pf)
        else:
            _mid1(ptrs, b, bias, k, flags, pf)
    elif nv == 2:
        _small2(ptrs, b, bias, k, flags, pf)
    else:
        _small1(ptrs, b, bias, k, flags, pf)
