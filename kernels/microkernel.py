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
padding rows can point at scratch.

The tile shape (:data:`SHAPES`) is chosen once, at import, by :func:`select_shape`: from the
CPU features Numba compiles for (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``/
``NUMBA_ENABLE_AVX`` honoured, so the shape is a function of Numba's cache key), 16-float
vectors and 12 rows where there are 32 vector registers (AVX-512), 8 x 6 with AVX(2),
4 x 6 with SSE only, 4 x 12 on AArch64 (NEON, 32 registers: the same 64-bit IR as on x86,
its shape run here and its AArch64 code inspected, 27 registers and no spills, but not run
on ARM). On 32-bit processes (Raspbian armv7l) and other architectures it is off
(:data:`AVAILABLE` False: never run there) and the planner keeps its BLAS/NumPy paths. ``EDGEBNN_GEMM_TILE``
(``16x12``, ``8x6``, ``4x12``, ``4x6`` or ``off``) forces a choice, for tests and for trying
the kernel on new hardware; the kernels are then compiled uncached (the shape is not part of
Numba's cache key).

The IR is target-independent (generic vectors, ``llvm.fmuladd``: an FMA where the CPU has
one, a multiply and an add where not; ``llvm.prefetch``, which never faults and is dropped
where there is no prefetch instruction), and every load and store is declared 4-byte aligned:
any float32 array works, the cache-line alignment of :mod:`.memory` only makes it faster.
All arguments are 64-bit in the IR on every target (addresses are truncated to the
pointer width by ``inttoptr``).
"""

from __future__ import annotations

import os
import struct
import warnings

import llvmlite.binding as llvm
from edgebnn.kernels._jit import JIT, PJIT
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Epilogue flags of :func:`tile`.
RELU6, RESIDUAL = 1, 2

#: The tile shapes, (floats per vector, most rows per tile), by the names
#: ``EDGEBNN_GEMM_TILE`` accepts. Each is tested on x86 (tests/kernels/test_gemm_shapes.py).
SHAPES = {"16x12": (16, 12), "8x6": (8, 6), "4x12": (4, 12), "4x6": (4, 6)}
#: The environment variable forcing a shape (read here only).
TILE_ENV = "EDGEBNN_GEMM_TILE"


def target_features() -> set[str]:
    """The CPU features Numba's JIT compiles for, as Numba computes them (NUMBA_CPU_FEATURES,
    or the host's with AVX* removed under NUMBA_ENABLE_AVX=0; "" for NUMBA_CPU_NAME=generic)."""
    from numba.core import codegen, config

    flat = (
        config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    )
    return {f[1:] for f in flat.split(",") if f.startswith("+")}


def shape_for(arch: str, pointer_bytes: int, features: set[str]) -> tuple[int, int] | None:
    """The shape for a process (LLVM triple's architecture, pointer size, Numba's target
    features), or None where the kernel is untested."""
    arch = arch.lower()
    if pointer_bytes != 8:
        # 32-bit pointers (Raspbian armv7l, i686): never run on such hardware (no ARM machine
        # or emulator where this was written); the planner's BLAS/NumPy paths are used.
        return None
    if arch in ("x86_64", "amd64"):
        if "avx512f" in features:
            return SHAPES["16x12"]  # 24 accumulators + 2 weights + 1 broadcast of 32 zmm
        return SHAPES["8x6"] if "avx" in features else SHAPES["4x6"]  # 15 of 16 ymm/xmm
    if arch in ("aarch64", "arm64"):
        return SHAPES["4x12"]  # NEON: 128-bit vectors, 32 registers
    return None  # other architectures: untested


def host_shape() -> tuple[int, int] | None:
    """:func:`shape_for` this process. The architecture is LLVM's process triple's, not
    ``platform.machine()`` (the kernel's: 32-bit Raspberry Pi OS on a 64-bit kernel says
    aarch64)."""
    arch = llvm.get_process_triple().split("-")[0]
    return shape_for(
        arch, struct.calcsize("P"), target_features() if arch in ("x86_64", "amd64") else set()
    )


def select_shape() -> tuple[tuple[int, int] | None, bool]:
    """(shape or None for off, whether it is the host's choice), from :data:`TILE_ENV`."""
    value = os.environ.get(TILE_ENV, "").strip().lower()
    if value in ("", "auto"):
        return host_shape(), True
    if value == "off":
        return None, False
    if value in SHAPES:
        return SHAPES[value], False
    warnings.warn(
        f"{TILE_ENV}={value!r} is not one of {', '.join(SHAPES)}, off, auto: using auto",
        stacklevel=2,
    )
    return host_shape(), True


_shape, _from_host = select_shape()
#: False where the packed GEMM is not to be used (the planner falls back to BLAS/NumPy).
AVAILABLE = _shape is not None
#: Floats per vector, and the most rows of a tile (its accumulators: rows x 2 vectors).
#: Defined when not AVAILABLE too (4 x 6) so that the packing helpers still work.
LANES, ROWS = _shape if _shape is not None else SHAPES["4x6"]
#: Vectors per panel, and output channels per packed weight panel.
NV = 2
PANEL = NV * LANES
#: The smaller tile heights, for the last rows of a block.
MID, SMALL = ROWS * 2 // 3, ROWS // 3
#: Numba options for the kernels built on this shape (here and in :mod:`.gemm`). Cached only
#: when the shape follows from the target, which Numba's cache key records; a forced shape
#: is not in the key, and a cached kernel of another shape would read the panels wrongly.
KERNEL_JIT = JIT if _from_host else {**JIT, "cache": False}
KERNEL_PJIT = PJIT if _from_host else {**PJIT, "cache": False}


def _make_tile(rows: int, nv: int):
    """An intrinsic computing a ``rows x (nv * LANES)`` output block (see the module doc)."""

    @intrinsic
    def tile_intrinsic(typingctx, ptrs, b, bias, k, flags, pf):
        # int64, not intp: the IR below is all i64, also where pointers are 32-bit.
        sig = types.void(
            types.int64, types.int64, types.int64, types.int64, types.int64, types.int64
        )

        def codegen(context, builder, signature, args):
            ptrs, b, bias, k, flags, pf = args
            f32, i64, i32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
            vec = ir.VectorType(f32, LANES)
            fptr, vptr = f32.as_pointer(), vec.as_pointer()
            table = builder.inttoptr(ptrs, i64.as_pointer())

            def row_ptr(kind: int, i: int):
                return builder.inttoptr(
                    builder.load(builder.gep(table, [i64(kind * ROWS + i)]), align=8), fptr
                )

            def load_vec(base, offset):
                return builder.load(builder.bitcast(builder.gep(base, [offset]), vptr), align=4)

            a_rows = [row_ptr(0, i) for i in range(rows)]
            bp = builder.inttoptr(b, fptr)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fmuladd.v{LANES}f32"
            )
            i8p = ir.IntType(8).as_pointer()
            # Name mangled by llvmlite: llvm.prefetch.p0i8 (typed pointers), .p0 (opaque).
            prefetch = builder.module.declare_intrinsic(
                "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
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
            builder.call(
                prefetch, [builder.gep(pfp, [builder.mul(kk, i64(64))]), i32(0), i32(2), i32(1)]
            )
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
                            builder.store(
                                y, builder.bitcast(builder.gep(c, [i64(v * LANES)]), vptr), align=4
                            )
                with plain:
                    for i in range(rows):
                        c = row_ptr(1, i)
                        for v in range(nv):
                            builder.store(
                                ys[i * nv + v],
                                builder.bitcast(builder.gep(c, [i64(v * LANES)]), vptr),
                                align=4,
                            )
            return context.get_dummy_value()

        return sig, codegen

    return tile_intrinsic


_big1, _big2 = _make_tile(ROWS, 1), _make_tile(ROWS, 2)
_mid1, _mid2 = _make_tile(MID, 1), _make_tile(MID, 2)
_small1, _small2 = _make_tile(SMALL, 1), _make_tile(SMALL, 2)


@njit(**KERNEL_JIT)
def tile(rows, nv, ptrs, b, bias, k, flags, pf):
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
