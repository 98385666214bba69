"""One parallel region per frame: the plan's steps run as row tasks claimed by a thread team.

Launching every step as its own parallel kernel costs one thread wake-up per step, and on
a camera's schedule (a frame every 33-500 ms) every wake-up is a cold one: the worker's
core has halted between frames. Here a frame is *one* ``prange`` over the team; each
thread walks the whole step list, claiming tasks (row ranges of a step) from an atomic
counter, and waits for a step's last task to finish before it starts the next step
(a spin with a pause hint, then ``sched_yield``). The team exists only while a frame is in
flight: between frames no thread spins beyond the threading layer's own short spin.

Claiming instead of assigning makes the schedule safe and fast whatever the team does: a
thread that wakes late finds fewer tasks left (the others started without it), one that
never comes costs nothing, and a thread only ever waits for tasks already claimed by a
running thread. The tasks are the kernels' own serial ``*_rows`` functions (the parallel
kernels are loops over them), so a frame computes exactly what the per-step kernels do.

The frame kernel is compiled once for every plan: each step's arguments are packed at
plan time and its part is called by address (:mod:`edgebnn.kernels.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from edgebnn.engine.steps import Step
from edgebnn.kernels.placement import PLACEMENT


@dataclass(frozen=True)
class TaskForm:
    """How a kernel runs as tasks: its serial part ``part(lo, hi, *args)``, the number of
    units (rows) it splits, and how many tasks per thread (overlapping bands recompute the
    rows they share, so they take fewer)."""

    part: Callable
    units: Callable[[tuple], int]
    per_thread: int


#: Tasks per thread of a fused MBConv step (:mod:`edgebnn.kernels.mbconv`).
MBCONV_TASKS = 3


def _packable(args: tuple) -> bool:
    from edgebnn.kernels.tasks import packable as check

    return check(args)


def _forms() -> dict[Callable, TaskForm]:
    from edgebnn.kernels import (
        binary,
        binary_pool,
        conv,
        conv_blocked,
        depthwise,
        elementwise,
        gemm,
        lce,
        mbconv,
        pool,
        softmax,
        stem,
        tflite_conv,
        tflite_float,
    )

    return {
        # Bands of output rows, each on a line-buffer slot it claims (boundary rows are
        # computed by both bands: few tasks, but more than one per thread, so that a late
        # thread holds up one band, not half the block).
        mbconv.mbconv_chain: TaskForm(mbconv.mbconv_chain_rows, lambda a: a[32], MBCONV_TASKS),
        gemm.pointwise_packed: TaskForm(gemm.pointwise_packed_rows, lambda a: a[9].shape[0], 4),
        depthwise.depthwise_rows_chain: TaskForm(
            depthwise.depthwise_rows_chain_rows, lambda a: a[5], 4
        ),
        elementwise.chain_copy: TaskForm(elementwise.chain_copy_rows, lambda a: a[0].shape[0], 4),
        elementwise.add_chain: TaskForm(elementwise.add_chain_rows, lambda a: a[0].shape[0], 4),
        softmax.softmax: TaskForm(softmax.softmax_rows, lambda a: 1, 1),
        conv.conv2d_chain: TaskForm(conv.conv2d_chain_rows, lambda a: a[3], 4),
        conv.conv1x1_filters_chain: TaskForm(
            conv.conv1x1_filters_chain_rows, lambda a: a[1].shape[0], 4
        ),
        conv_blocked.conv2d_columns_chain: TaskForm(
            conv_blocked.conv2d_columns_chain_rows, lambda a: a[3], 4
        ),
        conv_blocked.conv2d_columns_pool_bits: TaskForm(
            conv_blocked.conv2d_columns_pool_bits_rows, lambda a: a[7], 8
        ),
        stem.stem_pool_bits: TaskForm(stem.stem_pool_bits_rows, lambda a: a[13], 8),
        binary.sign_pack: TaskForm(binary.sign_pack_rows, lambda a: a[0].shape[0], 4),
        binary.binary_conv_chain: TaskForm(binary.binary_conv_chain_rows, lambda a: a[10], 4),
        binary_pool.binary_conv_pool_bits: TaskForm(
            binary_pool.binary_conv_pool_bits_rows, lambda a: a[18], 2
        ),
        binary_pool.binary_conv_pool_counts: TaskForm(
            binary_pool.binary_conv_pool_counts_rows, lambda a: a[16], 2
        ),
        pool.pool_chain: TaskForm(pool.pool_chain_rows, lambda a: a[4], 4),
        pool.pool_to_bits: TaskForm(pool.pool_to_bits_rows, lambda a: a[5], 4),
        # TFLite models (Larq Compute Engine's binary ops): units are rows or pixels.
        lce.quantize: TaskForm(lce.quantize_rows, lambda a: a[0].shape[0], 4),
        lce.bconv_float_fused: TaskForm(
            lce.bconv_float_pixels, lambda a: a[11].shape[0] * a[11].shape[1], 4
        ),
        lce.bconv_bits: TaskForm(lce.bconv_bits_pixels, lambda a: a[4].shape[0] * a[4].shape[1], 4),
        tflite_conv.conv2d: TaskForm(
            tflite_conv.conv2d_pixels, lambda a: a[6].shape[0] * a[6].shape[1], 4
        ),
        tflite_float.depthwise_clamped: TaskForm(
            tflite_float.depthwise_rows, lambda a: a[7].shape[0], 4
        ),
        tflite_float.pool_clamped: TaskForm(tflite_float.pool_rows, lambda a: a[10].shape[0], 4),
    }


_FORMS: dict[Callable, TaskForm] | None = None


def task_form(kernel: Callable) -> TaskForm | None:
    """The task form of a plan kernel, or None (it runs as its own call)."""
    global _FORMS
    if _FORMS is None:
        _FORMS = _forms()
    return _FORMS.get(kernel)


def step_task_form(step) -> TaskForm | None:
    """The task form a frame runs ``step`` as, or None (it runs as its own call)."""
    form = task_form(step.kernel)
    return form if form is not None and _packable(step.args) else None


class Region:
    """Consecutive plan steps run as one parallel region (see the module docstring)."""

    def __init__(self, steps: Sequence) -> None:
        from edgebnn.kernels import tasks

        self.steps = list(steps)
        forms = [task_form(s.kernel) for s in self.steps]
        self.forms = [f for f in forms if f is not None]  # all of them: see FrameRunner
        self.units = [
            max(1, int(f.units(s.args))) for f, s in zip(self.forms, self.steps, strict=True)
        ]
        packed = [tasks.pack(s.args) for s in self.steps]
        self._blobs = [blob for blob, _ in packed]  # the words the frame reads
        self._input_slot = packed[0][1][0] if packed[0][1] else None
        self.blobs = np.array([b.__array_interface__["data"][0] for b in self._blobs], np.int64)
        self.tramps = np.zeros(len(self.steps), np.int64)
        self.parts = np.zeros(len(self.steps), np.int64)
        self._ready = False
        self._tasks: dict[int, np.ndarray] = {}
        self.sync = np.zeros(2 * len(self.steps) * tasks.STRIDE, np.int64)

    def tasks(self, team: int) -> np.ndarray:
        """(units, tasks) per step for a team of ``team`` threads."""
        if team not in self._tasks:
            table = np.zeros((len(self.steps), 2), np.int64)
            for i, (form, units) in enumerate(zip(self.forms, self.units, strict=True)):
                per = form.per_thread if team > 1 else 1
                table[i] = units, min(units, team * per)
            self._tasks[team] = table
        return self._tasks[team]

    def _prepare(self) -> None:
        """Compile (or load) every step's part and trampoline; take their addresses."""
        from edgebnn.kernels import tasks

        for i, (form, step) in enumerate(zip(self.forms, self.steps, strict=True)):
            self.tramps[i], self.parts[i], _ = tasks.task_addresses(form.part, step.args)
        self._ready = True

    def run(self, first_input: np.ndarray | None = None) -> None:
        """Run the steps once (``first_input`` replaces the first step's first array, of
        the same shape and type)."""
        from edgebnn.kernels import tasks

        if not self._ready:
            self._prepare()
        team = _team_size() if tasks.PARALLEL else 1
        blob0 = self._blobs[0]
        if first_input is not None:
            blob0[self._input_slot] = first_input.__array_interface__["data"][0]
        self.sync[:] = 0
        try:
            release = PLACEMENT.pending()  # the workers' wake-up placement ends here
            if team == 1:  # no parallel region to launch (see run_frame_alone)
                tasks.run_frame_alone(
                    self.sync, self.tasks(1), self.tramps, self.parts, self.blobs, release
                )
            else:
                tasks.run_frame(
                    team, self.sync, self.tasks(team), self.tramps, self.parts, self.blobs, release
                )
        finally:
            if first_input is not None:  # never keep a pointer into the caller's array
                blob0[self._input_slot] = self.steps[0].args[0].__array_interface__["data"][0]


def _team_size() -> int:
    import numba

    return int(numba.get_num_threads())


class FrameRunner:
    """A plan's steps grouped into regions (task-capable runs) and single calls."""

    def __init__(self, steps: Sequence) -> None:
        self.groups: list[Region | Step] = []
        run: list = []
        for step in steps:
            if step_task_form(step) is not None:
                run.append(step)
                continue
            if run:
                self.groups.append(Region(run))
                run = []
            self.groups.append(step)
        if run:
            self.groups.append(Region(run))

    def run(self, first_input: np.ndarray | None = None) -> None:
        """One frame; ``first_input`` replaces the first step's first array (same shape
        and type)."""
        for i, group in enumerate(self.groups):
            override = first_input if i == 0 else None
            if isinstance(group, Region):
                group.run(override)
            elif override is not None:
                group.kernel(override, *group.args[1:])
            else:
                group()
