"""AArch64 code for the Raspberry Pi 3's CPU (``NUMBA_CPU_NAME=cortex-a53``): the binary
convolution's inner loop is NEON vector popcount, the float kernels are NEON vector code.

Collected on aarch64 only (tests/kernels/conftest.py); CI runs it under qemu-aarch64 on
Debian bookworm with PyPI's wheels (.ci/arm.sh). A probe process runs a small d-series
network and the packed GEMM with an empty Numba cache of its own (Numba keeps no assembly
for code loaded from its cache) and prints the assembly of the kernels of interest.

Expected, as the kernels are written:
- ``binary_counts`` (every binary convolution's counting loop): ``cnt vN.16b``, a popcount
  of two 64-bit words per instruction. A scalar popcount is ``cnt vN.8b`` on AArch64 too,
  so only ``.16b`` shows the loop vectorised.
- the packed GEMM tile (``pointwise: blas`` networks): ``fmla vN.4s``, fused multiply-add
  on four floats (``llvm.fmuladd`` in its IR).
- the float convolutions (the stem of the binarized networks): four-float vector code,
  ``fmul vN.4s`` and ``fadd vN.4s`` or ``fmla vN.4s``. Numba compiles without fast-math, so
  ``x * w + acc`` is rounded twice (no contraction to FMA): the stem's output feeds a
  binarization and stays as close to the reference as before.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

PROBE = r"""
import json, sys
import numpy as np
import numba
from edgebnn.engine.d_series import d_series
from edgebnn.kernels import binary, conv, conv_blocked, gemm, microkernel

net = d_series(32, "NCMNBMNC1A", seed=1)
net.forward(np.random.default_rng(0).normal(size=net.input_shape).astype(np.float32))
a = np.ones((6, 16), np.float32)
w = np.ones((16, 2 * microkernel.PANEL), np.float32)
n = w.shape[1]
out = np.zeros((1, 6, n), np.float32)  # one image row of six pixels
blocks, ptrs = gemm.scratch(1)
gemm.pointwise_packed(a, gemm.pack_weights(w), gemm.pad_bias(None, n), n, 0, out.reshape(1, -1),
                      0, 6, np.zeros((6, n), np.float32), gemm.thread_ranges(6, n, 1), blocks, ptrs)
assert (out == 16).all()

asm = {}
for name, disp in [("binary_counts", binary.binary_counts), ("conv2d_chain", conv.conv2d_chain),
                   ("conv2d_columns_chain", conv_blocked.conv2d_columns_chain),
                   ("tile", microkernel.tile)]:
    if disp.signatures:
        asm[name] = list(disp.inspect_asm().values())
json.dump({"cpu": numba.config.CPU_NAME, "asm": asm}, sys.stdout)
"""


@pytest.fixture(scope="module")
def cortex_a53_asm(tmp_path_factory) -> dict[str, str]:
    cache = str(tmp_path_factory.mktemp("numba_cache"))
    env = {**os.environ, "NUMBA_CPU_NAME": "cortex-a53", "NUMBA_CACHE_DIR": cache}
    env.pop("NUMBA_CPU_FEATURES", None)
    run = subprocess.run(
        [sys.executable, "-c", PROBE], check=False, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout)
    assert found["cpu"] == "cortex-a53"
    return {name: "\n".join(texts) for name, texts in found["asm"].items()}


def _count(pattern: str, asm: str) -> int:
    return len(re.findall(pattern, asm))


def test_binary_convolution_counts_with_vector_popcount(cortex_a53_asm) -> None:
    asm = cortex_a53_asm["binary_counts"]
    assert _count(r"\bcnt\s+v\d+\.16b", asm) >= 3  # the three-block loops, vectorised
    assert _count(r"\buadalp\s+v\d+\.2d|\buaddlp\s+v\d+\.2d", asm) > 0  # lanes summed as u64


def test_gemm_tile_uses_vector_fma(cortex_a53_asm) -> None:
    asm = cortex_a53_asm["tile"]
    assert _count(r"\bfmla\s+v\d+\.4s", asm) >= 8  # rows x vectors accumulators per step


def test_float_convolutions_are_vectorised(cortex_a53_asm) -> None:
    compiled = [name for name in ("conv2d_chain", "conv2d_columns_chain") if name in cortex_a53_asm]
    assert compiled  # the stem ran through one of them
    for name in compiled:
        asm = cortex_a53_asm[name]
        fused = _count(r"\bfmla\s+v\d+\.4s", asm)
        separate = min(_count(r"\bfmul\s+v\d+\.4s", asm), _count(r"\bfadd\s+v\d+\.4s", asm))
        assert fused + separate > 0, name
