"""A TFLite model's main subgraph as plain Python data: tensors and operators in order.

Filled by the reader (:mod:`edgebnn.engine.formats.tflite`), planned by
:class:`~edgebnn.engine.tflite_network.TfliteNetwork`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tensor:
    """One tensor: shape (with the batch axis, as stored), type, constant data if any."""

    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    data: np.ndarray | None = field(default=None, repr=False)
    quantized: bool = False


@dataclass(frozen=True)
class Operator:
    """One operator in execution order: its name (builtin or custom), tensors, options."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]
    custom: bool = False


@dataclass(frozen=True)
class Graph:
    """The main subgraph of a TFLite model."""

    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str
    sha256: str
    path: str
