"""On 32-bit ARM a ``generic`` CPU from LLVM is replaced by a baseline with native atomics
before anything compiles; everywhere else Numba's choice stands. CI runs this file on x86,
and under qemu-arm on Debian bookworm armhf with the CPU left generic (.ci/arm.sh)."""

from __future__ import annotations

import os
import platform
import struct
import subprocess
import sys

import pytest
from edgebnn.kernels._cpu import DEFAULT_BASELINE, baseline_for


@pytest.mark.parametrize(
    "machine,pointer_bytes,host_cpu,environ,expected",
    [
        ("armv7l", 4, "generic", {}, DEFAULT_BASELINE),
        ("armv8l", 4, "generic", {}, DEFAULT_BASELINE),
        ("aarch64", 4, "generic", {}, DEFAULT_BASELINE),  # 32-bit Pi OS, 64-bit kernel
        ("armv6l", 4, "generic", {}, "arm1176jzf-s"),  # Pi 1 and Zero: no ARMv7 code
        ("armv7l", 4, "cortex-a53", {}, None),  # LLVM knows the CPU: left alone
        ("armv7l", 4, "generic", {"NUMBA_CPU_NAME": "cortex-a72"}, None),
        ("armv7l", 4, "generic", {"NUMBA_CPU_FEATURES": "+v7,+neon"}, None),
        ("aarch64", 8, "generic", {}, None),  # AArch64 always has atomics
        ("x86_64", 8, "generic", {}, None),
    ],
)
def test_baseline_only_for_a_generic_32bit_arm_cpu(
    machine, pointer_bytes, host_cpu, environ, expected
):
    assert baseline_for(machine, pointer_bytes, host_cpu, environ) == expected


# Numba's reference counting uses atomics: an array made inside jitted code needs them. A
# generic ARMv7 target turns them into __sync_* calls and this compile aborts the process.
PROBE = """
import platform, struct, sys
import llvmlite.binding as llvm
import edgebnn
from edgebnn.kernels import binary  # the first kernel module: logs the choice
import numba
import numpy as np

@numba.njit(cache=False)
def filled(n):
    return np.full(n, 3.0).sum()

assert filled(5) == 15.0
print(platform.machine(), struct.calcsize("P"), llvm.get_host_cpu_name(), numba.config.CPU_NAME)
"""


def test_first_compile_works_and_the_choice_is_logged_once() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    machine, pointer_bytes, host_cpu, cpu_name = run.stdout.split()
    assert (machine, int(pointer_bytes)) == (platform.machine(), struct.calcsize("P"))
    expected = baseline_for(machine, int(pointer_bytes), host_cpu, {})
    assert cpu_name == str(expected)
    warnings = [line for line in run.stderr.splitlines() if "has native atomics" in line]
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"compiling for {expected}" in warnings[0]
