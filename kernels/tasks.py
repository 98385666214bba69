"""Tasks of a frame: kernels' serial parts called by address with packed arguments.

A frame (:mod:`edgebnn.engine.frame`) runs many kernels in one parallel region. Passing
their arguments to one Numba function would make every plan a new specialisation that
takes seconds to compile (and a direct call re-optimises every callee's code in it). So
each step's arguments are packed once, at plan time, into a buffer laid out as Numba's
own argument structs (an array as its meminfo, parent, size, item size, data pointer,
shape and strides; a scalar in 8 bytes), and a small trampoline per kernel signature
(:func:`run_task`, compiled once per signature and cached) unpacks it and calls the
kernel's part. The frame kernel itself (:func:`run_frame`) is compiled once for all plans.
"""

from __future__ import annotations

import hashlib
import struct

import numba
import numpy as np
from edgebnn.kernels._jit import JIT, PARALLEL, PJIT, prange
from edgebnn.kernels.placement import release_team
from edgebnn.kernels.sync import atomic_add, call_compiled, count_done, wait_for
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Claim and done counters are this many int64 apart (64 bytes: no false sharing); the
#: word after a done counter counts the threads asleep on it (:func:`wait_for`).
STRIDE = 8

#: Argument types of packed calls, by the key :func:`layout_key` gives them.
LAYOUTS: dict[int, tuple[types.Type, ...]] = {}


def _slots(ty: types.Type) -> int | None:
    """8-byte slots one argument of type ``ty`` takes in a packed buffer (None: unsupported)."""
    if isinstance(ty, types.Array):
        return 5 + 2 * ty.ndim
    if isinstance(ty, (types.Integer, types.Boolean, types.Float)):
        return 1
    return None


#: The packed layout gives every field of an argument (an array's pointers and intp sizes
#: included) one int64 word, which matches Numba's structures only where pointers and intp
#: are 64-bit. Elsewhere (32-bit ARM, whose kernels are serial anyway) nothing is packed and
#: every step runs as its own call.
WORDS_MATCH_NUMBA = types.intp.bitwidth == 64 and struct.calcsize("P") == 8


def packable(args: tuple) -> bool:
    """True if every argument can be packed (arrays, integers, booleans, floats) on this
    platform."""
    return WORDS_MATCH_NUMBA and all(_slots(numba.typeof(a)) is not None for a in args)


def layout_key(args: tuple) -> int:
    """A stable key for the argument types of ``args``, registered in :data:`LAYOUTS`."""
    tys = tuple(numba.typeof(a) for a in args)
    key = int(hashlib.sha256(repr(tys).encode()).hexdigest()[:15], 16)
    LAYOUTS[key] = tys
    return key


def pack(args: tuple) -> tuple[np.ndarray, list[int]]:
    """The packed buffer of ``args`` (int64 words) and each array argument's data slot.

    The buffer points into the arrays: the caller keeps them alive while it is in use.
    """
    words: list[int] = []
    data_slots: list[int] = []
    for a in args:
        ty = numba.typeof(a)
        if isinstance(ty, types.Array):
            data_slots.append(len(words) + 4)
            words += [0, 0, a.size, a.itemsize, a.__array_interface__["data"][0]]
            words += [int(n) for n in a.shape] + [int(s) for s in a.strides]
        elif isinstance(ty, types.Boolean):
            words.append(int(bool(a)))
        elif isinstance(ty, types.Integer):
            words.append(int(np.int64(a)))
        elif isinstance(ty, types.Float):
            buf = np.zeros(1, np.int64)
            buf.view(np.float64 if ty.bitwidth == 64 else np.float32)[0] = a
            words.append(int(buf[0]))
        else:
            raise TypeError(f"cannot pack an argument of type {ty}")
    return np.array(words, np.int64), data_slots


@intrinsic(prefer_literal=True)
def _call_packed(typingctx, part, lo, hi, blob, key):
    """``part(lo, hi, *args)`` with ``args`` unpacked from the buffer at ``blob``, their
    types those registered under the literal ``key``."""
    if not isinstance(key, types.IntegerLiteral) or key.literal_value not in LAYOUTS:
        return None
    argtys = LAYOUTS[key.literal_value]
    sig = types.void(part, lo, hi, blob, key)

    def codegen(context, builder, signature, llargs):
        addr, lo_v, hi_v, blob_v, _ = llargs
        base = builder.inttoptr(blob_v, cgutils.ir.IntType(64).as_pointer())
        values = [lo_v, hi_v]
        slot = 0
        for ty in argtys:
            model = context.data_model_manager[ty]
            ptr = builder.bitcast(
                builder.gep(base, [context.get_constant(types.intp, slot)]),
                model.get_data_type().as_pointer(),
            )
            values.append(model.load_from_data_pointer(builder, ptr))
            slot += _slots(ty)  # type: ignore[operator]
        full = [types.int64, types.int64, *argtys]
        call_conv = context.call_conv
        fnty = call_conv.get_function_type(types.none, full)
        fnptr = builder.inttoptr(addr, fnty.as_pointer())
        retty = call_conv.get_return_type(types.none).pointee
        retval = cgutils.alloca_once(builder, retty)
        builder.store(cgutils.get_null_value(retty), retval)
        excinfo = cgutils.alloca_once(builder, fnty.args[1].pointee)
        packed = list(call_conv._get_arg_packer(full).as_arguments(builder, values))
        builder.call(fnptr, [retval, excinfo, *packed])
        return context.get_dummy_value()

    return sig, codegen


@njit(**JIT)
def run_task(lo, hi, part, blob, key):
    """Trampoline: ``part(lo, hi, *unpack(blob))``; compiled per literal ``key``."""
    _call_packed(part, lo, hi, blob, key)


def native_address(dispatcher, argtypes: tuple) -> int:
    """The native entry point of ``dispatcher`` compiled (or loaded from its cache) for
    ``argtypes``: what :func:`~edgebnn.kernels.sync.call_compiled` calls."""
    dispatcher.compile(argtypes)
    cres = dispatcher.overloads[argtypes]
    return int(cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name))


def task_addresses(part, args: tuple) -> tuple[int, int, int]:
    """(trampoline, part, key) for running ``part`` on ``args`` as tasks."""
    key = layout_key(args)
    i64 = types.int64
    part_addr = native_address(part, (i64, i64, *LAYOUTS[key]))
    tramp = native_address(run_task, (i64, i64, i64, i64, types.IntegerLiteral(key)))
    return tramp, part_addr, key


@njit(**PJIT)
def run_frame(team, sync, tasks, tramps, parts, blobs, release):
    """Every step's tasks, step after step, on a team of ``team`` threads in one region.

    ``tasks[s]`` is (units, tasks) of step ``s``: task ``t`` covers units
    ``[u t / n, u (t + 1) / n)``. A thread claims a step's tasks until none is left, then
    waits until the step's claimed tasks are done before it starts the next step
    (:func:`run_member`). ``sync`` (zeroed by the caller) holds the claim and done
    counters (and sleepers). ``release``: threads whose placement for the wake-up ends as
    the region starts (:func:`~edgebnn.kernels.placement.release_team`; empty: none).
    """
    for i in prange(team):
        run_member(i, team, sync, tasks, tramps, parts, blobs, release)


@njit(**JIT)
def run_frame_alone(sync, tasks, tramps, parts, blobs, release):
    """:func:`run_frame` for a team of one, on the calling thread without a parallel region.

    A region of one thread still goes through the threading layer's launch, whose code and
    data are cold when frames arrive at a camera's pace: measured at one thread on a 2-vCPU
    EPYC (one frame every 100 ms), the same frame took ~0.05-0.08 ms longer than here.
    """
    run_member(0, 1, sync, tasks, tramps, parts, blobs, release)


@njit(**JIT)
def run_member(i, team, sync, tasks, tramps, parts, blobs, release):
    """Team member ``i``'s walk through the frame (see :func:`run_frame`).

    Tasks are claimed from :func:`home_chunks` contiguous chunks, each with its own
    counter: member ``i`` takes its home chunk ``i % chunks`` first, then helps with the
    others'. So when the members keep pace, each one computes the same rows (or channels)
    of every step and reads mostly what it wrote itself: a row written by one core and read
    by the other has to cross between their caches, which made each member's work 1.2-2.3x
    its time alone at 2 threads when tasks were handed out in one sequence (EfficientNet-Lite0,
    2-vCPU EPYC). A member that starts late still finds its chunk taken over by the others.
    """
    release_team(release)
    steps = tasks.shape[0]
    chunks = home_chunks(team)
    for s in range(steps):
        u = tasks[s, 0]
        n = tasks[s, 1]
        for d in range(chunks):
            c = (i + d) % chunks
            lo = c * n // chunks
            size = (c + 1) * n // chunks - lo
            while True:
                k = atomic_add(sync, 2 * s * STRIDE + c, 1)
                if k >= size:
                    break
                t = lo + k
                call_compiled(tramps[s], u * t // n, u * (t + 1) // n, (parts[s], blobs[s], 0))
                count_done(sync, (2 * s + 1) * STRIDE)
        if s + 1 < steps:
            wait_for(sync, (2 * s + 1) * STRIDE, n)


@njit(**JIT)
def home_chunks(team):
    """Chunks a step's tasks are claimed from: one per member, at most :data:`STRIDE`
    (their counters share the step's claim line)."""
    return max(1, min(team, STRIDE))


__all__ = ["PARALLEL", "pack", "packable", "run_frame", "run_frame_alone", "task_addresses"]
