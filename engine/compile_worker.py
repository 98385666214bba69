"""A compile worker: compiles kernel signatures into the shared Numba cache.

Started by :mod:`edgebnn.engine.warmup` as ``python -m edgebnn.engine.compile_worker``.
The parent writes one job at a time on stdin (a length line, then a pickle of
``(module, qualname, argument types)``; Numba's types travel only as pickles) and reads one
answer line per job on stdout: ``ok SECONDS`` or ``error MESSAGE``. The pipe is the only
source of pickles: nothing is read from a file or a socket.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import time


def compile_signature(module: str, qualname: str, argtypes: tuple) -> float:
    """Compile one kernel signature (Numba saves it to the cache); returns seconds."""
    target: object = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    start = time.perf_counter()
    target.compile(argtypes)  # type: ignore[attr-defined]  # a numba Dispatcher, found by name
    return time.perf_counter() - start


def main() -> int:
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the answers
    # The parent's import-time settings: the CPU Numba targets, then the threading layer.
    import edgebnn.kernels._cpu
    import edgebnn.kernels.threads  # noqa: F401

    jobs = sys.stdin.buffer
    while True:
        header = jobs.readline()
        if not header.strip():
            return 0
        module, qualname, argtypes = pickle.loads(jobs.read(int(header)))
        try:
            answers.write(f"ok {compile_signature(module, qualname, argtypes):.3f}\n")
        except Exception as exc:  # noqa: BLE001  (the parent compiles it and raises the real error)
            message = " ".join(str(exc).split())[:300]
            answers.write(f"error {type(exc).__name__}: {message}\n")
        answers.flush()


if __name__ == "__main__":
    sys.exit(main())
