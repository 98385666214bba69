"""Atomic counters for a frame's task schedule (see :mod:`edgebnn.engine.frame`).

Numba has no atomics on the CPU target: these intrinsics emit LLVM's ``atomicrmw`` and
atomic loads on int64 array elements, a spin hint (x86 ``pause``, ARM ``yield``) and a
``sched_yield`` call for waits that last (a descheduled thread holding a task on a busy
machine). All are plain LLVM IR or a libc symbol by name, so kernels using them are cached.
"""

from __future__ import annotations

import platform

from edgebnn.kernels._jit import JIT
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_MACHINE = platform.machine().lower()

#: Spins (each a ``pause``/``yield`` hint) before a waiting thread gives its core away.
SPINS_BEFORE_YIELD = 2000


def _element_pointer(context, builder, arrty, arr, idx):  # type: ignore[no-untyped-def]
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


@intrinsic
def atomic_add(typingctx, arr, idx, val):  # type: ignore[no-untyped-def]
    """``arr[idx] += val`` atomically (sequentially consistent); returns the old value."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        a, i, v = args
        ptr = _element_pointer(context, builder, signature.args[0], a, i)
        return builder.atomic_rmw("add", ptr, v, "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """``arr[idx]`` read atomically with acquire ordering (never hoisted out of a loop)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        a, i = args
        ptr = _element_pointer(context, builder, signature.args[0], a, i)
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def spin_hint(typingctx):  # type: ignore[no-untyped-def]
    """One busy-wait hint: ``pause`` on x86, ``yield`` on aarch64, nothing elsewhere."""
    sig = types.void()

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        void = cgutils.ir.VoidType()
        if _MACHINE in ("x86_64", "amd64", "i386", "i686"):
            fnty = cgutils.ir.FunctionType(void, [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        elif _MACHINE in ("aarch64", "arm64"):
            i32 = cgutils.ir.IntType(32)
            fnty = cgutils.ir.FunctionType(void, [i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.aarch64.hint")
            builder.call(fn, [cgutils.ir.Constant(i32, 1)])  # 1 = YIELD
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def os_yield(typingctx):  # type: ignore[no-untyped-def]
    """libc ``sched_yield()``: let another runnable thread have this core."""
    sig = types.void()

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        fnty = cgutils.ir.FunctionType(cgutils.ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@njit(**JIT)
def wait_for(counters, idx, target):  # type: ignore[no-untyped-def]
    """Spin until ``counters[idx] >= target``, yielding the core after a short spin."""
    spins = 0
    while atomic_load(counters, idx) < target:
        if spins < SPINS_BEFORE_YIELD:
            spin_hint()
            spins += 1
        else:
            os_yield()


@intrinsic
def call_compiled(typingctx, address, lo, hi, args):  # type: ignore[no-untyped-def]
    """``f(lo, hi, *args)`` for the Numba-compiled function ``f`` at ``address`` (its native
    entry point, compiled for exactly these types), discarding its result.

    A direct call links the callee's code into the caller, and Numba optimises the linked
    module again: a frame calling a dozen kernels took ~50 s of CPU to compile that way.
    Called by address, the frame compiles on its own in about a second.
    """
    if not isinstance(address, types.Integer) or not isinstance(args, types.BaseTuple):
        return None
    sig = types.void(address, types.int64, types.int64, args)

    def codegen(context, builder, signature, llargs):  # type: ignore[no-untyped-def]
        addr, lo_v, hi_v, tup = llargs
        argtys = [types.int64, types.int64, *signature.args[3]]
        call_conv = context.call_conv
        fnty = call_conv.get_function_type(types.none, argtys)
        fnptr = builder.inttoptr(addr, fnty.as_pointer())
        values = [lo_v, hi_v] + [builder.extract_value(tup, i) for i in range(len(argtys) - 2)]
        retty = call_conv.get_return_type(types.none).pointee
        retval = cgutils.alloca_once(builder, retty)
        builder.store(cgutils.get_null_value(retty), retval)
        excinfo = cgutils.alloca_once(builder, fnty.args[1].pointee)
        packed = list(call_conv._get_arg_packer(argtys).as_arguments(builder, values))
        builder.call(fnptr, [retval, excinfo, *packed])
        return context.get_dummy_value()

    return sig, codegen
