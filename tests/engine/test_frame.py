"""One parallel region per frame: the task schedule, packed calls and atomics.

The frame must compute exactly what the per-step kernels compute (bit for bit), whatever
the team size and however the tasks fall to threads.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from edgebnn.engine.frame import FrameRunner, Region
from edgebnn.kernels import sync, tasks
from edgebnn.kernels import threads as runtime
from edgebnn.kernels.placement import NOTHING
from edgebnn.kernels.sync import (
    atomic_add,
    atomic_load,
    count_done,
    futex_wait,
    monotonic_ns,
    wait_for,
)
from numba import njit, prange

import edgebnn


def _steps_output(plan, x: np.ndarray) -> np.ndarray:
    """The plan's output with every step launched as its own kernel (the old schedule)."""
    plan._input_view[...] = x
    for step in plan.steps:
        step()
    return plan.output.copy()


@pytest.mark.parametrize("threads", [1, 2])
def test_frame_equals_step_by_step_bit_for_bit(threads: int) -> None:
    net = edgebnn.load("random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A")
    plan = net.plan
    rng = np.random.default_rng(threads)
    old = runtime.set_threads(threads)
    try:
        for _ in range(3):
            x = rng.uniform(0, 255, net.input_shape).astype(np.float32)
            want = _steps_output(plan, x)
            plan.output[...] = np.nan
            got = plan.run(x).copy()  # direct input
            assert np.array_equal(got, want)
            plan.output[...] = np.nan
            strided = np.asfortranarray(x)  # copied in: another path
            assert np.array_equal(plan.run(strided), want)
    finally:
        runtime.set_threads(old)
    runner = plan._frames
    assert isinstance(runner, FrameRunner)
    assert [type(g) for g in runner.groups] == [Region]  # the whole plan, one region


def test_readonly_input_is_read_in_place_and_not_kept() -> None:
    net = edgebnn.load("random:d_I32x32x3NCMNBMNBMNC1A")
    x = np.random.default_rng(0).uniform(0, 255, net.input_shape).astype(np.float32)
    want = net.forward(x)
    ro = x.copy()
    ro.flags.writeable = False
    assert np.array_equal(net.forward(ro), want)
    region = net.plan._frames.groups[0]
    view = net.plan._input_view
    # After the frame the packed first argument points at the plan's own input buffer.
    assert region._blobs[0][region._input_slot] == view.__array_interface__["data"][0]


@pytest.mark.parametrize("team", [1, 2, 3, 7])
def test_any_team_size_gives_the_same_bits(team: int) -> None:
    """More (or fewer) team members than threads: claimed tasks, no deadlock, same bits."""
    net = edgebnn.load("random:d_I64x64x3NCMNBMNBMNBMNC1A")
    plan = net.plan
    x = np.random.default_rng(5).uniform(0, 255, net.input_shape).astype(np.float32)
    want = _steps_output(plan, x)
    plan.run(x)
    (region,) = plan._frames.groups
    plan._input_view[...] = x
    plan.output[...] = np.nan
    region.sync[:] = 0
    tasks.run_frame(
        team, region.sync, region.tasks(team), region.tramps, region.parts, region.blobs, NOTHING
    )
    assert np.array_equal(plan.output, want)


def test_one_thread_frame_runs_alone_with_the_same_bits() -> None:
    """At one thread the frame runs without a parallel region (run_frame_alone): the same
    bits as the steps one by one, and every task claimed and done once."""
    net = edgebnn.load("random:d_I64x64x3NCMNBMNBMNBMNC1A")
    plan = net.plan
    x = np.random.default_rng(6).uniform(0, 255, net.input_shape).astype(np.float32)
    want = _steps_output(plan, x)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        plan.output[...] = np.nan
        plan.run(x)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(plan.output, want)
    (region,) = plan._frames.groups
    assert tasks.run_frame_alone.signatures  # the path taken
    steps = len(region.steps)
    done = region.sync[tasks.STRIDE :: 2 * tasks.STRIDE][:steps]
    assert np.array_equal(done, np.ones(steps, np.int64))


@njit
def _probe_rows(lo, hi, flag, n, f32, f64, a1, a2, a3, strided, out):
    for r in range(lo, hi):
        s = np.float64(a1[r]) + a2[r, 1] + a3[r, 0, 2] + strided[r] + f32 + f64 + n
        out[r] = s if flag else -s


def test_packed_arguments_reach_the_part_intact() -> None:
    rows = 6
    a1 = np.arange(rows, dtype=np.float32) + 0.5
    a2 = np.arange(rows * 3, dtype=np.int64).reshape(rows, 3)
    a3 = np.arange(rows * 2 * 3, dtype=np.float64).reshape(rows, 2, 3) / 7
    strided = np.arange(rows * 2, dtype=np.int32)[::2]  # a non-contiguous ('A') array
    out_direct = np.zeros(rows)
    out_packed = np.zeros(rows)
    args = (True, 11, np.float32(0.25), 1e-3, a1, a2, a3, strided)
    _probe_rows(0, rows, *args, out_direct)
    blob, slots = tasks.pack((*args, out_packed))
    assert len(slots) == 5  # one data slot per array
    tramp, part, _ = tasks.task_addresses(_probe_rows, (*args, out_packed))
    table = np.array([[rows, 3]], np.int64)
    sync = np.zeros(2 * tasks.STRIDE, np.int64)
    addr = np.array([blob.__array_interface__["data"][0]], np.int64)
    tasks.run_frame(2, sync, table, np.array([tramp]), np.array([part]), addr, NOTHING)
    assert np.array_equal(out_packed, out_direct)
    assert sync[0] >= 3 and sync[tasks.STRIDE] == 3  # every task claimed and done once


def test_unpackable_arguments_are_reported() -> None:
    assert not tasks.packable((np.zeros(2), (1, 2)))
    with pytest.raises(TypeError, match="cannot pack"):
        tasks.pack((None,))


DONE = tasks.STRIDE  # the done counter; the word after it counts its sleepers


@njit(parallel=True)
def _count_claims(counters, n, seen):
    for _ in prange(numba.get_num_threads()):
        while True:
            i = atomic_add(counters, 0, 1)
            if i >= n:
                break
            seen[i] += 1
            count_done(counters, DONE)
        wait_for(counters, DONE, n)
        if atomic_load(counters, DONE) != n:
            seen[0] = -1


def test_atomic_claims_hand_out_each_index_once() -> None:
    n = 200_000
    counters = np.zeros(2 * tasks.STRIDE, np.int64)
    seen = np.zeros(n, np.int64)
    _count_claims(counters, n, seen)
    assert (seen == 1).all()
    assert counters[DONE] == n and counters[0] >= n
    assert counters[DONE + 1] == 0  # no sleeper left behind


@njit
def _work(n):
    acc = 0.0
    for i in range(n):
        acc += np.sqrt(np.float64(i))
    return acc


@njit(parallel=True)
def _slow_finisher(counters, work, out):
    for t in prange(2):
        if t == 0:
            out[0] = _work(work)  # long enough for the other thread to fall asleep
            count_done(counters, DONE)
        else:
            wait_for(counters, DONE, 1)
            out[1] = atomic_load(counters, DONE)


def test_a_sleeping_waiter_is_woken_by_the_counter() -> None:
    import time

    work = 60_000_000
    old = runtime.set_threads(2)
    try:
        counters = np.zeros(2 * tasks.STRIDE, np.int64)
        out = np.zeros(2)
        _slow_finisher(counters, 1000, out)  # compile
        _work(1000)
        cpu = time.process_time()
        _work(work)
        alone = time.process_time() - cpu
        counters[:] = 0
        cpu = time.process_time()
        _slow_finisher(counters, work, out)
        both = time.process_time() - cpu
    finally:
        runtime.set_threads(old)
    assert out[1] == 1 and out[0] > 0
    assert counters[DONE] == 1 and counters[DONE + 1] == 0
    if sync._SYS_FUTEX is not None:  # the waiter slept: it did not burn a second core
        assert both < 1.5 * alone, (both, alone)


@njit
def _clock():
    return monotonic_ns()


@pytest.mark.skipif(sync._SYS_FUTEX is None, reason="no futex on this platform")
def test_monotonic_clock_is_the_system_one() -> None:
    import time

    a = time.monotonic_ns()
    b = _clock()
    c = time.monotonic_ns()
    assert a <= b <= c


@njit
def _futex_wait(counters, seen, timeout_ns):
    futex_wait(counters, 0, seen, timeout_ns)


@pytest.mark.skipif(sync._SYS_FUTEX is None, reason="no futex on this platform")
def test_futex_wait_sleeps_only_while_the_counter_holds_the_value_seen() -> None:
    import time

    counters = np.zeros(2, np.int64)
    counters[0] = 5
    _futex_wait(counters, 4, 20_000_000_000)  # compile
    t = time.perf_counter()
    _futex_wait(counters, 4, 20_000_000_000)  # the counter moved on: no sleep at all
    assert time.perf_counter() - t < 5.0
    t = time.perf_counter()
    _futex_wait(counters, 5, 30_000_000)  # unchanged: sleeps until the timeout
    assert time.perf_counter() - t >= 0.02


def test_without_packing_every_step_runs_as_its_own_call(monkeypatch) -> None:
    """Where the packed words do not match Numba's structures (32-bit pointers and intp),
    nothing is packed: the frame is only single calls, and the answers are the same."""
    from edgebnn.engine.d_series import d_series
    from edgebnn.engine.reference import forward_ref

    net = d_series(64, "NCMNBMNBMNC1A", seed=3)
    x = np.random.default_rng(3).uniform(0, 255, net.input_shape).astype(np.float32)
    packed = net.forward(x).copy()
    monkeypatch.setattr(tasks, "WORDS_MATCH_NUMBA", False)
    unpacked_net = d_series(64, "NCMNBMNBMNC1A", seed=3)
    unpacked = unpacked_net.forward(x)
    runner = unpacked_net._plan._frames
    assert runner is not None and not any(isinstance(g, Region) for g in runner.groups)
    np.testing.assert_array_equal(unpacked, packed)
    np.testing.assert_allclose(unpacked, forward_ref(unpacked_net, x), atol=1e-5)
