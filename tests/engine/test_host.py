"""The host helpers: glibc's heap knobs, resident memory and the machine line."""

from __future__ import annotations

import os
import subprocess
import sys

from edgebnn.engine import host
from edgebnn.kernels.threads import cpu_count

MALLOC_PROBE = """
import os
from edgebnn.engine import host
print(host.fix_mmap_threshold(), host.release_free_memory())
"""


def test_glibc_threshold_pinned_unless_the_environment_says_otherwise() -> None:
    """The daemon pins glibc's mmap threshold (steady RSS); a user's MALLOC_MMAP_THRESHOLD_ wins."""
    import platform

    def probe(**env: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", MALLOC_PROBE],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()

    glibc = platform.libc_ver()[0] == "glibc"
    assert probe() == [str(glibc), str(glibc)]
    assert probe(MALLOC_MMAP_THRESHOLD_="131072")[0] == "False"


def test_rss_is_plausible_and_peak_at_least_current() -> None:
    assert 10 < host.current_rss_mb() <= host.peak_rss_mb() + 1
    assert host.rss_bytes() > 10 * 2**20


def test_machine_line_names_cpu_cores_and_libraries() -> None:
    line = host.machine_line()
    assert f"{cpu_count()} cores" in line
    assert "numba " in line and "numpy " in line and "Python " in line


def test_memory_of_another_process_and_its_children() -> None:
    """A child that wrote 64 MiB shows them in its Uss and Rss; its parent lists it."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_64_MIB],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        theirs = host.process_memory(child.pid)
        assert theirs["uss"] >= 64 << 20 and theirs["rss"] >= theirs["pss"] >= theirs["uss"]
        mine = host.process_memory(os.getpid())
        assert 0 < mine["uss"] <= mine["pss"] <= mine["rss"]
        assert child.pid in host.child_pids(os.getpid())
    finally:
        child.communicate(b"")
    assert child.pid not in host.child_pids(os.getpid())


CHILD_64_MIB = """
import sys
b = bytearray(64 << 20)
b[::4096] = bytes([1]) * (16 << 10)  # one write per page: every page resident and private
print("ready", flush=True)
sys.stdin.read()
"""
