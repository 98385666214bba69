"""Thread placement: a frame's worker threads wake up on cores of their own.

Why: a camera delivers a frame every 33-500 ms, so every frame starts with the team
asleep. After a sleep of more than ~20 ms the kernel's scheduler wakes a worker on the
waking thread's CPU (wake-affine): it then waits for, or shares, the caller's core, and
the frame takes as long as on one thread (headline network at 2 threads on a 2-vCPU
EPYC, one frame per 100 ms: 9.7 ms, against 4.9 ms back to back).

How: before a frame, each worker of the team (its thread ids collected once per calling
thread and team size, in a small parallel region) is bound to one CPU of its own, on
another core than the one the calling thread is on, within the allowed set (the caller's
mask: ``taskset``, systemd's ``CPUAffinity=``): one ``sched_setaffinity`` per sleeping
worker. The frame's region wakes them there, and the first thing it does
(:func:`release_team`, called by every member) gives them the allowed set back. So the
threads are steered at the wake-up only:

- nothing stays bound during a frame: a core taken by a task of higher priority (real
  time, or a much lower nice value) cannot hold a bound thread, and with it the frame,
  for up to a second (measured with a real-time spinner on one core: frames of 0.8 s
  with the threads bound throughout, 63 ms at most when only their wake-up is steered);
- the calling thread's mask is never changed: OpenMP's own binding (``OMP_PROC_BIND``)
  pins it for its lifetime, and every thread or process it starts later inherits a
  one-CPU mask (and ``os.sched_getaffinity`` then says 1 core).

Nothing is done when the user chose a placement (``OMP_PROC_BIND``, ``OMP_PLACES``,
``GOMP_CPU_AFFINITY``, ``KMP_AFFINITY``), with ``EDGEBNN_BIND_THREADS=0`` or
:func:`set_enabled` ``(False)`` (the daemon's ``bind_threads: false``), for a team of one
thread or larger than the allowed CPUs, for the serial build (32-bit ARM), off Linux, and
with the TBB threading layer (its threads are not a fixed team).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgebnn.kernels._jit import JIT, PJIT, prange
from edgebnn.kernels.sync import _syscall
from edgebnn.kernels.threads import PARALLEL
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

log = logging.getLogger(__name__)

_MACHINE = platform.machine().lower()
_LINUX = sys.platform.startswith("linux")
#: ``gettid`` and ``sched_setaffinity`` system call numbers here (None: placement is off).
_SYS_GETTID = {"x86_64": 186, "amd64": 186, "aarch64": 178, "arm64": 178}.get(_MACHINE)
_SYS_SETAFFINITY = {"x86_64": 203, "amd64": 203, "aarch64": 122, "arm64": 122}.get(_MACHINE)
SUPPORTED = _LINUX and _SYS_GETTID is not None and _SYS_SETAFFINITY is not None

#: Environment variables by which a user places OpenMP's threads: any of them set, we don't.
USER_PLACEMENT = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")
#: ``EDGEBNN_BIND_THREADS=0`` turns placement off.
ENV_SWITCH = "EDGEBNN_BIND_THREADS"

#: What :func:`release_team` gets when there is nothing to release.
NOTHING = np.zeros(0, np.int64)


@intrinsic
def _gettid(typingctx):
    """The calling thread's kernel thread id (``gettid``); 0 where unknown."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i64 = cgutils.ir.IntType(64)
        if not SUPPORTED:
            return cgutils.ir.Constant(i64, 0)
        return _syscall(builder, [cgutils.ir.Constant(i64, _SYS_GETTID)])

    return sig, codegen


@intrinsic
def _set_affinity(typingctx, words, start, count, tid):
    """``sched_setaffinity(tid, mask)``, the mask being ``count`` 64-bit words of
    ``words`` from ``start`` (nothing where unsupported)."""
    if not (isinstance(words, types.Array) and words.dtype == types.int64):
        return None
    sig = types.void(words, types.intp, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arr, start_v, count_v, tid_v = args
        if not SUPPORTED:
            return context.get_dummy_value()
        i64 = cgutils.ir.IntType(64)
        ary = context.make_array(signature.args[0])(context, builder, arr)
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [start_v])
        nbytes = builder.mul(count_v, cgutils.ir.Constant(i64, 8))
        _syscall(
            builder,
            [cgutils.ir.Constant(i64, _SYS_SETAFFINITY), tid_v, nbytes, builder.ptrtoint(ptr, i64)],
        )
        return context.get_dummy_value()

    return sig, codegen


@njit(**JIT)
def release_team(release):
    """Give the listed threads their mask back: ``release`` is ``[n, w, tid_1..tid_n,
    mask words (w)]`` (empty: nothing). Called by every member as a frame starts, so
    that whichever runs first frees the others."""
    if release.shape[0] == 0:
        return
    n = release[0]
    for i in range(n):
        _set_affinity(release, 2 + n, release[1], release[2 + i])


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
    workers: int, allowed: set[int], core_of: dict[int, tuple[int, int]], caller: int | None
) -> list[int] | None:
    """One CPU for each of ``workers`` worker threads within ``allowed``, on distinct
    cores other than the core of ``caller`` (the calling thread's CPU when it works in the
    team, as with OpenMP; None when it only waits); None when they cannot be spread
    (fewer CPUs than threads). Hardware threads of one core are shared only when there are
    fewer cores than threads."""
    threads = workers + (caller is not None)
    if workers < 1 or threads < 2 or len(allowed) < threads:
        return None
    cores = core_order(allowed, core_of)
    if caller is not None:  # the caller's core first: the workers take the others
        mine = next((i for i, g in enumerate(cores) if caller in g), None)
        if mine is not None:
            group = cores.pop(mine)
            cores.insert(0, [caller] + [c for c in group if c != caller])
    if len(cores) >= threads:
        picked = [g[0] for g in cores[:threads]]
    else:  # fewer cores than threads: hardware threads, each core's first ones first
        depth = max(map(len, cores))
        picked = [g[d] for d in range(depth) for g in cores if d < len(g)][:threads]
    return picked[threads - workers :]


@dataclass
class _Team:
    """The team of one calling thread: its workers and where they wake up."""

    size: int
    allowed: frozenset[int]
    workers: list[int] = field(default_factory=list)  # thread ids
    caller_works: bool = True
    #: worker CPUs by the caller's CPU (key None: the caller only waits, or unknown CPU)
    targets: dict[int | None, list[int]] = field(default_factory=dict)
    #: what :func:`release_team` gets: the workers and the allowed mask
    release: np.ndarray = field(default_factory=lambda: NOTHING)


def _mask_words(cpus: frozenset[int]) -> list[int]:
    """``cpus`` as the 64-bit words of a ``cpu_set_t`` (as int64)."""
    words = [0] * (max(cpus) // 64 + 1)
    for cpu in cpus:
        words[cpu // 64] |= 1 << (cpu % 64)
    return [w - (1 << 64) if w >= 1 << 63 else w for w in words]


def _current_cpu() -> int | None:
    """The CPU the calling thread runs on (``sched_getcpu``), or None."""
    try:
        return int(_LIBC.sched_getcpu()) if _LIBC is not None else None
    except (AttributeError, OSError):
        return None


_LIBC = ctypes.CDLL(None) if _LINUX else None


class Placement:
    """Steers each calling thread's team at the wake-up (see the module docstring)."""

    def __init__(self) -> None:
        self.enabled = True
        self._teams: dict[int, _Team] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per calling thread: in a frame, what to release

    def active(self) -> bool:
        """True when placement applies in this process (see the module docstring)."""
        return (
            self.enabled
            and PARALLEL
            and SUPPORTED
            and hasattr(os, "sched_setaffinity")
            and os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")
            and not any(os.environ.get(name, "").strip() for name in USER_PLACEMENT)
        )

    def set_enabled(self, enabled: bool) -> None:
        """Turn placement on or off."""
        self.enabled = bool(enabled)
        if not self.enabled:
            with self._lock:
                self._teams = {}

    def team_of(self, caller: int | None = None) -> _Team | None:
        """The team of ``caller`` (a thread id; default: the calling thread), if placed."""
        return self._teams.get(threading.get_native_id() if caller is None else caller)

    def pending(self) -> np.ndarray:
        """What the next parallel region of the current frame releases (then nothing)."""
        release = getattr(self._local, "release", NOTHING)
        self._local.release = NOTHING
        return release

    @contextlib.contextmanager
    def frame(self) -> Iterator[None]:
        """Run a frame's kernels inside: the workers wake up on cores of their own."""
        if getattr(self._local, "frame", False) or not self.active():
            yield  # (a frame within a frame changes nothing)
            return
        import numba

        size = int(numba.get_num_threads())
        if size < 2:
            yield
            return
        allowed = frozenset(os.sched_getaffinity(0))
        team = self._teams.get(threading.get_native_id())
        if team is None or team.size != size or team.allowed != allowed:
            team = self._place(size, allowed)
        self._local.frame = True
        try:
            if team.workers and self._steer(team):
                self._local.release = team.release
            yield
        finally:
            self._local.frame = False
            if self.pending() is not NOTHING:  # no region ran: release them here
                self._release(team)

    def _steer(self, team: _Team) -> bool:
        """Bind each worker to its CPU for the coming wake-up; False if the team changed."""
        cpu = _current_cpu() if team.caller_works else None
        targets = team.targets.get(cpu) or team.targets[None]
        try:
            for tid, target in zip(team.workers, targets, strict=True):
                os.sched_setaffinity(tid, (target,))
        except OSError:  # a worker ended (the threading layer replaced it): place again
            self._release(team)
            with self._lock:
                self._teams.pop(threading.get_native_id(), None)
            return False
        return True

    @staticmethod
    def _release(team: _Team) -> None:
        for tid in team.workers:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, team.allowed)

    def _place(self, size: int, allowed: frozenset[int]) -> _Team:
        """Collect the team's thread ids (the calling thread starts the region)."""
        import numba

        me = threading.get_native_id()
        ids = np.zeros(size, np.int64)
        team_thread_ids(ids)
        # OpenMP: the caller is thread 0 of the team; workqueue: the caller waits while
        # the pool's threads run every iteration.
        works = me in ids
        workers = list(dict.fromkeys(int(t) for t in ids if int(t) not in (0, me)))
        team = _Team(size, allowed, caller_works=works)
        core_of = read_topology(set(allowed))
        keys: list[int | None] = [*sorted(allowed), None] if works else [None]
        for key in keys:
            first = key if key is not None else (min(allowed) if works else None)
            target = plan_cpus(len(workers), set(allowed), core_of, first)
            if target is not None:
                team.targets[key] = target
        layer = numba.threading_layer()
        if None not in team.targets or layer == "tbb" or len(workers) != size - works:
            log.debug("threads left unplaced: team %d, allowed %s, layer %s", size, allowed, layer)
        else:
            team.workers = workers
            words = _mask_words(allowed)
            team.release = np.array([len(workers), len(words), *workers, *words], np.int64)
            log.debug("threads placed: workers %s, targets %s", workers, team.targets)
        with self._lock:
            self._teams[me] = team
        return team


#: The process's placement: frames run inside ``PLACEMENT.frame()``.
PLACEMENT = Placement()


def set_enabled(enabled: bool) -> None:
    """Turn thread placement on or off for this process (the daemon's ``bind_threads``)."""
    PLACEMENT.set_enabled(enabled)


__all__ = ["PLACEMENT", "Placement", "plan_cpus", "release_team", "set_enabled"]
