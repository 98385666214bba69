"""``edgebnn bench --first-start``: how long a new user waits for the first prediction.

Each figure is a fresh process with an empty Numba cache (and an empty converted-model
cache), as on a new install: the compile alone, in this process and in worker processes,
then ``edgebnn demo`` until its first prediction line, cold and warm. Printed with the
machine and its load average, since other jobs stretch every compile.
"""

from __future__ import annotations

import os
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


def timed_compile(model: str, cache: Path, workers: int | None) -> float:
    """Seconds of ``edgebnn compile`` (a fresh process) with ``workers`` compile processes."""
    args = [*EDGEBNN, "compile", "--model", model]
    args += ["--workers", str(workers)] if workers else []
    start = time.monotonic()
    subprocess.run(args, env=_env(cache), check=True, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def first_prediction(model: str, cache: Path) -> float:
    """Seconds from starting ``edgebnn demo`` to its first prediction line on stdout."""
    args = [*EDGEBNN, "demo", "--frames", "1", "--model", model]
    start = time.monotonic()
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
    return seconds


def run_first_start_benchmark(model: str) -> int:
    """Print cold/warm first-start figures for ``model``."""
    print(machine_line())
    print(f"model: {model}; load average at start {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        serial = timed_compile(model, Path(tmp) / "serial", 1)
        print(f"cold compile in this process:        {serial:6.1f} s   (load {_load()})")
    with tempfile.TemporaryDirectory() as tmp:
        parallel = timed_compile(model, Path(tmp) / "parallel", None)
        print(f"cold compile in worker processes:    {parallel:6.1f} s   (load {_load()})")
    with tempfile.TemporaryDirectory() as tmp:
        cold = first_prediction(model, Path(tmp))
        print(f"edgebnn demo, cold, first prediction: {cold:6.1f} s   (load {_load()})")
        warm = first_prediction(model, Path(tmp))
        print(f"edgebnn demo, warm, first prediction: {warm:6.1f} s   (load {_load()})")
    return 0


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
