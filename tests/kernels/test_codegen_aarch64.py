"""AArch64 code for the Raspberry Pi 3's CPU (``NUMBA_CPU_NAME=cortex-a53``): the binary
convolution's inner loop is NEON vector popcount, the float kernels are NEON vector code.

Collected on aarch64 only (tests/kernels/conftest.py); CI runs it under qemu-aarch64 on
Debian bookworm with PyPI's wheels (.ci/arm.sh). A probe process compiles the kernels of
interest for the argument types the engine passes them, with an empty Numba cache of its
own (Numba keeps no assembly for code loaded from its cache), and prints their assembly.
Compiling only these (not a whole network) keeps the emulated run to a few minutes; the
probe fails loudly if a kernel's signature changes.

Expected, as the kernels are written:
- ``binary_counts`` (every binary convolution's counting loop): ``cnt vN.16b``, a popcount
  of two 64-bit words per instruction. A scalar popcount is ``cnt vN.8b`` on AArch64 too,
  so only ``.16b`` shows the loop vectorised.
- the packed GEMM tile (``pointwise: blas`` networks): ``fmla vN.4s``, fused multiply-add
  on four floats (``llvm.fmuladd`` in its IR).
- the float convolution's row loop (``_conv_row``: float convolutions other than the RGB
  3x3 stem): four-float vector code, ``fmul vN.4s`` and ``fadd vN.4s`` or ``fmla vN.4s``.
  It compiles without fast-math, so ``x * w + acc`` is rounded twice, as the reference.
- the RGB 3x3 stem's row (``_fused_hits``, the first layer of the binarized networks): its
  register tile's vector ``fmla vN.4s``, two per 8-float accumulator and tap. It uses fused
  multiply-adds on purpose and keeps the reference's sign bits by testing each sum against
  an error bound (docs/performance.md).
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
import numba
from numba import types
from edgebnn.kernels import binary, conv_blocked, microkernel, stem

i64, u64, u32, f32 = types.int64, types.uint64, types.uint32, types.float32
def arr(dtype, ndim):
    return types.Array(dtype, ndim, "C")
kernels = {
    "binary_counts": (binary.binary_counts, (arr(u64, 3), i64, i64, i64, arr(u64, 2),
                      arr(u64, 2), types.boolean, i64, arr(u64, 2), arr(i64, 1))),
    "_conv_row": (conv_blocked._conv_row,
                  (arr(f32, 3), arr(f32, 2), i64, i64, i64, arr(f32, 3), arr(f32, 2))),
    "tile": (microkernel.tile, (i64, i64, u64, i64, i64, i64, i64, i64)),
    "_fused_hits": (stem._fused_hits, (arr(f32, 1), arr(f32, 1), arr(f32, 1), arr(f32, 3),
                    arr(f32, 2), arr(f32, 3), arr(f32, 1), arr(f32, 1), i64, arr(u32, 1))),
}
asm = {}
for name, (dispatcher, signature) in kernels.items():
    dispatcher.compile(signature)
    asm[name] = dispatcher.inspect_asm(signature)
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
    return found["asm"]


def _count(pattern: str, asm: str) -> int:
    return len(re.findall(pattern, asm))


def test_binary_convolution_counts_with_vector_popcount(cortex_a53_asm: dict[str, str]) -> None:
    asm = cortex_a53_asm["binary_counts"]
    assert _count(r"\bcnt\s+v\d+\.16b", asm) >= 3  # the three-block loops, vectorised
    assert _count(r"\buadalp\s+v\d+\.2d|\buaddlp\s+v\d+\.2d", asm) > 0  # lanes summed as u64


def test_gemm_tile_uses_vector_fma(cortex_a53_asm: dict[str, str]) -> None:
    asm = cortex_a53_asm["tile"]
    assert _count(r"\bfmla\s+v\d+\.4s", asm) >= 8  # rows x vectors accumulators per step


def test_float_convolutions_are_vectorised(cortex_a53_asm: dict[str, str]) -> None:
    asm = cortex_a53_asm["_conv_row"]
    fused = _count(r"\bfmla\s+v\d+\.4s", asm)
    separate = min(_count(r"\bfmul\s+v\d+\.4s", asm), _count(r"\bfadd\s+v\d+\.4s", asm))
    assert fused + separate > 0


def test_stem_row_uses_vector_fma(cortex_a53_asm: dict[str, str]) -> None:
    # The RGB 3x3 stem of the binarized networks: vector fused multiply-adds (its exact sign
    # bits come from the error bound it tests, see docs/performance.md). Its register tile
    # (kernels/stem_tile.py): 6 pixels x 16 filters, the first tap a product, then 26 taps
    # of 12 eight-float multiply-adds, two NEON registers each.
    assert _count(r"\bfmla\s+v\d+\.4s", cortex_a53_asm["_fused_hits"]) >= 26 * 12 * 2
