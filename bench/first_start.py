"""``edgebnn bench --first-start``: how long a new user waits for the first prediction.

Each figure is a fresh process with an empty Numba cache (and an empty converted-model
cache), as on a new install: the compile alone, in this process and in worker processes,
then ``edgebnn demo`` until its first prediction line, cold and warm. Printed with the
machine and its load average, since other jobs stretch every compile, and with the CPU
time of each run (compile workers included), which other jobs stretch much less.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgebnn.engine.host import machine_line

EDGEBNN = [sys.executable, "-m", "edgebnn"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache / "numba"),
            "EDGEBNN_MODELS_DIR": str(cache / "models")}  # fmt: skip


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_compile(model: str, cache: Path, workers: int | None) -> tuple[float, float]:
    """(wall, CPU) seconds of ``edgebnn compile`` (a fresh process) with ``workers``
    compile processes; the CPU counts the compile workers too."""
    args = [*EDGEBNN, "compile", "--model", model]
    args += ["--workers", str(workers)] if workers else []
    start, cpu = time.monotonic(), _children_cpu()
    subprocess.run(args, env=_env(cache), check=True, stderr=subprocess.DEVNULL)
    return time.monotonic() - start, _children_cpu() - cpu


def first_prediction(model: str, cache: Path) -> tuple[float, float]:
    """Seconds from starting ``edgebnn demo`` to its first prediction line on stdout, and
    the CPU seconds of the whole run (one prediction, then the demo stops)."""
    args = [*EDGEBNN, "demo", "--frames", "1", "--model", model]
    start, cpu = time.monotonic(), _children_cpu()
    proc = subprocess.Popen(
        args, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    seconds = float("nan")
    for line in proc.stdout:
        if " #" in line:  # a prediction: "HH:MM:SS  samples  #1  label score, ..."
            seconds = time.monotonic() - start
            break
    proc.stdout.close()
    proc.wait()
    return seconds, _children_cpu() - cpu


def run_first_start_benchmark(model: str) -> int:
    """Print cold/warm first-start figures for ``model``."""
    print(machine_line())
    print(f"model: {model}; load average at start {_load()}")
    print("wall time, CPU time (user + system, every process of the run), load after it")
    with tempfile.TemporaryDirectory() as tmp:
        _line("cold compile in this process:", *timed_compile(model, Path(tmp) / "serial", 1))
    with tempfile.TemporaryDirectory() as tmp:
        _line("cold compile in worker processes:", *timed_compile(model, Path(tmp) / "par", None))
    with tempfile.TemporaryDirectory() as tmp:
        _line("edgebnn demo, cold, first prediction:", *first_prediction(model, Path(tmp)))
        _line("edgebnn demo, warm, first prediction:", *first_prediction(model, Path(tmp)))
    return 0


def _line(what: str, wall: float, cpu: float) -> None:
    print(f"{what:38s} {wall:6.1f} s   CPU {cpu:6.1f} s   (load {_load()})", flush=True)


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
