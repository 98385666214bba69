"""The AArch64 code-generation checks are collected on aarch64 only: elsewhere there is no
AArch64 JIT to inspect. CI runs them under qemu-aarch64 (.ci/arm.sh)."""

from __future__ import annotations

import platform

collect_ignore = [] if platform.machine() == "aarch64" else ["test_codegen_aarch64.py"]
