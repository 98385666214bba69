"""Thread placement: as a frame starts, each worker thread of the team is bound to a CPU
of its own within the allowed set, away from the calling thread's core; the frame's
region releases them; the calling thread's mask never changes, and nothing started later
inherits a narrowed mask; opting out leaves every mask alone."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from edgebnn.kernels import placement
from edgebnn.kernels import threads as runtime
from edgebnn.kernels.placement import PLACEMENT, plan_cpus

import edgebnn

MODEL = "random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A"
FULL = frozenset(os.sched_getaffinity(0))

needs_two_cpus = pytest.mark.skipif(
    len(FULL) < 2 or not runtime.PARALLEL, reason="placement needs 2 CPUs and parallel kernels"
)


def _masks() -> dict[int, frozenset[int]]:
    """Every thread of this process: its CPU mask."""
    found = {}
    for name in os.listdir("/proc/self/task"):
        try:
            found[int(name)] = frozenset(os.sched_getaffinity(int(name)))
        except OSError:  # the thread ended meanwhile
            continue
    return found


@pytest.fixture
def team(monkeypatch: pytest.MonkeyPatch):
    """Two threads, placement on (whatever the environment says), everything restored after."""
    for name in (*placement.USER_PLACEMENT, placement.ENV_SWITCH):
        monkeypatch.delenv(name, raising=False)
    old = runtime.set_threads(2)
    PLACEMENT.set_enabled(True)
    try:
        yield edgebnn.load(MODEL)
    finally:
        PLACEMENT.set_enabled(True)
        os.sched_setaffinity(0, FULL)
        for tid in _masks():
            os.sched_setaffinity(tid, FULL)
        runtime.set_threads(old)


def _input(net, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, net.input_shape).astype(np.float32)


def test_plan_puts_workers_on_other_cores_than_the_caller() -> None:
    assert plan_cpus(1, {0, 1}, {0: (0, 0), 1: (0, 1)}, caller=0) == [1]
    assert plan_cpus(1, {0, 1}, {0: (0, 0), 1: (0, 1)}, caller=1) == [0]
    # 4 cores with 2 hardware threads each (siblings n and n + 4), the process allowed to
    # run on CPUs 1, 2, 5, 6 (cores 1, 2): the worker goes to the core the caller is not on.
    smt = {cpu: (0, cpu % 4) for cpu in range(8)}
    assert plan_cpus(1, {1, 2, 5, 6}, smt, caller=5) == [2]
    assert plan_cpus(1, {1, 2, 5, 6}, smt, caller=6) == [1]
    # Only the allowed CPUs are ever used.
    assert plan_cpus(2, {3, 5, 7}, {}, caller=5) == [3, 7]
    # More threads than cores: hardware threads, the caller's core's siblings last.
    assert plan_cpus(2, {0, 4, 1}, smt, caller=0) == [1, 4]
    # A pool whose caller only waits (Numba's workqueue layer): every worker a core.
    assert plan_cpus(2, {0, 1}, {}, caller=None) == [0, 1]
    # Nothing to spread: no worker, or more threads than allowed CPUs.
    assert plan_cpus(0, {0, 1}, {}, caller=0) is None
    assert plan_cpus(2, {0, 1}, {}, caller=0) is None


@needs_two_cpus
def test_workers_wake_on_cores_of_their_own_and_are_released(team) -> None:
    net = team
    caller = threading.get_native_id()
    net.forward(_input(net))  # the team's thread ids are collected once
    placed = PLACEMENT.team_of()
    assert placed is not None and placed.workers
    others = [t for t in _masks() if t != caller and t not in placed.workers]
    before = _masks()

    with PLACEMENT.frame():  # a frame as the engine runs it, looked at from inside
        at_wake = _masks()
        net.forward(_input(net))  # its region releases the workers as it starts
        in_frame = _masks()
    bound = [at_wake[t] for t in placed.workers]
    assert all(len(cpus) == 1 and cpus <= FULL for cpus in bound)
    assert len(frozenset().union(*bound)) == len(bound)  # distinct CPUs
    if placed.caller_works:  # OpenMP: not the CPU the caller was just on (2 CPUs: the other)
        assert len(bound) == len(FULL) - 1
    assert all(in_frame[t] == FULL for t in placed.workers)
    for masks in (at_wake, in_frame, _masks()):
        assert masks[caller] == FULL  # the caller's own mask is never changed
        assert all(masks[t] == before[t] for t in others if t in masks)  # nor anyone else's

    for seed in range(3):
        net.forward(_input(net, seed))
    assert all(cpus == FULL for cpus in _masks().values())

    # Started after frames: a thread and a process get the whole set.
    got = []
    thread = threading.Thread(target=lambda: got.append(frozenset(os.sched_getaffinity(0))))
    thread.start()
    thread.join()
    assert got == [FULL]
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(sorted(FULL))
    assert runtime.cpu_count() == len(FULL)


@needs_two_cpus
def test_a_frame_without_a_region_releases_the_workers_too(team) -> None:
    net = team
    net.forward(_input(net))
    placed = PLACEMENT.team_of()
    assert placed is not None and placed.workers
    with PLACEMENT.frame():
        assert all(len(os.sched_getaffinity(t)) == 1 for t in placed.workers)
    assert all(frozenset(os.sched_getaffinity(t)) == FULL for t in placed.workers)


@needs_two_cpus
def test_outputs_bit_exact_with_and_without_placement(team) -> None:
    net = team
    x = _input(net, 7)
    placed = net.forward(x).copy()
    assert PLACEMENT.team_of() is not None
    PLACEMENT.set_enabled(False)
    assert np.array_equal(net.forward(x), placed)
    runtime.set_threads(1)
    assert np.array_equal(net.forward(x), placed)


@needs_two_cpus
@pytest.mark.parametrize("how", ["config", "env", "omp"])
def test_opting_out_leaves_every_mask_alone(team, monkeypatch, how: str) -> None:
    net = team
    net.forward(_input(net))
    if how == "config":
        PLACEMENT.set_enabled(False)  # what the daemon's ``bind_threads: false`` does
    else:
        env = ("EDGEBNN_BIND_THREADS", "0") if how == "env" else ("OMP_PLACES", "cores")
        monkeypatch.setenv(*env)
    assert not PLACEMENT.active()
    before = _masks()
    assert set(before.values()) == {FULL}
    with PLACEMENT.frame():
        assert _masks() == before
        net.forward(_input(net))
    for seed in range(3):
        net.forward(_input(net, seed))
    after = _masks()
    assert all(after[t] == before[t] for t in before if t in after)


@needs_two_cpus
def test_a_restricted_allowed_set_is_honoured(team) -> None:
    net = team
    allowed = FULL - {min(FULL)}  # as under taskset or systemd's CPUAffinity=
    os.sched_setaffinity(0, allowed)
    caller = threading.get_native_id()
    net.forward(_input(net))  # the team is placed within the caller's own set
    placed = PLACEMENT.team_of()
    assert placed is not None and placed.allowed == allowed
    with PLACEMENT.frame():
        at_wake = _masks()
        net.forward(_input(net))
    for tid in placed.workers:
        assert at_wake[tid] <= allowed and len(at_wake[tid]) == 1
        assert frozenset(os.sched_getaffinity(tid)) == allowed  # released within the set
    if len(allowed) < 2:  # two threads, one CPU: nothing to spread, nothing bound
        assert placed.workers == []
    assert at_wake[caller] == frozenset(os.sched_getaffinity(0)) == allowed
