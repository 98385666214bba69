"""Warm a plan up: compile every kernel it calls, and say how far along that is.

A cold start (empty Numba cache) compiles each distinct kernel signature a frame calls, and
only those: for a step that runs as tasks of a frame (:mod:`.frame`) that is the kernel's
serial part with the frame's argument types, else the step's kernel. Signatures the cache
lacks are compiled first in worker processes (one per core, memory permitting) that share
the cache directory; with one core, or one kernel to build, in this process, one by one.
The plan then runs once on a zero input, which loads them and compiles (and caches) the
frame's small trampolines, so that the next process compiles nothing. A reporter hears
about the progress at least every ``interval`` seconds, whatever Numba is doing, so a
compile never looks like a hang.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgebnn.engine.frame import step_task_form
from edgebnn.kernels.compile_watch import compile_state, kernel_name, watch

log = logging.getLogger(__name__)

#: Memory a compile worker may need (measured peak RSS of a worker compiling the largest
#: EfficientNet kernel, with margin): fewer workers than cores on a small board.
WORKER_MEMORY = 450 << 20


@dataclass(frozen=True)
class WarmupProgress:
    """Where a warm-up stands; ``line()`` is what the log and ``systemctl status`` show."""

    model: str
    done: int  # kernel signatures ready (compiled or loaded from the cache)
    total: int | None  # distinct kernel signatures the plan calls (None: found by running)
    to_compile: int  # of those, how many the cache did not have
    elapsed: float
    compiling: tuple[str, ...] = ()  # kernels compiling right now
    workers: int = 1
    finished: bool = False

    def line(self) -> str:
        if self.finished:
            if not self.to_compile:
                count = f"{self.total} kernels" if self.total is not None else "kernels"
                return f"{self.model}: {count} loaded from the cache in {self.elapsed:.1f} s"
            return (
                f"{self.model}: compiled {self.to_compile} kernels in {self.elapsed:.0f} s "
                f"(cached for the next start)"
            )
        where = f" in {self.workers} processes" if self.workers > 1 else ""
        now = f"; now {', '.join(self.compiling)}" if self.compiling else ""
        ready = f"{self.done}/{self.total} ready" if self.total is not None else f"{self.done} done"
        return f"compiling kernels for {self.model}{where}: {ready}, {self.elapsed:.0f} s{now}"


Reporter = Callable[[WarmupProgress], None]


@dataclass
class KernelCall:
    """One distinct (kernel, argument types) pair the plan calls."""

    dispatcher: Any  # a numba Dispatcher (its attributes are not in numba's stubs)
    argtypes: tuple
    steps: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return kernel_name(self.dispatcher)

    def compiled(self) -> bool:
        return tuple(self.argtypes) in getattr(self.dispatcher, "overloads", {})

    def cached(self) -> bool:
        """Whether Numba's on-disk cache has this signature (for this CPU and source)."""
        cache = getattr(self.dispatcher, "_cache", None)
        if cache is None:
            return False
        try:
            return cache.load_overload(self.argtypes, self.dispatcher.targetctx) is not None
        except Exception:  # noqa: BLE001  (an unreadable entry: Numba recompiles it anyway)
            return False


def step_signature(step) -> tuple[object, tuple]:
    """(dispatcher, argument types) a frame calls for ``step``: its task part with the
    packed arguments' types (after the task's row range), else its kernel."""
    form = step_task_form(step)
    if form is None:
        kernel = step.kernel
        return kernel, tuple(kernel.typeof_pyval(a) for a in step.args)
    from edgebnn.kernels import tasks
    from numba import types

    layout = tasks.LAYOUTS[tasks.layout_key(step.args)]
    return form.part, (types.int64, types.int64, *layout)


def kernel_calls(steps: list) -> list[KernelCall]:
    """The distinct Numba kernel signatures a frame of the steps calls, in plan order."""
    calls: dict[tuple[int, tuple], KernelCall] = {}
    for i, step in enumerate(steps):
        if not hasattr(step.kernel, "typeof_pyval") or not hasattr(step.kernel, "py_func"):
            continue  # not a Numba dispatcher: nothing to precompile
        kernel, argtypes = step_signature(step)
        key = (id(kernel), argtypes)
        calls.setdefault(key, KernelCall(kernel, argtypes)).steps.append(i)
    return list(calls.values())


def default_workers(jobs: int) -> int:
    """One compile process per core, no more than jobs or memory allow (1 = in-process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cores or 1, jobs)
    available = _available_memory()
    if available is not None:
        workers = min(workers, max(1, available // WORKER_MEMORY))
    return max(1, workers)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


class _Ticker:
    """Calls the reporter every ``interval`` seconds from a thread until stopped."""

    def __init__(self, interval: float, tick: Callable[[], None]) -> None:
        self.interval, self.tick = interval, tick
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="compile-progress", daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.tick()
            except Exception:  # a reporter's fault must not stop the warm-up
                log.debug("progress report failed", exc_info=True)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def warm_up(
    plan,
    model: str = "model",
    report: Reporter | None = None,
    interval: float = 5.0,
    workers: int | None = None,
) -> float:
    """Compile (or load) every kernel ``plan`` calls and run it once; returns seconds.

    ``workers``: compile processes for the kernels the cache lacks (None: one per core,
    memory permitting; 1: compile in this process).
    """
    watch()
    interval = float(getattr(report, "interval", interval))
    start = time.monotonic()
    calls = kernel_calls(plan.steps)
    pending = [c for c in calls if not c.compiled() and not c.cached()]
    done = len(calls) - len(pending)
    workers = default_workers(len(pending)) if workers is None else max(1, workers)
    workers = min(workers, max(1, len(pending)))
    state: dict[str, Any] = {"done": done, "compiling": (), "workers": workers}

    def progress(finished: bool = False) -> WarmupProgress:
        compiling = state["compiling"]
        if not compiling:
            now = compile_state()
            compiling = (now.current,) if now.current else ()
        return WarmupProgress(
            model,
            int(state["done"]),
            len(calls),
            len(pending),
            time.monotonic() - start,
            tuple(compiling),
            int(state["workers"]),
            finished,
        )

    def tick() -> None:
        if report is not None and pending:  # (a warm start loads, however slowly: no lines)
            report(progress())

    if pending and report is not None:
        report(progress())
    with _Ticker(interval, tick):
        built: set[int] = set()
        if len(pending) > 1 and workers > 1:
            built = _compile_in_processes(pending, workers, state)
        state["workers"] = 1
        state["compiling"] = ()
        for call in pending:  # what no worker built: compiled here (or its real error raised)
            call.dispatcher.compile(call.argtypes)
            if id(call) not in built:
                state["done"] = int(state["done"]) + 1
        plan.run(np.zeros(plan.network.input_shape, np.float32))
    elapsed = time.monotonic() - start
    if report is not None and pending:
        state["done"] = len(calls)
        report(progress(finished=True))
    return elapsed


def warm_up_by_running(
    run: Callable[[], object],
    model: str = "model",
    report: Reporter | None = None,
    interval: float = 5.0,
) -> float:
    """Warm up a network whose kernels are found by running it (``run``: one frame):
    the same progress reports as :func:`warm_up`, without a total; returns seconds."""
    listener = watch()
    interval = float(getattr(report, "interval", interval))
    start = time.monotonic()
    first = listener.state().finished

    def progress(finished: bool = False) -> WarmupProgress:
        now = listener.state()
        done = now.finished - first
        compiling = (now.current,) if now.current else ()
        total = done if finished else None
        return WarmupProgress(
            model, done, total, done, time.monotonic() - start, compiling, 1, finished
        )

    def tick() -> None:
        now = progress()
        if report is not None and (now.compiling or now.done):  # (a warm frame says nothing)
            report(now)

    with _Ticker(interval, tick):
        run()
    elapsed = time.monotonic() - start
    if report is not None:
        final = progress(finished=True)
        if final.to_compile:
            report(final)
    return elapsed


def _compile_in_processes(
    pending: list[KernelCall], workers: int, state: dict[str, Any]
) -> set[int]:
    """Compile ``pending`` in ``workers`` processes, each taking the next job when it is
    free; returns the ids of the calls they built. A job a worker cannot do is left to the
    in-process run, which then compiles it or raises the real error."""
    queue = list(pending)
    lock = threading.Lock()
    running: dict[int, str] = {}
    built: set[int] = set()

    def serve(slot: int) -> None:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgebnn.engine.compile_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            log.debug("cannot start a compile worker: %s", exc)
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    call = queue.pop(0)
                    running[slot] = call.name
                    state["compiling"] = tuple(running.values())
                func = call.dispatcher.py_func
                job = pickle.dumps((func.__module__, func.__qualname__, call.argtypes))
                proc.stdin.write(b"%d\n" % len(job) + job)
                proc.stdin.flush()
                answer = proc.stdout.readline().decode("utf-8", "replace").strip()
                with lock:
                    running.pop(slot, None)
                    state["compiling"] = tuple(running.values())
                    if answer.startswith("ok"):
                        state["done"] = int(state["done"]) + 1
                        built.add(id(call))
                if not answer:  # the worker died (out of memory?): the rest stays in-process
                    log.debug("compile worker %d ended while compiling %s", slot, call.name)
                    return
                if not answer.startswith("ok"):
                    log.debug("compile worker could not compile %s: %s", call.name, answer)
        except OSError as exc:
            log.debug("compile worker %d failed: %s", slot, exc)
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            proc.wait()

    threads = [threading.Thread(target=serve, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return built
