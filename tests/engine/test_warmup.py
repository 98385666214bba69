"""The warm-up: the plan's kernel signatures, compile progress while Numba compiles, the
compile workers filling the shared cache, and the bar and log reporters."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from edgebnn.engine.progress import ProgressBar, ProgressLog
from edgebnn.engine.warmup import WarmupProgress, kernel_calls
from edgebnn.kernels.compile_watch import compile_state, kernel_name, watch
from numba import njit
from numba.core import event

import edgebnn

DATA = Path(__file__).resolve().parent.parent / "data"
TINY = DATA / "tiny_new.ell"  # input copy, fully connected, softmax: three small kernels
# What a frame of it calls: the input copy's and the softmax's task parts, and the fully
# connected layer's kernel (a call of its own).
KERNELS = ("chain_copy_rows", "fully_connected", "softmax_rows")
#: What the run on a zero input compiles after the kernels: the frame and its trampolines.
FRAME = {
    "tasks.run_task",
    "tasks.run_frame",
    "tasks.run_frame_alone",
    "tasks.run_member",
    "tasks.home_chunks",
    "sync.wait_for",
    "sync.count_done",
    "placement.team_thread_ids",
    "placement.release_team",
}


def frame_machinery(name: str) -> bool:
    """True for the frame's own functions and the Numba built-ins they call (min, max)."""
    return name in FRAME or name.startswith("numba.")


# Run in a fresh process with an empty NUMBA_CACHE_DIR: warm the tiny model up, recording
# every report, then say how many compiles happened in this process itself.
COLD_WARMUP = """
import json, sys, time
import edgebnn
from edgebnn.kernels.compile_watch import compile_state
net = edgebnn.load(sys.argv[1])
reports = []
def report(p):
    reports.append({"t": time.monotonic(), "done": p.done, "total": p.total,
                    "to_compile": p.to_compile, "compiling": list(p.compiling),
                    "workers": p.workers, "finished": p.finished, "line": p.line()})
from numba.core import event
from edgebnn.kernels.compile_watch import kernel_name
names = []
class Names(event.Listener):
    def on_start(self, ev): names.append(kernel_name(ev.data["dispatcher"]))
    def on_end(self, ev): pass
event.register("numba:compile", Names())
seconds = net.warmup(report=report, interval=0.25, workers=int(sys.argv[2]))
print(json.dumps({"reports": reports, "in_process_compiles": compile_state().finished,
                  "compiled": names, "seconds": seconds}))
"""


def cold_warmup(cache: Path, workers: int) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", COLD_WARMUP, str(TINY), str(workers)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kernel_calls_are_the_distinct_signatures_a_frame_calls_in_plan_order() -> None:
    from edgebnn.engine.frame import step_task_form
    from numba import types

    net = edgebnn.load(TINY)
    calls = kernel_calls(net.plan.steps)
    names = [c.name.rsplit(".", 1)[1] for c in calls]  # module.function
    assert names == list(KERNELS)
    copy = calls[0]
    assert len(copy.steps) == 2  # the input copy and a later chain share one signature
    for call in calls:
        for i in call.steps:
            step = net.plan.steps[i]
            argtypes = tuple(step.kernel.typeof_pyval(a) for a in step.args)
            form = step_task_form(step)
            if form is None:  # a call of its own
                assert step.kernel is call.dispatcher and call.argtypes == argtypes
            else:  # a task: the part, its row range, then the step's arguments
                assert form.part is call.dispatcher
                assert call.argtypes == (types.int64, types.int64, *argtypes)
    net.forward(np.zeros(net.input_shape, np.float32))
    for call in calls:  # the frame called exactly these
        assert call.compiled(), call.name


def test_compile_watch_names_the_kernel_and_its_helper_while_they_compile() -> None:
    watch()

    @njit(cache=False)
    def helper(x):
        return x + 1

    @njit(cache=False)
    def outer(x):
        return helper(x) * 2

    seen = []

    class Snapshot(event.Listener):
        def on_start(self, ev: event.Event) -> None:
            seen.append(compile_state())

        def on_end(self, ev: event.Event) -> None:
            pass

    before = compile_state().finished
    with event.install_listener("numba:compile", Snapshot()):
        assert outer(np.int64(1)) == 4
    after = compile_state()
    # The snapshot at the helper's start: outer is compiling, the helper inside it.
    assert any(s.current and s.current.endswith("outer") and s.inner for s in seen), seen
    assert any(s.inner and s.inner.endswith("helper") for s in seen), seen
    assert after.finished - before == 2 and after.current is None
    assert kernel_name(outer).endswith("outer")


def test_cold_warmup_in_workers_fills_the_cache_the_plan_loads(tmp_path: Path) -> None:
    cache = tmp_path / "numba"
    cold = cold_warmup(cache, workers=2)
    reports = cold["reports"]
    assert reports[0]["to_compile"] == 3 and reports[0]["total"] == 3, reports
    assert reports[0]["workers"] == 2, reports
    final = reports[-1]
    assert final["finished"] and final["done"] == 3
    assert "compiled 3 kernels" in final["line"]
    # Every kernel came from the workers: this process only loaded them from the cache
    # (so the signatures the workers compiled are exactly the ones a frame calls) and
    # compiled the frame's own small trampolines.
    assert all(frame_machinery(name) for name in cold["compiled"]), cold["compiled"]
    # While compiling, reports came at the interval, naming what was being compiled.
    during = [r for r in reports if not r["finished"]]
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(during)]
    assert gaps and max(gaps) < 10.0, gaps
    named = {name.rsplit(".", 1)[1] for r in during for name in r["compiling"]}
    assert named & set(KERNELS), during
    assert any(
        "compiling kernels for" in r["line"] and "in 2 processes" in r["line"] for r in during
    )
    # The next start is warm: nothing to compile, nothing reported.
    warm = cold_warmup(cache, workers=2)
    assert warm["reports"] == [] and warm["in_process_compiles"] == 0


def test_cold_warmup_in_process_reports_the_kernel_compiling_now(tmp_path: Path) -> None:
    cold = cold_warmup(tmp_path / "numba", workers=1)
    during = [r for r in cold["reports"] if not r["finished"]]
    assert all(r["workers"] == 1 for r in during)
    named = {name.rsplit(".", 1)[1] for r in during for name in r["compiling"]}
    assert named & set(KERNELS), during
    assert cold["in_process_compiles"] >= 3
    assert cold["reports"][-1]["finished"]


def progress(**kw: object) -> WarmupProgress:
    base = {"model": "m", "done": 2, "total": 6, "to_compile": 5, "elapsed": 41.2}
    return WarmupProgress(**{**base, **kw})  # type: ignore[arg-type]


def test_progress_bar_redraws_one_line_and_keeps_the_last() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    bar(progress(compiling=("mbconv.mbconv_chain",), workers=2))
    bar(progress(done=3))
    bar(progress(done=6, finished=True, elapsed=50.0))
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith(
        "compiled 5 kernels in 50 s (cached for the next start)\n"
    )
    first, second = text.split("\r")[1:3]
    assert "[########----------------] 2/6 kernels  41 s  now mbconv.mbconv_chain" in first
    assert "(2 processes)" in first
    assert "3/6 kernels" in second and len(second) >= len(first.rstrip())  # old text blanked


def test_progress_log_says_what_and_how_far(caplog) -> None:
    logger = logging.getLogger("edgebnn.test_progress")
    with caplog.at_level(logging.INFO, logger="edgebnn.test_progress"):
        ProgressLog(logger)(progress(compiling=("depthwise.depthwise_rows_chain",)))
    assert caplog.messages == [
        "compiling kernels for m: 2/6 ready, 41 s; now depthwise.depthwise_rows_chain"
    ]
    assert ProgressLog.interval <= 10.0


def test_warm_up_by_running_reports_what_compiles_without_a_total() -> None:
    """Networks whose kernels are found by running (TFLite): reports while Numba compiles
    (here a kernel new to this process), a count instead of a total, and a final line."""
    from edgebnn.engine.warmup import warm_up_by_running

    @njit  # no cache: it compiles in this process whatever the cache holds
    def slow_to_build(x):
        total = 0.0
        for i in range(x.size):
            total += np.sin(x[i]) * np.cos(x[i]) + np.sqrt(abs(x[i]))
        return total

    def run() -> None:
        slow_to_build(np.ones(8))
        slow_to_build(np.ones((2, 2)).ravel().astype(np.float32))  # a second signature

    reports: list[WarmupProgress] = []
    seconds = warm_up_by_running(run, "tiny.tflite", reports.append, interval=0.01)
    assert seconds > 0
    during, final = reports[:-1], reports[-1]
    assert during and all(r.total is None and not r.finished for r in during)
    assert any("slow_to_build" in name for r in during for name in r.compiling)
    assert final.finished and final.to_compile >= 2 and final.total == final.to_compile
    assert final.line().startswith(f"tiny.tflite: compiled {final.to_compile} kernels in ")
    assert during[-1].line().startswith("compiling kernels for tiny.tflite: ")
    out = io.StringIO()
    ProgressBar(out)(during[-1])
    assert "[" not in out.getvalue() and " kernels compiled  " in out.getvalue()


def test_warm_up_by_running_is_silent_when_nothing_compiles() -> None:
    from edgebnn.engine.warmup import warm_up_by_running

    reports: list[WarmupProgress] = []
    warm_up_by_running(lambda: None, "cached.tflite", reports.append, interval=0.01)
    assert reports == []
