"""``edgebnn bench``: speed of the engine on a network, with the peer timed in the same run.

Prints, for the machine it ran on: ms/frame (median of ``--runs`` after warm-up) at each
thread count, back to back and paced like a camera's frames (a sleep of each ``paced_ms``
gap before every frame, so the engine's threads go idle between frames as in the daemon),
the CPU the process burns while no frame arrives, a per-step breakdown, peak RSS, the cold
JIT compile time (a fresh process with an empty Numba cache) and the warm start (a fresh
process with the cache filled), and with ``--compare onnxruntime`` the same network and
weights in ONNX Runtime, with the ratios.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from edgebnn.bench.timing import median_ms
from edgebnn.engine import host
from edgebnn.kernels.placement import PLACEMENT
from edgebnn.kernels.threads import set_threads

_START_SCRIPT = """
import sys, time
t0 = time.perf_counter()
import edgebnn
net = edgebnn.load(sys.argv[1])
t1 = time.perf_counter()
net.warmup()
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f} {t2 - t0:.3f}")
"""


def _timed_start(model: str, cache_dir: str) -> tuple[float, float, float]:
    """(import+build s, JIT warm-up s, total s) of a fresh process using ``cache_dir``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", _START_SCRIPT, model],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    a, b, c = (float(v) for v in out.stdout.split())
    return a, b, c


def idle_cpu_percent(seconds: float) -> float:
    """CPU time all of this process's threads use during ``seconds`` of sleep, in % of one
    core: what the engine costs between frames."""
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return 100.0 * (time.process_time() - cpu) / (time.perf_counter() - wall)


def run_engine_benchmark(
    model: str,
    threads: list[int],
    runs: int,
    compare: str | None,
    cold: bool,
    breakdown: bool,
    paced_ms: tuple[float, ...] = (100.0,),
    idle_seconds: float = 3.0,
) -> int:
    """Run the benchmark and print its report; returns an exit code."""
    import numba

    import edgebnn

    print(f"machine: {host.machine_line()}")
    print(f"model:   {model}")
    net = edgebnn.load(model)
    if not isinstance(net, edgebnn.Network):  # a TFLite model without the .tflite suffix
        raise edgebnn.ModelError("a TFLite model: name it *.tflite to benchmark it", path=model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, net.input_shape).astype(np.float32)
    t = time.perf_counter()
    net.warmup()
    print(
        f"warm-up in this process: {time.perf_counter() - t:.2f} s (Numba cache: {os.environ.get('NUMBA_CACHE_DIR') or 'default'})"
    )
    layer: str
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel launched (serial build)
        layer = "none (serial kernels)"
    print(f"numba threading layer: {layer} (set NUMBA_THREADING_LAYER to compare)")
    placed = "on" if PLACEMENT.active() else "off"
    print(f"thread placement: {placed} (EDGEBNN_BIND_THREADS=0 or 1 to compare)")
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    plan = net.plan
    ours: dict[int, float] = {}
    paced: dict[tuple[int, float], float] = {}
    for n in threads:
        set_threads(n)
        plan.run(x)
        ours[n] = median_ms(lambda: plan.run(x), runs)
        for gap in paced_ms:
            paced[n, gap] = median_ms(lambda: plan.run(x), runs, gap_s=gap / 1000.0)
    idle = idle_cpu_percent(idle_seconds) if idle_seconds > 0 else None
    # Per-step times before the peer runs: ONNX Runtime's pool threads keep spinning after
    # a run and would take the cores from ours.
    steps: list[tuple[str, float, float]] = []
    per_step: tuple[float, float] | None = None
    if breakdown:
        set_threads(max(threads))
        gap = paced_ms[0] / 1000.0 if paced_ms else 0.0
        steps = [
            (step.label, median_ms(step, runs), median_ms(step, runs, gap_s=gap) if gap else 0.0)
            for step in plan.steps
        ]

        def step_by_step() -> None:
            plan._input_view[...] = x
            for step in plan.steps:
                step()

        per_step = (median_ms(step_by_step, runs), median_ms(step_by_step, runs, gap_s=gap))
    peers: dict[int, float] = {}
    agreement = ""
    if compare == "onnxruntime":
        import onnxruntime as ort
        from edgebnn.bench.onnx_export import nchw, to_onnx

        blob = to_onnx(net)
        xin = nchw(x)
        for n in threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads = n
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
            y = sess.run(None, {"x": xin})[0].reshape(-1)
            for _ in range(3):
                sess.run(None, {"x": xin})
            peers[n] = median_ms(functools.partial(sess.run, None, {"x": xin}), runs)
        diff = float(np.abs(y - net.forward(x)).max())
        agreement = f"(ONNX Runtime {ort.__version__}; max |Δ| vs edgebnn output {diff:.2g})"
    print()
    gaps = [f"paced {g:g} ms" for g in paced_ms]
    header = f"{'threads':>7}  {'back-to-back ms':>15}" + "".join(f"  {g:>14}" for g in gaps)
    if peers:
        header += f"  {'onnxruntime ms':>14}  {'speed-up':>8}"
        if paced_ms:
            header += f"  {'vs paced':>8}"
    print(header)
    for n in threads:
        line = f"{n:>7}  {ours[n]:>15.2f}" + "".join(f"  {paced[n, g]:>14.2f}" for g in paced_ms)
        if peers:
            line += f"  {peers[n]:>14.2f}  {peers[n] / ours[n]:>7.1f}x"
            if paced_ms:
                line += f"  {peers[n] / paced[n, paced_ms[0]]:>7.1f}x"
        print(line)
    if agreement:
        print(agreement)
    print(
        f"median of {runs} runs after warm-up (paced: a sleep of the gap before each frame); "
        f"peak RSS {host.peak_rss_mb():.0f} MB"
    )
    if peers and paced_ms:
        print(f"vs paced: ONNX Runtime back to back / edgebnn paced {paced_ms[0]:g} ms")
    if idle is not None:
        print(f"idle: {idle:.1f}% of one core over {idle_seconds:g} s without frames")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if steps:
        paced_head = f"  paced {paced_ms[0]:g} ms" if paced_ms else ""
        print(
            f"\nper step, each launched as its own parallel kernel ({max(threads)} threads, "
            f"median of {runs}, before ONNX Runtime or LCE ran):\n  back-to-back{paced_head}"
        )
        for label, ms, paced_step in steps:
            column = f"  {paced_step:9.3f} ms" if paced_ms else ""
            print(f"  {ms:9.3f} ms{column}  {label}")
        if per_step is not None:
            column = f"  {per_step[1]:9.3f} ms" if paced_ms else ""
            print(f"  {per_step[0]:9.3f} ms{column}  whole frame, one kernel per step")
    if cold:
        with tempfile.TemporaryDirectory() as cache:
            build, jit, total = _timed_start(model, cache)
            print(
                f"\ncold start (empty Numba cache): build {build:.2f} s + JIT compile {jit:.2f} s = {total:.2f} s"
            )
            build, jit, total = _timed_start(model, cache)
            print(
                f"warm start (Numba cache filled): build {build:.2f} s + load kernels {jit:.2f} s = {total:.2f} s"
            )
    return 0
