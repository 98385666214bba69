"""Every tile shape of the packed GEMM's micro-kernel, not only this machine's.

The shape (vector width, rows per tile) is fixed at import by ``kernels/microkernel.py``
from the CPU Numba compiles for; ``EDGEBNN_GEMM_TILE`` forces one. Each shape runs here in a
subprocess (x86 executes the 4- and 8-float vectors of the NEON and AVX2 shapes too) against
a float64 NumPy product, with full and partial tiles and panels, both epilogue flags and a
ringed output. What x86 cannot show: the code LLVM makes for ARM, and 32-bit Numba (where
the kernel is off by default).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from edgebnn.engine import steps_mobile
from edgebnn.kernels import microkernel

CHILD = r"""
import sys
import numpy as np
from edgebnn.kernels import gemm, microkernel as mk

lanes, rows = (int(v) for v in sys.argv[1].split("x"))
assert (mk.LANES, mk.ROWS, mk.PANEL) == (lanes, rows, 2 * lanes), (mk.LANES, mk.ROWS)
assert mk.AVAILABLE and gemm.AVAILABLE and not mk.KERNEL_JIT["cache"]
L, R, P = mk.LANES, mk.ROWS, mk.PANEL
blocks, ptrs = gemm.scratch(1)
rng = np.random.default_rng(0)
# (pixels, image cols, C, F): full tiles and the MID/SMALL tails; one- and two-vector
# panels, a panel narrower than a vector, K of 1.
cases = [(R, R, 8, P), (2 * R + mk.MID - 1, 5, 19, P + L), (R + 1, 3, 33, 2 * P + 3), (mk.SMALL, 4, 1, L - 1)]
for pixels, cols, cin, filters in cases:
    for flags in (0, gemm.RELU6 | gemm.RESIDUAL):
        pad = 1
        img_rows = -(-pixels // cols)
        a = rng.normal(size=(pixels, cin)).astype(np.float32)
        w = (rng.normal(size=(cin, filters)) / np.sqrt(cin)).astype(np.float32)
        bias = (rng.normal(size=filters) * 3).astype(np.float32)
        res = rng.normal(size=(pixels, filters)).astype(np.float32)
        out = np.full((img_rows + 2 * pad, cols + 2 * pad, filters), -7.0, np.float32)
        c = out.reshape(out.shape[0], -1)
        panels = -(-filters // P)
        wpk, bpk = gemm.pack_weights(w), gemm.pad_bias(bias, filters)
        # Two calls splitting the pixels, as two threads would.
        for m0, m1 in ((0, pixels // 2), (pixels // 2, pixels)):
            gemm.gemm_block(a, m0, m1, wpk, bpk, filters, 0, panels, flags, c, pad, pad, cols, res, blocks[0], ptrs[0])
        expected = a.astype(np.float64) @ w + bias
        if flags & gemm.RELU6:
            expected = np.clip(expected, 0, 6)
        if flags & gemm.RESIDUAL:
            expected = expected + res
        got = out[pad : pad + img_rows, pad : pad + cols].reshape(-1, filters)[:pixels]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=str((pixels, cols, cin, filters, flags)))
        written = np.zeros(out.shape[:2], bool)
        written.reshape(-1)[[(pad + q // cols) * out.shape[1] + pad + q % cols for q in range(pixels)]] = True
        assert (out[~written] == -7.0).all(), "wrote outside its pixels"
print("ok", L, R)
"""


def _run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EDGEBNN_GEMM_TILE", "NUMBA_CPU", "NUMBA_ENABLE_AVX"))
    }
    child_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        check=False,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", sorted(microkernel.SHAPES))
def test_every_tile_shape_matches_reference(name: str) -> None:
    done = _run(CHILD, name, EDGEBNN_GEMM_TILE=name)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", *name.split("x")]


SHOW = "from edgebnn.kernels import microkernel as m; print(m.AVAILABLE, m.LANES, m.ROWS, m.KERNEL_JIT['cache'])"


def test_off_and_generic_cpu() -> None:
    """``off`` disables the kernel; with NUMBA_CPU_NAME=generic Numba compiles for plain
    x86-64 (SSE2), and the shape must follow Numba's target, not the host's AVX-512."""
    assert _run(SHOW, EDGEBNN_GEMM_TILE="off").stdout.split()[:1] == ["False"]
    if microkernel.llvm.get_process_triple().startswith("x86_64"):
        assert _run(SHOW, NUMBA_CPU_NAME="generic").stdout.split() == ["True", "4", "6", "True"]


@pytest.mark.parametrize(
    ("arch", "pointer_bytes", "features", "shape"),
    [
        ("x86_64", 8, {"avx512f", "avx", "fma"}, (16, 12)),
        ("x86_64", 8, {"avx", "avx2", "fma"}, (8, 6)),
        ("x86_64", 8, {"avx"}, (8, 6)),  # AVX without FMA: llvm.fmuladd is a multiply and an add
        ("x86_64", 8, {"sse2"}, (4, 6)),
        ("aarch64", 8, {"neon"}, (4, 12)),
        ("armv7l", 4, {"neon"}, None),  # 32-bit: untested, the planner's BLAS/NumPy path
        ("i686", 4, {"avx512f"}, None),
        ("riscv64", 8, set(), None),
    ],
)
def test_shape_choice(
    arch: str, pointer_bytes: int, features: set[str], shape: tuple[int, int] | None
) -> None:
    assert microkernel.shape_for(arch, pointer_bytes, features) == shape


def test_planner_skips_packed_gemm_when_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps_mobile.gemm, "AVAILABLE", False)
    assert steps_mobile.packed_pointwise_step(object(), 0, []) is None  # type: ignore[arg-type]
