"""Numba threading defaults, applied on ``import edgebnn`` before any kernel is launched.

Numba picks its threading layer when the first parallel kernel runs, from
``numba.config.THREADING_LAYER_PRIORITY`` (TBB first by default). Set only when a kernel
module was imported, the order came too late for a program that touched Numba's threads
first (``numba.set_num_threads`` before building a network): it got TBB, and the headline
network ran at 3.2 ms/frame instead of 2.5 at 2 threads here. So the package sets it on
import; a user's ``NUMBA_THREADING_LAYER(_PRIORITY)``, ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` still wins. Numba itself is not imported here (the CLI's light commands
stay light); if it is already loaded, its config is updated too.

OpenMP first with a short spin, TBB last. Measured here, ms/frame at 2 threads, idle and
with both cores busy with other processes (headline d-series / EfficientNet-Lite0):
  OpenMP, libgomp's default long spin        4.1-5.3 / 6.3  | busy: 38-128 / 16
  OpenMP, GOMP_SPINCOUNT=3000 (our default)   4.3     / 6.6  | busy: 10    / 17
  OpenMP, OMP_WAIT_POLICY=PASSIVE             5.2-5.8 / 10.7 | busy: 15-17 / 13
  workqueue                                   6.3-6.9        | busy: 31
  TBB                                         8.5 at 1 and 2 threads; kept ~7 KB per launch
A device that also decodes video never has its cores to itself: a spinning barrier that
waits for a descheduled thread is what made the busy case collapse. A user's
NUMBA_THREADING_LAYER(_PRIORITY), OMP_WAIT_POLICY or GOMP_SPINCOUNT still wins.
"""

from __future__ import annotations

import os
import sys

#: Threading layers in order of preference.
PRIORITY = ("omp", "workqueue", "tbb")


def apply_defaults() -> None:
    """Prefer OpenMP with a short spin unless the user chose a layer or a wait policy."""
    if (
        "NUMBA_THREADING_LAYER" not in os.environ
        and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ
    ):
        os.environ["NUMBA_THREADING_LAYER_PRIORITY"] = " ".join(PRIORITY)
        numba = sys.modules.get("numba")
        if numba is not None:
            numba.config.THREADING_LAYER_PRIORITY = list(PRIORITY)
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "3000")  # read by libgomp when its pool starts


apply_defaults()
