"""edgebnn: run ELL's binarized ImageNet networks fast on small devices.

Public API::

    net = edgebnn.load("model.ell.zip")        # or a native .ebnn file
    net.classify(frame_bgr_uint8, top_k=5)      # -> [Prediction(index, label, probability)]
    net.forward(x)                              # preprocessed float32 input -> flat output

Importing the package sets Numba's CPU on 32-bit ARM (:mod:`edgebnn.kernels._cpu`) and its
threading defaults (:mod:`edgebnn.kernels.threads`), and nothing else: the engine loads on
first use of a name below, so ``import edgebnn.kernels.x`` never drags the engine in, and
the CLI's light commands stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import edgebnn.kernels._cpu
import edgebnn.kernels.threads  # noqa: F401  (before any kernel is launched)
from edgebnn._version import __version__

if TYPE_CHECKING:
    from edgebnn.engine.errors import ModelError, ShapeError
    from edgebnn.engine.formats.load import load
    from edgebnn.engine.network import Network, Prediction, Preprocessing

#: Public name -> the module that defines it.
_PUBLIC = {
    "ModelError": "edgebnn.engine.errors",
    "ShapeError": "edgebnn.engine.errors",
    "load": "edgebnn.engine.formats.load",
    "Network": "edgebnn.engine.network",
    "Prediction": "edgebnn.engine.network",
    "Preprocessing": "edgebnn.engine.network",
}

__all__ = [
    "ModelError",
    "Network",
    "Prediction",
    "Preprocessing",
    "ShapeError",
    "__version__",
    "load",
]


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'edgebnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
