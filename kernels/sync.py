"""Atomic counters for a frame's task schedule (see :mod:`edgebnn.engine.frame`).

Numba has no atomics on the CPU target: these intrinsics emit LLVM's ``atomicrmw`` and
atomic loads on int64 array elements, a spin hint (x86 ``pause``, ARM ``yield``) and, for
waits that last (a descheduled thread holding a task on a busy machine), a Linux futex
sleep on the counter itself, woken by the thread that moves it (``sched_yield`` where
there is no futex). All are plain LLVM IR or a libc symbol by name, so kernels using them
are cached.

Why a futex and not ``sched_yield``: a waiting thread that yields stays runnable, so on a
machine whose cores are all busy it keeps taking time slices from the thread it waits for
(measured at load 25 on 2 cores: 84.7 ms/frame yielding against 58.5 ms for one kernel
launch per step). Asleep on the futex it takes none until the counter moves.
"""

from __future__ import annotations

import platform
import sys

import numpy as np
from edgebnn.kernels._jit import JIT
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_MACHINE = platform.machine().lower()

#: Spins (each a ``pause``/``yield`` hint) before a waiting thread looks at the clock.
SPINS_BEFORE_CLOCK = 1000
#: How long (ns) a waiting thread spins before it sleeps: longer than most of a frame's
#: waits on an idle machine (a task takes 0.05-0.3 ms), so that these cost no wake-up;
#: much shorter than a time slice, so that a thread waiting for a descheduled one soon
#: gives its core away.
SPIN_NS = 300_000
#: Longest futex sleep (ns) before a waiting thread looks at its counter again: a safety
#: net only, every move of a counter with sleepers wakes them.
SLEEP_NS = 1_000_000

#: The futex system call number here (None: no futex, waits yield instead). A counter's
#: futex word is its low 32 bits, the first half of the int64 on little-endian machines.
_SYS_FUTEX = (
    {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(_MACHINE)
    if sys.platform.startswith("linux") and sys.byteorder == "little"
    else None
)
_FUTEX_WAIT_PRIVATE = 128
_FUTEX_WAKE_PRIVATE = 129


def _element_pointer(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """``arr[idx] += val`` atomically (sequentially consistent); returns the old value."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        a, i, v = args
        ptr = _element_pointer(context, builder, signature.args[0], a, i)
        return builder.atomic_rmw("add", ptr, v, "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """``arr[idx]`` read atomically with acquire ordering (never hoisted out of a loop)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, signature, args):
        a, i = args
        ptr = _element_pointer(context, builder, signature.args[0], a, i)
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def spin_hint(typingctx):
    """One busy-wait hint: ``pause`` on x86, ``yield`` on aarch64, nothing elsewhere."""
    sig = types.void()

    def codegen(context, builder, signature, args):
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


def _syscall(builder, args):
    """libc ``syscall(args...)`` (all i64)."""
    i64 = cgutils.ir.IntType(64)
    fnty = cgutils.ir.FunctionType(i64, [i64], var_arg=True)
    fn = cgutils.get_or_insert_function(builder.module, fnty, "syscall")
    return builder.call(fn, args)


@intrinsic
def futex_wait(typingctx, arr, idx, seen, timeout_ns):
    """Sleep while the low 32 bits of ``arr[idx]`` equal those of ``seen``, at most
    ``timeout_ns`` (a futex wait); ``sched_yield`` where there is no futex."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.void(arr, types.intp, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        a, i, seen_v, timeout_v = args
        i64 = cgutils.ir.IntType(64)
        if _SYS_FUTEX is None:
            fnty = cgutils.ir.FunctionType(cgutils.ir.IntType(32), [])
            builder.call(cgutils.get_or_insert_function(builder.module, fnty, "sched_yield"), [])
            return context.get_dummy_value()
        ptr = _element_pointer(context, builder, signature.args[0], a, i)
        spec = cgutils.alloca_once(builder, cgutils.ir.ArrayType(i64, 2))
        billion = cgutils.ir.Constant(i64, 1_000_000_000)
        sec_ptr = builder.gep(spec, [cgutils.ir.Constant(i64, 0), cgutils.ir.Constant(i64, 0)])
        nsec_ptr = builder.gep(spec, [cgutils.ir.Constant(i64, 0), cgutils.ir.Constant(i64, 1)])
        builder.store(builder.sdiv(timeout_v, billion), sec_ptr)
        builder.store(builder.srem(timeout_v, billion), nsec_ptr)
        low = builder.and_(seen_v, cgutils.ir.Constant(i64, 0xFFFFFFFF))
        _syscall(
            builder,
            [
                cgutils.ir.Constant(i64, _SYS_FUTEX),
                builder.ptrtoint(ptr, i64),
                cgutils.ir.Constant(i64, _FUTEX_WAIT_PRIVATE),
                low,
                builder.ptrtoint(spec, i64),
                cgutils.ir.Constant(i64, 0),
                cgutils.ir.Constant(i64, 0),
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def futex_wake(typingctx, arr, idx):
    """Wake every thread asleep in :func:`futex_wait` on ``arr[idx]`` (nothing without a
    futex)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64):
        return None
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):
        if _SYS_FUTEX is None:
            return context.get_dummy_value()
        a, i = args
        i64 = cgutils.ir.IntType(64)
        ptr = _element_pointer(context, builder, signature.args[0], a, i)
        _syscall(
            builder,
            [
                cgutils.ir.Constant(i64, _SYS_FUTEX),
                builder.ptrtoint(ptr, i64),
                cgutils.ir.Constant(i64, _FUTEX_WAKE_PRIVATE),
                cgutils.ir.Constant(i64, 0x7FFFFFFF),
                cgutils.ir.Constant(i64, 0),
                cgutils.ir.Constant(i64, 0),
                cgutils.ir.Constant(i64, 0),
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def monotonic_ns(typingctx):
    """``clock_gettime(CLOCK_MONOTONIC)`` in ns (a vDSO call, no system call); 0 where
    there is no futex (the platforms this is not written for)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i64 = cgutils.ir.IntType(64)
        if _SYS_FUTEX is None:
            return cgutils.ir.Constant(i64, 0)
        i32 = cgutils.ir.IntType(32)
        spec = cgutils.alloca_once(builder, cgutils.ir.ArrayType(i64, 2))
        fnty = cgutils.ir.FunctionType(i32, [i32, spec.type])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        builder.call(fn, [cgutils.ir.Constant(i32, 1), spec])  # 1 = CLOCK_MONOTONIC
        zero = cgutils.ir.Constant(i64, 0)
        sec = builder.load(builder.gep(spec, [zero, zero]))
        nsec = builder.load(builder.gep(spec, [zero, cgutils.ir.Constant(i64, 1)]))
        return builder.add(builder.mul(sec, cgutils.ir.Constant(i64, 1_000_000_000)), nsec)

    return sig, codegen


@njit(**JIT)
def wait_for(counters, idx, target):
    """Wait until ``counters[idx] >= target``: a spin of :data:`SPIN_NS`, then asleep on
    the counter.

    ``counters[idx + 1]`` counts the sleepers, so that :func:`count_done` wakes them; a
    counter that moves between the look and the sleep makes the sleep return at once.
    """
    spins = 0
    start = np.int64(0)
    while True:
        seen = atomic_load(counters, idx)
        if seen >= target:
            return
        if spins < SPINS_BEFORE_CLOCK:
            spin_hint()
            spins += 1
            continue
        now = monotonic_ns()  # 0 without a clock: no more spinning
        if start == 0:
            start = now
        if now != 0 and now - start < SPIN_NS:
            for _ in range(64):
                spin_hint()
            continue
        atomic_add(counters, idx + 1, 1)
        if atomic_load(counters, idx) == seen:
            futex_wait(counters, idx, seen, SLEEP_NS)
        atomic_add(counters, idx + 1, -1)


@njit(**JIT)
def count_done(counters, idx):
    """``counters[idx] += 1`` for a finished task, waking the threads asleep in
    :func:`wait_for` on it (``counters[idx + 1]`` of them)."""
    atomic_add(counters, idx, 1)
    if atomic_load(counters, idx + 1) > 0:
        futex_wake(counters, idx)


@intrinsic
def call_compiled(typingctx, address, lo, hi, args):
    """``f(lo, hi, *args)`` for the Numba-compiled function ``f`` at ``address`` (its native
    entry point, compiled for exactly these types), discarding its result.

    A direct call links the callee's code into the caller, and Numba optimises the linked
    module again: a frame calling a dozen kernels took ~50 s of CPU to compile that way.
    Called by address, the frame compiles on its own in about a second.
    """
    if not isinstance(address, types.Integer) or not isinstance(args, types.BaseTuple):
        return None
    sig = types.void(address, types.int64, types.int64, args)

    def codegen(context, builder, signature, llargs):
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
