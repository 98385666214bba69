"""The CPU Numba compiles for on 32-bit ARM, chosen on ``import edgebnn`` before any compile.

Numba compiles for the CPU that LLVM detects. Where LLVM cannot name it on 32-bit ARM, it
reports ``generic`` (under qemu user-mode emulation, in some containers, on kernels whose
``/proc/cpuinfo`` it does not recognise), and the generic ARM target has no atomic
instructions: LLVM emits calls to ``__sync_fetch_and_add_4`` (Numba's reference counting)
that the JIT cannot resolve, and the first compile aborts the process (``LLVM ERROR: Symbol
not found``, SIGABRT, no Python traceback). There, and only there, the package names a
baseline CPU with native atomics before Numba builds its target machine: ``cortex-a7``
(ARMv7-A with VFPv4 and NEON: the Raspberry Pi 2's core, and a subset of what the Pi 3, 4
and 5 run in 32-bit mode), or ``arm1176jzf-s`` on ARMv6 (Pi 1, Zero). The choice goes into
``NUMBA_CPU_NAME`` (so subprocesses and Numba's cache key agree) and is logged once, as a
warning, when the first kernel module loads. A user's ``NUMBA_CPU_NAME`` or
``NUMBA_CPU_FEATURES`` wins. Elsewhere nothing is imported and nothing changes.
"""

from __future__ import annotations

import logging
import os
import platform
import struct
import sys
from collections.abc import Mapping

#: Baselines by ``platform.machine()``; any other 32-bit ARM gets :data:`DEFAULT_BASELINE`.
BASELINES = {"armv6l": "arm1176jzf-s"}
#: ARMv7-A with VFPv4, NEON and LDREX/STREX (every Raspberry Pi since the Pi 2).
DEFAULT_BASELINE = "cortex-a7"
#: Environment variables through which a user picks the CPU (Numba's own).
USER_CHOICE = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")

#: The CPU this process chose, or None when Numba's own detection stands.
chosen: str | None = None
#: What LLVM reported when a baseline was chosen.
reported: str | None = None
_logged = False


def is_32bit_arm(machine: str, pointer_bytes: int) -> bool:
    """True for a 32-bit ARM process (also 32-bit Raspberry Pi OS on a 64-bit kernel)."""
    name = machine.lower()
    return pointer_bytes == 4 and (name.startswith("arm") or name == "aarch64")


def baseline_for(
    machine: str, pointer_bytes: int, host_cpu: str, environ: Mapping[str, str]
) -> str | None:
    """The CPU to compile for, or None to leave Numba's choice alone."""
    if any(name in environ for name in USER_CHOICE):
        return None
    if not is_32bit_arm(machine, pointer_bytes) or host_cpu != "generic":
        return None
    return BASELINES.get(machine.lower(), DEFAULT_BASELINE)


def apply_baseline() -> str | None:
    """Name a baseline CPU for Numba where LLVM reports a generic 32-bit ARM one."""
    global chosen, reported
    machine, pointer_bytes = platform.machine(), struct.calcsize("P")
    if not is_32bit_arm(machine, pointer_bytes) or any(n in os.environ for n in USER_CHOICE):
        return None  # the common case: llvmlite is not even imported
    import llvmlite.binding as llvm

    host_cpu = llvm.get_host_cpu_name()
    cpu = baseline_for(machine, pointer_bytes, host_cpu, os.environ)
    if cpu is None:
        return None
    os.environ["NUMBA_CPU_NAME"] = cpu
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before edgebnn: its config was read already
        numba.config.CPU_NAME = cpu
    chosen, reported = cpu, host_cpu
    return cpu


def log_baseline() -> None:
    """Say once (when kernels are first loaded, after logging is set up) what was chosen."""
    global _logged
    if chosen is None or _logged:
        return
    _logged = True
    logging.getLogger("edgebnn.kernels").warning(
        "LLVM reports a %r CPU on 32-bit ARM (%s): compiling for %s, which has native "
        "atomics (set NUMBA_CPU_NAME to choose another)",
        reported,
        platform.machine(),
        chosen,
    )


apply_baseline()
