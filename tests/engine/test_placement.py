"""Thread placement: while and after a frame runs, each worker thread of the team is on a
core of its own within the allowed set, the master thread gets its own mask back, and
nothing started later inherits a narrowed mask; opting out leaves every mask alone."""

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
        PLACEMENT.release()
        os.sched_setaffinity(0, FULL)
        runtime.set_threads(old)


def _input(net, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, net.input_shape).astype(np.float32)


def test_plan_spreads_workers_over_cores_and_gives_the_master_the_rest() -> None:
    assert plan_cpus(1, {0, 1}, {0: (0, 0), 1: (0, 1)}) == ([{1}], {0})
    # 4 cores with 2 hardware threads each (siblings n and n + 4), the process allowed to
    # run on CPUs 1, 2, 5, 6 (cores 1, 2): the worker goes to another core than the master.
    smt = {cpu: (0, cpu % 4) for cpu in range(8)}
    assert plan_cpus(1, {1, 2, 5, 6}, smt) == ([{2}], {1, 5})
    # Only the allowed CPUs are ever used.
    assert plan_cpus(2, {3, 5, 7}, {}) == ([{5}, {7}], {3})
    # More threads than cores: hardware threads, one core's siblings last.
    assert plan_cpus(2, {0, 4, 1}, smt) == ([{1}, {4}], {0})
    # A pool whose caller only waits (Numba's workqueue layer): every thread a core.
    assert plan_cpus(2, {0, 1}, {}, master=False) == ([{0}, {1}], None)
    # Nothing to spread: one thread, or more threads than allowed CPUs.
    assert plan_cpus(0, {0, 1}, {}) is None
    assert plan_cpus(2, {0, 1}, {}) is None


@needs_two_cpus
def test_workers_bound_to_distinct_cores_master_restored_children_unbound(team) -> None:
    net = team
    master = threading.get_native_id()
    before = _masks()
    seen_inside = {}

    with PLACEMENT.frame():  # a frame as the engine runs it, looked at from inside
        net.forward(_input(net))
        seen_inside = _masks()
    placed = PLACEMENT.team_of()
    assert placed is not None and placed.workers
    bound = list(placed.workers.values())
    assert all(len(cpus) == 1 and cpus <= FULL for cpus in bound)
    assert len(set().union(*bound)) == len(bound)  # distinct CPUs
    for worker, cpus in placed.workers.items():
        assert seen_inside[worker] == cpus
    if placed.master is not None:  # OpenMP: the caller works too, on the other cores
        assert seen_inside[master] == frozenset(placed.master) == FULL - set().union(*bound)
    else:  # Numba's workqueue layer: the caller only waits
        assert seen_inside[master] == FULL

    for seed in range(3):
        net.forward(_input(net, seed))
    after = _masks()
    assert after[master] == before[master] == FULL
    assert all(after[w] == cpus for w, cpus in placed.workers.items())  # still bound
    # The other threads of the process (pytest's, Numba's) are left alone.
    others = {t for t in before if t != master and t not in placed.workers and t in after}
    assert all(after[t] == before[t] for t in others)

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
    net.forward(_input(net))  # placed first: opting out gives the workers their set back
    assert PLACEMENT.team_of() is not None
    if how == "config":
        PLACEMENT.set_enabled(False)  # what the daemon's ``bind_threads: false`` does
    else:
        PLACEMENT.release()
        monkeypatch.setenv(
            *(("EDGEBNN_BIND_THREADS", "0") if how == "env" else ("OMP_PLACES", "cores"))
        )
    assert not PLACEMENT.active()
    before = _masks()
    assert set(before.values()) == {FULL}
    for seed in range(3):
        net.forward(_input(net, seed))
    after = _masks()
    assert all(after[t] == before[t] for t in before if t in after)
    assert PLACEMENT.team_of() is None


@needs_two_cpus
def test_a_restricted_allowed_set_is_honoured(team) -> None:
    net = team
    allowed = FULL - {min(FULL)}  # as under taskset or systemd's CPUAffinity=
    os.sched_setaffinity(0, allowed)
    master = threading.get_native_id()
    net.forward(_input(net))  # the team is placed within the master's own set
    inside = {}
    with PLACEMENT.frame():
        inside = _masks()
    placed = PLACEMENT.team_of()
    assert placed is not None and placed.allowed == allowed
    for tid, cpus in placed.workers.items():
        assert cpus <= allowed and inside[tid] == cpus
    assert inside[master] <= allowed
    if len(allowed) < 2:  # two threads, one CPU: nothing to spread, nothing bound
        assert placed.workers == {} and placed.master is None
    assert frozenset(os.sched_getaffinity(0)) == allowed
