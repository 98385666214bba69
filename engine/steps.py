"""A plan's unit of work (:class:`Step`) and the encoding of fused element-wise chains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from edgebnn.engine.layers import (
    ActivationLayer,
    BatchNormalizationLayer,
    BiasLayer,
    Layer,
    ScalingLayer,
)
from edgebnn.kernels import elementwise
from edgebnn.kernels.aligned import aligned
from edgebnn.kernels.elementwise import EMPTY_ALPHA


@dataclass
class Step:
    """One kernel call of the plan: the layer nodes it covers and how to call it."""

    nodes: tuple[int, ...]  # node ids computed by this step (0 = input layer)
    label: str
    kernel: Callable
    args: tuple

    def __call__(self) -> None:
        self.kernel(*self.args)


def encode_chain(
    layers: list[Layer], chans: int, cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, params, alpha) arrays for :func:`edgebnn.kernels.elementwise.apply_chain`,
    for output rows of ``cols`` pixels."""
    codes = np.zeros(len(layers), np.int64)
    params = np.zeros((len(layers), 2, chans), np.float32)
    alpha = EMPTY_ALPHA
    for i, layer in enumerate(layers):
        if isinstance(layer, BiasLayer):
            codes[i], params[i, 0] = elementwise.OP_BIAS, layer.bias
        elif isinstance(layer, ScalingLayer):
            codes[i], params[i, 0] = elementwise.OP_SCALE, layer.scales
        elif isinstance(layer, BatchNormalizationLayer):
            codes[i] = elementwise.OP_BATCH_NORM
            params[i, 0], params[i, 1] = layer.multiplication, layer.addition
        elif isinstance(layer, ActivationLayer):
            codes[i] = elementwise.ACTIVATION_CODES[layer.function]
            params[i, 0] = np.float32(layer.leaky_factor)
            if layer.function == "prelu":
                assert layer.alpha is not None  # a PReLU always has its alphas
                alpha = layer.alpha
        else:
            raise TypeError(f"{type(layer).__name__} is not element-wise")
    return (
        codes,
        aligned(elementwise.tile_params(params, cols)),
        aligned(elementwise.row_alpha(alpha)),
    )
