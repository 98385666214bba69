"""edgebnn: run ELL's binarized ImageNet networks fast on small devices.

Public API::

    net = edgebnn.load("model.ell.zip")        # or a native .ebnn file
    net.classify(frame_bgr_uint8, top_k=5)      # -> [Prediction(index, label, probability)]
    net.forward(x)                              # preprocessed float32 input -> flat output
"""

from __future__ import annotations

__version__ = "0.1.0"

import edgebnn.kernels._cpu  # first: the CPU Numba compiles for on 32-bit ARM
import edgebnn.kernels._threading  # noqa: F401  (before any kernel is launched)
from edgebnn.engine.errors import ModelError, ShapeError
from edgebnn.engine.load import load
from edgebnn.engine.network import Network, Prediction, Preprocessing

__all__ = ["ModelError", "Network", "Prediction", "Preprocessing", "ShapeError", "load"]
