"""Shared test set-up: one Numba cache for the whole run (and for subprocesses); under CI
a skipped test counts as failed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Must be set before numba is imported anywhere; subprocesses inherit it.
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba_cache")
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (``CI`` set) a skip is a failure: CI installs everything the tests need, so
    a skip there could only hide a missing dependency or a broken set-up."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (a skip must not hide a failure): {report.longrepr}"
