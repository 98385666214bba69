"""A warm start compiles nothing: after one process has warmed a model up (what
``edgebnn compile`` and the installer do), the next process with the same Numba cache loads
every kernel its frames call from the cache, for each model format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"

# Warm a model up as the daemon does (``compile``), or warm it up and run a frame
# (``run``); print what Numba compiled in this process, as the compile-event hook saw it.
CHILD = """
import json, sys
import numpy as np
from numba.core import event
from edgebnn.kernels.compile_watch import compile_state, kernel_name, watch
import edgebnn

watch()
names = []
class Names(event.Listener):
    def on_start(self, ev): names.append(kernel_name(ev.data["dispatcher"]))
    def on_end(self, ev): pass
event.register("numba:compile", Names())
net = edgebnn.load(sys.argv[1])
net.warmup(workers=int(sys.argv[3]))
if sys.argv[2] == "run":
    x = np.random.default_rng(7).random(net.input_shape, dtype=np.float32)
    scores = net.forward(x)
    assert np.isfinite(scores).all()
print(json.dumps({"compiles": compile_state().finished, "names": names}))
"""


def start(model: str, mode: str, env: dict[str, str], workers: int = 2) -> dict:
    """One process: load ``model``, warm it up (and with ``run`` run a frame)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, model, mode, str(workers)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_after_a_cold_compile_the_next_process_compiles_nothing(tmp_path: Path) -> None:
    """An empty cache: ``edgebnn compile``'s warm-up fills it with everything a frame calls
    (the kernels' task parts and the frame's trampolines), so the service's start that
    follows, and its first frame, compile nothing."""
    model = str(DATA / "tiny_new.ell")
    for workers in (2, 1):  # compiled in worker processes, or in the process itself
        cache = tmp_path / f"numba-{workers}"
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        cold = start(model, "compile", env, workers)
        assert list(cache.rglob("*.nbc")), "the cold warm-up cached nothing"
        if workers == 1:
            assert cold["compiles"] > 0, cold  # the hook sees compiles when there are some
        warm = start(model, "run", env, workers)
        assert warm["compiles"] == 0, warm["names"]


@pytest.mark.parametrize(
    "model",
    [
        "efficientnet-lite0",
        "random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A",
        str(DATA / "larq" / "birealnet.tflite"),
    ],
)
def test_the_second_start_of_a_model_loads_every_kernel_from_the_cache(
    model: str, tmp_path: Path
) -> None:
    """The test run's shared cache (filled by the first process if other tests have not
    already): the second process compiles nothing, with the converted model read back from
    its file rather than built from the weights package."""
    env = {**os.environ, "EDGEBNN_MODELS_DIR": str(tmp_path / "models")}
    start(model, "compile", env)
    warm = start(model, "run", env)
    assert warm["compiles"] == 0, warm["names"]
