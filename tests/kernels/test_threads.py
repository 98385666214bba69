"""``import edgebnn`` sets Numba's threading defaults before any kernel runs, even when
the program imported Numba first; a user's own choice is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import numba, os
import edgebnn.engine.d_series
print(" ".join(numba.config.THREADING_LAYER_PRIORITY), os.environ.get("GOMP_SPINCOUNT", "-"))
"""


def _probe(**env: str) -> list[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NUMBA_THREADING", "OMP_", "GOMP_"))
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_openmp_first_with_a_short_spin_even_if_numba_came_first() -> None:
    assert _probe() == ["omp", "workqueue", "tbb", "3000"]


def test_users_choices_win() -> None:
    assert _probe(NUMBA_THREADING_LAYER_PRIORITY="tbb omp workqueue", GOMP_SPINCOUNT="7")[:4] == [
        "tbb",
        "omp",
        "workqueue",
        "7",
    ]
    assert _probe(OMP_WAIT_POLICY="PASSIVE")[-1] == "-"
