"""``edgebnn bench --model m.tflite [--compare lce]``: edgebnn and Larq Compute Engine side by side.

Times edgebnn on a ``.tflite`` model at each thread count (median ms/frame after warm-up),
then LCE's own interpreter on the same file and input in every configuration it offers
(default kernels, XNNPACK, the indirect BGEMM binary kernels) at the same thread counts, in
the same run, and prints the ratio to LCE's best. LCE runs in a child process: its PyPI wheel
(``pip install 'edgebnn[bench]'``) needs NumPy < 2 at run time, so ``--lce-python`` may name
the interpreter of another environment that has it (only ``larq-compute-engine`` and
``numpy<2``; TensorFlow is not needed).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from edgebnn.bench.timing import median_ms
from edgebnn.engine import host
from edgebnn.engine.tflite_network import TfliteNetwork
from edgebnn.kernels.threads import set_threads

#: LCE's interpreter configurations: name -> Interpreter keyword arguments.
LCE_CONFIGS = {
    "default": {"use_xnnpack": False, "use_indirect_bgemm": False},
    "xnnpack": {"use_xnnpack": True, "use_indirect_bgemm": False},
    "indirect_bgemm": {"use_xnnpack": False, "use_indirect_bgemm": True},
}

#: Runs in the LCE environment. Imports the interpreter without the package's __init__,
#: which imports TensorFlow for the converter.
LCE_SCRIPT = r"""
import importlib.util, json, sys, time, types
import numpy as np
spec = importlib.util.find_spec("larq_compute_engine")
if spec is None:
    sys.exit("larq-compute-engine is not installed in " + sys.executable)
pkg = types.ModuleType("larq_compute_engine")
pkg.__path__ = list(spec.submodule_search_locations)
sys.modules["larq_compute_engine"] = pkg
from larq_compute_engine.tflite.python.interpreter import Interpreter
if int(np.__version__.split(".")[0]) >= 2:
    sys.exit(f"LCE's interpreter needs numpy<2 (this environment has {np.__version__})")
job = json.loads(sys.argv[1])
model = open(job["model"], "rb").read()
x = np.load(job["input"])[None]
result = {}
for name, options in job["configs"].items():
    for threads in job["threads"]:
        interp = Interpreter(model, num_threads=threads, **options)
        y = interp.predict(x)
        for _ in range(3):
            interp.predict(x)
        times = []
        for _ in range(job["runs"]):
            t = time.perf_counter()
            interp.predict(x)
            times.append(time.perf_counter() - t)
        result[f"{name}/{threads}"] = [t * 1000.0 for t in times]
    result[f"{name}/output"] = np.asarray(y, np.float64).reshape(-1).tolist()
print(json.dumps(result))
"""


#: Rounds of timing: edgebnn, then LCE, then edgebnn again, ...: a change of the machine's
#: load during the run then falls on both engines alike.
ROUNDS = 3


def time_lce(model: str, x: np.ndarray, threads: list[int], runs: int, python: str) -> dict:
    """LCE's ms per run (a list) per ``config/threads`` and its outputs, from a child
    process."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        np.save(path, x.astype(np.float32))
        job = {"model": os.path.abspath(model), "input": path, "threads": threads,
               "runs": runs, "configs": LCE_CONFIGS}  # fmt: skip
        proc = subprocess.run([python, "-c", LCE_SCRIPT, json.dumps(job)], capture_output=True,
                              text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise RuntimeError(f"LCE's interpreter ({python}): {message}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timed_ms(fn, *args) -> float:
    """Milliseconds of one call."""
    start = time.perf_counter()
    fn(*args)
    return 1000.0 * (time.perf_counter() - start)


def run_tflite_benchmark(
    model: str, threads: list[int], runs: int, compare_lce: bool, lce_python: str | None,
    breakdown: bool,
) -> int:  # fmt: skip
    """Print the report; returns an exit code."""
    import edgebnn

    print(f"machine: {host.machine_line()}")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"model:   {model}")
    net = edgebnn.load(model)
    if not isinstance(net, TfliteNetwork):
        raise edgebnn.ModelError("not a .tflite model (LCE runs TFLite models only)", path=model)
    x = np.random.default_rng(0).uniform(-1, 1, net.input_shape).astype(np.float32)
    t = time.perf_counter()
    net.warmup()
    print(f"warm-up in this process: {time.perf_counter() - t:.2f} s")
    for n in threads:
        set_threads(n)
        net.forward(x)
    per_round = -(-runs // ROUNDS)
    ours_runs: dict[int, list[float]] = {n: [] for n in threads}
    lce_runs: dict[str, list[float]] = {}
    lce: dict = {}
    for _ in range(ROUNDS):
        for n in threads:
            set_threads(n)
            ours_runs[n] += [timed_ms(net.forward, x) for _ in range(per_round)]
        if compare_lce:
            try:
                lce = time_lce(model, x, threads, per_round, lce_python or sys.executable)
            except RuntimeError as exc:
                print(f"\nLCE not timed: {exc}")
                compare_lce = False
                continue
            for key, value in lce.items():
                if not key.endswith("/output"):
                    lce_runs.setdefault(key, []).extend(value)
    ours = {n: statistics.median(v) for n, v in ours_runs.items()}
    fastest = {n: min(v) for n, v in ours_runs.items()}
    lce.update({k: statistics.median(v) for k, v in lce_runs.items()})
    lce_fastest = {k: min(v) for k, v in lce_runs.items()}
    steps: dict[int, list[float]] = {}
    for n in threads if breakdown else []:
        set_threads(n)
        values = net.run_all(x)
        steps[n] = [median_ms(functools.partial(s.run, values), runs) for s in net.steps]
    print()
    names = list(LCE_CONFIGS) if lce else []
    print(f"{'threads':>7}  {'edgebnn':>9}" + "".join(f"  {'LCE ' + n:>18}" for n in names)
          + ("  speed-up vs LCE's best (any config, any threads)" if lce else "")
          + "   [ms/frame]")  # fmt: skip
    best = min((lce[k] for k in lce_fastest), default=None)
    for n in threads:
        line = f"{n:>7}  {ours[n]:>9.2f}" + "".join(f"  {lce[f'{c}/{n}']:>18.2f}" for c in names)
        if best is not None:
            line += f"  {best / ours[n]:.2f}x (LCE best {best:.2f} ms)"
        print(line)
    if lce:  # the fastest runs: what load disturbs least, on both sides
        best_min = min(lce_fastest.values())
        print("fastest of the runs: " + "; ".join(
            f"{n} threads edgebnn {fastest[n]:.2f} ms, {best_min / fastest[n]:.2f}x LCE's "
            f"fastest ({best_min:.2f} ms)" for n in threads))  # fmt: skip
    if lce:
        y = net.forward(x)
        diffs = {c: float(np.abs(y - np.asarray(lce[f"{c}/output"])).max()) for c in names}
        print("max |Δ| vs edgebnn output: " + ", ".join(f"{c} {d:.2g}" for c, d in diffs.items()))
    print(f"median of {ROUNDS * per_round} runs after warm-up, in {ROUNDS} rounds alternating "
          f"between the engines; peak RSS {host.peak_rss_mb():.0f} MB")  # fmt: skip
    if steps:
        print(f"\nper step, one kernel call each (median of {runs}; a frame runs consecutive "
              "kernel steps as one parallel region):")  # fmt: skip
        print("".join(f"{f'{n} thr':>10}" for n in threads) + "  operator")
        for i, s in enumerate(net.steps):
            label = f"{s.index:3d} {s.name} -> {'x'.join(map(str, s.output_shape))}"
            if s.fused_into is not None:
                print(" " * (10 * len(threads)) + f"  {label} (in step {s.fused_into})")
                continue
            print("".join(f"{steps[n][i]:7.3f} ms" for n in threads) + f"  {label}")
        print("".join(f"{sum(steps[n]):7.3f} ms" for n in threads) + "  sum")
    return 0
