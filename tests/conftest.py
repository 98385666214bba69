"""Shared test set-up: one Numba cache for the whole run (and for subprocesses)."""

from __future__ import annotations

import os
from pathlib import Path

# Must be set before numba is imported anywhere; subprocesses inherit it.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba_cache"))
