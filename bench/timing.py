"""The one timing helper of the benchmarks: median (or fastest) milliseconds of a call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 0, gap_s: float = 0.0) -> float:
    """Median milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones.

    ``gap_s`` > 0 sleeps that long before each timed call (a camera-paced frame: caches and
    idle worker threads have cooled down); 0 times the calls back to back.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if gap_s:
            time.sleep(gap_s)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def min_ms(fn: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` calls: the figure least disturbed by other processes."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best
