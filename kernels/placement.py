"""Thread placement: each worker thread of the team on a core of its own, the master on
the other cores while a frame runs.

Why: a camera delivers a frame every 33-500 ms, so every frame starts with the team
asleep. After a sleep of more than ~20 ms the kernel's scheduler wakes a worker on the
waking thread's CPU (wake-affine): it then waits for, or shares, the master's core, and
the frame takes as long as on one thread (headline network at 2 threads, one frame per
100 ms: 9.7 ms unbound, 5.3 ms bound; back to back 4.9 / 4.8 ms).

How, without side effects on the rest of the process: OpenMP's own binding
(``OMP_PROC_BIND``) pins the *master* thread for its lifetime, and every thread or
process it starts later inherits a one-CPU mask. Here instead the worker threads' ids are
collected once per (master thread, team size) in a small parallel region, and each worker
is bound to its own core of the allowed set (the master's mask: ``taskset``, systemd's
``CPUAffinity=``). The master is bound to the remaining cores only while a frame runs and
gets its own mask back after (two ``sched_setaffinity`` calls per frame, a few
microseconds).

Nothing is done when the user chose a placement (``OMP_PROC_BIND``, ``OMP_PLACES``,
``GOMP_CPU_AFFINITY``, ``KMP_AFFINITY``), with ``EDGEBNN_BIND_THREADS=0`` or
:func:`set_enabled` ``(False)`` (the daemon's ``bind_threads: false``), for a team of one
thread or larger than the allowed cores, for the serial build (32-bit ARM), off Linux,
and with the TBB threading layer (its threads are not a fixed team).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgebnn.kernels._jit import PJIT, prange
from edgebnn.kernels.sync import _syscall
from edgebnn.kernels.threads import PARALLEL
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

log = logging.getLogger(__name__)

#: The ``gettid`` system call number here (None: placement is off).
_SYS_GETTID = (
    {"x86_64": 186, "amd64": 186, "aarch64": 178, "arm64": 178}.get(platform.machine().lower())
    if sys.platform.startswith("linux")
    else None
)

#: Environment variables by which a user places OpenMP's threads: any of them set, we don't.
USER_PLACEMENT = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")
#: ``EDGEBNN_BIND_THREADS=0`` turns placement off.
ENV_SWITCH = "EDGEBNN_BIND_THREADS"


@intrinsic
def _gettid(typingctx):
    """The calling thread's kernel thread id (``gettid``); 0 where unknown."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i64 = cgutils.ir.IntType(64)
        if _SYS_GETTID is None:
            return cgutils.ir.Constant(i64, 0)
        return _syscall(builder, [cgutils.ir.Constant(i64, _SYS_GETTID)])

    return sig, codegen


@njit(**PJIT)
def team_thread_ids(out):
    """``out[i]``: the thread id of the team thread that runs iteration ``i`` (one
    iteration per thread when ``out`` has as many entries as the team has threads)."""
    for i in prange(out.shape[0]):
        out[i] = _gettid()


def core_order(cpus: set[int], core_of: dict[int, tuple[int, int]]) -> list[list[int]]:
    """The CPUs of ``cpus`` grouped by physical core (SMT siblings together), cores in
    order of their first CPU. ``core_of[cpu]`` is (package, core); a CPU missing from it
    is a core of its own."""
    groups: dict[tuple[int, int], list[int]] = {}
    for cpu in sorted(cpus):
        groups.setdefault(core_of.get(cpu, (-1, -1 - cpu)), []).append(cpu)
    return list(groups.values())


def read_topology(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """(package, core) of each CPU, from sysfs (missing where sysfs does not say)."""
    found: dict[int, tuple[int, int]] = {}
    for cpu in cpus:
        top = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = int((top / "physical_package_id").read_text())
            core = int((top / "core_id").read_text())
        except (OSError, ValueError):
            continue
        found[cpu] = (package, core)
    return found


def plan_cpus(
    workers: int, allowed: set[int], core_of: dict[int, tuple[int, int]], master: bool = True
) -> tuple[list[set[int]], set[int] | None] | None:
    """(each worker's CPUs, the master's CPUs during a frame) for ``workers`` worker
    threads and, when ``master`` (OpenMP: the caller works in the team), the calling thread,
    within ``allowed``; None when they cannot be spread (fewer CPUs than threads).

    The team's threads go to distinct cores in order, the master first (the first CPU of
    each core; hardware threads of one core only when there are fewer cores than
    threads); each worker gets its CPU, the master every allowed CPU on the cores no worker
    uses (failing that, every CPU no worker uses)."""
    threads = workers + int(master)
    if threads < 2 or len(allowed) < threads:
        return None
    cores = core_order(allowed, core_of)
    if len(cores) >= threads:
        picked = [cores[i][0] for i in range(threads)]
        used = {cpu for i in range(int(master), threads) for cpu in cores[i]}
    else:  # fewer cores than threads: hardware threads, each core's first ones first
        depth = max(map(len, cores))
        flat = [g[d] for d in range(depth) for g in cores if d < len(g)]
        picked = flat[:threads]
        used = set(picked[int(master) :])
    worker_cpus = [{cpu} for cpu in picked[int(master) :]]
    if not master:
        return worker_cpus, None
    rest = allowed - used
    return worker_cpus, rest or allowed - set(picked[1:])


@dataclass
class _Team:
    """What was bound for one master thread."""

    size: int
    allowed: frozenset[int]
    workers: dict[int, set[int]]  # worker thread id -> its CPUs
    master: set[int] | None  # the master's CPUs during a frame (None: leave it)


class Placement:
    """Binds the team of each master thread (see the module docstring)."""

    def __init__(self) -> None:
        self.enabled = True
        self._teams: dict[int, _Team] = {}
        self._lock = threading.Lock()
        self._inside = threading.local()  # a frame within a frame changes nothing

    def active(self) -> bool:
        """True when placement applies in this process (see the module docstring)."""
        return (
            self.enabled
            and PARALLEL
            and _SYS_GETTID is not None
            and hasattr(os, "sched_setaffinity")
            and os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")
            and not any(os.environ.get(name, "").strip() for name in USER_PLACEMENT)
        )

    def set_enabled(self, enabled: bool) -> None:
        """Turn placement on or off; off gives bound workers the allowed set back."""
        self.enabled = bool(enabled)
        if not self.enabled:
            self.release()

    def release(self) -> None:
        """Give every worker bound so far its master's mask back and forget it."""
        with self._lock:
            teams, self._teams = self._teams, {}
        for team in teams.values():
            for tid in team.workers:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, team.allowed)

    def team_of(self, master: int | None = None) -> _Team | None:
        """What is bound for ``master`` (a thread id; default: the calling thread)."""
        return self._teams.get(threading.get_native_id() if master is None else master)

    @contextlib.contextmanager
    def frame(self) -> Iterator[None]:
        """Run a frame's kernels inside: the team placed, the master's mask restored after."""
        if getattr(self._inside, "frame", False) or not self.active():
            yield
            return
        self._inside.frame = True
        try:
            with self._placed():
                yield
        finally:
            self._inside.frame = False

    @contextlib.contextmanager
    def _placed(self) -> Iterator[None]:
        import numba

        size = int(numba.get_num_threads())
        if size < 2:
            yield
            return
        allowed = frozenset(os.sched_getaffinity(0))
        me = threading.get_native_id()
        team = self._teams.get(me)
        if team is None or team.size != size or team.allowed != allowed:
            team = self._place(me, size, allowed)
        if team.master is None:
            yield
            return
        os.sched_setaffinity(0, team.master)
        try:
            yield
        finally:
            os.sched_setaffinity(0, allowed)

    def _place(self, me: int, size: int, allowed: frozenset[int]) -> _Team:
        """Collect the team's thread ids and bind the workers (the calling thread is the
        master)."""
        import numba

        old = self._teams.get(me)
        ids = np.zeros(size, np.int64)
        team_thread_ids(ids)
        # OpenMP: the caller is thread 0 of the team; workqueue: the caller waits while
        # the pool's threads run every iteration.
        works = me in ids
        workers = [int(t) for t in ids if int(t) not in (0, me)]
        plan = plan_cpus(len(workers), set(allowed), read_topology(set(allowed)), works)
        team = _Team(size, allowed, {}, None)
        layer = numba.threading_layer()
        if plan is None or layer == "tbb" or len(set(workers)) != size - int(works):
            log.debug("threads left unplaced: team %d, allowed %s, layer %s", size, allowed, layer)
        else:
            for tid, cpus in zip(workers, plan[0], strict=True):
                os.sched_setaffinity(tid, cpus)
                team.workers[tid] = cpus
            team.master = plan[1]
            log.debug("threads placed: workers %s, master %s", team.workers, team.master)
        if old is not None:  # workers of the old team that left it get their mask back
            for tid in set(old.workers) - set(team.workers):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, allowed)
        with self._lock:
            self._teams[me] = team
        return team


#: The process's placement: frames run inside ``PLACEMENT.frame()``.
PLACEMENT = Placement()


def set_enabled(enabled: bool) -> None:
    """Turn thread placement on or off for this process (the daemon's ``bind_threads``)."""
    PLACEMENT.set_enabled(enabled)


__all__ = ["PLACEMENT", "Placement", "plan_cpus", "set_enabled", "team_thread_ids"]
