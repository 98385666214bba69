"""Layer definitions: ELL's layer types as small settings classes (the one module to import).

The base class and padding rings are :mod:`.layer_base`, the convolutions and pooling
:mod:`.layers_spatial`; both are re-exported here. Every layer follows ELL's contract: it reads the *full* output tensor of
the layer before it (ring included) and writes the interior of its own output tensor, whose
shape ``output_shape`` includes ``output_padding.size`` rows/columns of ring on each side.
The ring is filled once with the value of ``output_padding.scheme`` and never written again.

Shapes are ``(rows, columns, channels)``; tensors are float32 in row, column, channel order.
``forward_ref`` is the plain NumPy reference of each layer (used by tests and by
:func:`edgebnn.engine.reference.forward_ref`); the fast path lives in the plan (:mod:`edgebnn.engine.plan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from edgebnn.engine.errors import ShapeError
from edgebnn.engine.layer_base import (
    NO_PADDING,
    Layer,
    Padding,
    PaddingScheme,
    Shape,
    filled_tensor,
)
from edgebnn.engine.layer_base import as_float32 as _f32
from edgebnn.engine.layers_spatial import BinaryConvolutionalLayer, ConvolutionalLayer, PoolingLayer
from edgebnn.kernels import reference as ref

__all__ = [
    "ACTIVATIONS",
    "LAYER_TYPES",
    "NO_PADDING",
    "ActivationLayer",
    "AddLayer",
    "BatchNormalizationLayer",
    "BiasLayer",
    "BinaryConvolutionalLayer",
    "ConvolutionalLayer",
    "FullyConnectedLayer",
    "InputLayer",
    "Layer",
    "Padding",
    "PaddingScheme",
    "PoolingLayer",
    "ScalingLayer",
    "Shape",
    "SoftmaxLayer",
    "filled_tensor",
]


@dataclass(eq=False)
class InputLayer(Layer):
    """The network input: the image tensor times ``scale``, written into the interior."""

    scale: float = 1.0
    kind: ClassVar[str] = "Input"

    @property
    def input_shape(self) -> Shape:
        return self.interior_shape

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        ft = x.dtype.type if x.dtype == np.float64 else np.float32
        return (x.astype(ft) * ft(self.scale)).astype(ft)


@dataclass(eq=False)
class BiasLayer(Layer):
    """``o = x + bias[k]`` (ELL's Minus and Plus, and the bias of conv/BN)."""

    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    kind: ClassVar[str] = "Bias"
    elementwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.bias = _f32(self.bias)
        self._require_channels("bias", self.bias, self.output_shape[2])

    def check_input(self, input_shape: Shape) -> None:
        self._require_same_interior(input_shape)

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        return ref.bias_ref(x, self.bias)

    def parameter_count(self, input_shape: Shape) -> int:
        return self.bias.size


@dataclass(eq=False)
class ScalingLayer(Layer):
    """``o = x * scales[k]`` (ELL's ElementTimes, and the scale of BN)."""

    scales: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    kind: ClassVar[str] = "Scaling"
    elementwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scales = _f32(self.scales)
        self._require_channels("scales", self.scales, self.output_shape[2])

    def check_input(self, input_shape: Shape) -> None:
        self._require_same_interior(input_shape)

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        return ref.scale_ref(x, self.scales)

    def parameter_count(self, input_shape: Shape) -> int:
        return self.scales.size


@dataclass(eq=False)
class BatchNormalizationLayer(Layer):
    """``o = mult[k] * x + add[k]`` with the precomputed values stored in ELL files."""

    multiplication: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    addition: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    epsilon: float = 1e-5
    epsilon_summand: int = 0  # 0 variance, 1 sqrt variance (informational)
    kind: ClassVar[str] = "BatchNormalization"
    elementwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.multiplication = _f32(self.multiplication)
        self.addition = _f32(self.addition)
        self._require_channels("multiplicationValues", self.multiplication, self.output_shape[2])
        self._require_channels("additionValues", self.addition, self.output_shape[2])

    def check_input(self, input_shape: Shape) -> None:
        self._require_same_interior(input_shape)

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        return ref.batch_norm_ref(x, self.multiplication, self.addition)

    def parameter_count(self, input_shape: Shape) -> int:
        return 2 * self.multiplication.size


ACTIVATIONS = (
    "relu",
    "leaky_relu",
    "prelu",
    "sigmoid",
    "tanh",
    "hard_sigmoid",
    "hard_tanh",
    "relu6",
)


@dataclass(eq=False)
class ActivationLayer(Layer):
    """An element-wise activation; PReLU has a full per-element ``alpha`` tensor."""

    function: str = "relu"
    alpha: np.ndarray | None = None
    leaky_factor: float = 0.1
    kind: ClassVar[str] = "Activation"
    elementwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.function not in ACTIVATIONS:
            raise ShapeError(
                f"unknown activation {self.function!r}; known: {', '.join(ACTIVATIONS)}"
            )
        if self.function == "prelu":
            if self.alpha is None:
                raise ShapeError("a PReLU activation needs an alpha tensor")
            self.alpha = _f32(self.alpha)
            if self.alpha.shape != self.interior_shape:
                raise ShapeError(
                    f"PReLU alpha has shape {self.alpha.shape}, expected {self.interior_shape}"
                )

    @property
    def label(self) -> str:
        return {
            "relu": "ReLU",
            "leaky_relu": "LeakyReLU",
            "prelu": "PReLU",
            "sigmoid": "Sigmoid",
            "tanh": "Tanh",
            "hard_sigmoid": "HardSigmoid",
            "hard_tanh": "HardTanh",
            "relu6": "ReLU6",
        }[self.function]

    def describe(self, input_shape: Shape) -> str:
        return super().describe(input_shape).replace("Activation:", f"{self.label}:", 1)

    def check_input(self, input_shape: Shape) -> None:
        self._require_same_interior(input_shape)

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        return ref.activation_ref(x, self.function, self.alpha, self.leaky_factor)

    def parameter_count(self, input_shape: Shape) -> int:
        return 0 if self.alpha is None else self.alpha.size


@dataclass(eq=False)
class FullyConnectedLayer(Layer):
    """``y = W v`` over the flattened full input; y fills the interior in (r, c, k) order."""

    weights: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))
    kind: ClassVar[str] = "FullyConnected"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.weights = _f32(self.weights)
        n_out = int(np.prod(self.interior_shape))
        if self.weights.ndim != 2 or self.weights.shape[0] != n_out:
            raise ShapeError(f"weights must be ({n_out}, inputs), got {self.weights.shape}")

    def check_input(self, input_shape: Shape) -> None:
        n_in = int(np.prod(input_shape))
        if self.weights.shape[1] != n_in:
            raise ShapeError(
                f"weights have {self.weights.shape[1]} columns, input has {n_in} values"
            )

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        return ref.fully_connected_ref(x, self.weights).reshape(self.interior_shape)

    def parameter_count(self, input_shape: Shape) -> int:
        return self.weights.size


@dataclass(eq=False)
class SoftmaxLayer(Layer):
    """Softmax over the whole input tensor (every row, column and channel together)."""

    kind: ClassVar[str] = "Softmax"

    def check_input(self, input_shape: Shape) -> None:
        self._require_same_interior(input_shape)

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        return ref.softmax_ref(x)


@dataclass(eq=False)
class AddLayer(Layer):
    """Element-wise sum of two producers' outputs (residual connections)."""

    kind: ClassVar[str] = "Add"

    def check_input(self, input_shape: Shape) -> None:
        self._require_same_interior(input_shape)

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        (y,) = others
        return (x + y).astype(x.dtype)


LAYER_TYPES = (
    InputLayer,
    BiasLayer,
    ScalingLayer,
    BatchNormalizationLayer,
    ActivationLayer,
    ConvolutionalLayer,
    BinaryConvolutionalLayer,
    PoolingLayer,
    FullyConnectedLayer,
    SoftmaxLayer,
    AddLayer,
)
