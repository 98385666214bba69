"""Layer definitions: ELL's layer types as small settings classes.

Every layer follows ELL's contract (spec section 3): it reads the *full* output tensor of
the layer before it (ring included) and writes the interior of its own output tensor, whose
shape ``output_shape`` includes ``output_padding.size`` rows/columns of ring on each side.
The ring is filled once with the value of ``output_padding.scheme`` and never written again.

Shapes are ``(rows, columns, channels)``; tensors are float32 in row, column, channel order.
``forward_ref`` is the plain NumPy reference of each layer (used by tests and by
:func:`edgebnn.engine.reference.forward_ref`); the fast path lives in the plan (:mod:`edgebnn.engine.plan`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from edgebnn.engine.errors import ShapeError
from edgebnn.kernels import reference as ref

Shape = tuple[int, int, int]


class PaddingScheme(enum.IntEnum):
    """ELL's padding schemes, with the integer codes used in `.ell` files."""

    ZEROS = 0
    MINUS_ONES = 1
    ALTERNATING_ZERO_AND_ONES = 2
    RANDOM_ZERO_AND_ONES = 3
    MIN = 4
    MAX = 5


@dataclass(frozen=True)
class Padding:
    """A padding ring: its fill scheme and its width on each side of rows and columns."""

    scheme: PaddingScheme = PaddingScheme.ZEROS
    size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", PaddingScheme(int(self.scheme)))
        if self.size < 0:
            raise ValueError(f"padding size must be >= 0, got {self.size}")

    def __str__(self) -> str:
        return f"{self.scheme.name.lower()},{self.size}"


NO_PADDING = Padding()


def filled_tensor(shape: Shape, scheme: PaddingScheme) -> np.ndarray:
    """A float32 tensor filled as ELL fills a layer's output before any compute."""
    rows, cols, chans = shape
    if scheme == PaddingScheme.ZEROS:
        return np.zeros(shape, np.float32)
    if scheme == PaddingScheme.MINUS_ONES:
        return np.full(shape, -1.0, np.float32)
    if scheme == PaddingScheme.MIN:
        return np.full(shape, -np.finfo(np.float32).max, np.float32)
    if scheme == PaddingScheme.MAX:
        return np.full(shape, np.finfo(np.float32).max, np.float32)
    if scheme == PaddingScheme.ALTERNATING_ZERO_AND_ONES:
        r = np.arange(rows)[:, None] % 2
        c = np.arange(cols)[None, :] % 2
        return np.repeat(((r ^ c).astype(np.float32))[:, :, None], chans, axis=2)
    # randomZeroAndOnes: ELL uses rand(); no importer writes it. Deterministic here.
    rng = np.random.default_rng(0)
    return rng.integers(0, 2, size=shape).astype(np.float32)


@dataclass(eq=False)
class Layer:
    """Base of all layers: shapes and padding, as stored in ELL files."""

    output_shape: Shape
    input_padding: Padding = NO_PADDING
    output_padding: Padding = NO_PADDING
    #: Producer node ids (0 = the input layer, i + 1 = ``layers[i]``); None = the previous node.
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)

    kind: ClassVar[str] = "Layer"  # the gallery listing's name for this layer
    elementwise: ClassVar[bool] = False  # output[r, c, k] depends on input[r, c, k] only

    def __post_init__(self) -> None:
        shape = tuple(int(v) for v in self.output_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ShapeError(f"output shape must be 3 positive ints, got {shape}")
        self.output_shape = (shape[0], shape[1], shape[2])
        if not isinstance(self.input_padding, Padding):
            self.input_padding = Padding(*self.input_padding)
        if not isinstance(self.output_padding, Padding):
            self.output_padding = Padding(*self.output_padding)
        p = self.output_padding.size
        if self.output_shape[0] <= 2 * p or self.output_shape[1] <= 2 * p:
            raise ShapeError(
                f"output shape {self.output_shape} leaves no interior inside padding {p}"
            )

    @property
    def interior_shape(self) -> Shape:
        """The output shape less the output padding ring."""
        p = self.output_padding.size
        r, c, k = self.output_shape
        return (r - 2 * p, c - 2 * p, k)

    def check_input(self, input_shape: Shape) -> None:
        """Raise ShapeError unless ``input_shape`` (full, ring included) fits this layer."""

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        """NumPy reference: the interior of the output from the full input tensor(s)."""
        raise NotImplementedError

    def describe(self, input_shape: Shape) -> str:
        """One line of the architecture listing, like ELL's gallery pages."""
        r, c, k = input_shape
        ro, co, ko = self.output_shape
        return (
            f"{self.kind}: {r}x{c}x{k} -> {ro}x{co}x{ko} | input padding "
            f"{self.input_padding.size} output padding {self.output_padding.size}{self._extra()}"
        )

    def _extra(self) -> str:
        return ""

    def parameter_count(self, input_shape: Shape) -> int:
        """Number of stored parameters (a binary weight counts as one)."""
        return 0

    def _require_same_interior(self, input_shape: Shape) -> None:
        if tuple(input_shape) != self.interior_shape:
            raise ShapeError(
                f"{self.kind} needs an input of its output interior shape {self.interior_shape}"
                f" (no ring), got {tuple(input_shape)}"
            )

    def _require_channels(self, name: str, values: np.ndarray, channels: int) -> None:
        if values.shape != (channels,):
            raise ShapeError(f"{name} has shape {values.shape}, expected ({channels},)")


def _f32(values: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32))


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
class ConvolutionalLayer(Layer):
    """Real-valued convolution (cross-correlation) over the padded input.

    ``weights`` has shape ``(filters, k, k, in_channels)``, or ``(filters, k, k, 1)`` for a
    depthwise convolution (filters == in_channels).
    """

    weights: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1, 1), np.float32))
    stride: int = 1
    method: int = 0
    kind: ClassVar[str] = "Convolution"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.weights = _f32(self.weights)
        if self.weights.ndim != 4 or self.weights.shape[1] != self.weights.shape[2]:
            raise ShapeError(f"weights must be (filters, k, k, channels), got {self.weights.shape}")
        if self.weights.shape[0] != self.output_shape[2]:
            raise ShapeError(
                f"{self.weights.shape[0]} filters for {self.output_shape[2]} output channels"
            )
        if self.stride < 1:
            raise ShapeError(f"stride must be >= 1, got {self.stride}")

    @property
    def receptive_field(self) -> int:
        return self.weights.shape[1]

    def is_depthwise(self, in_channels: int) -> bool:
        return self.weights.shape[3] == 1 and in_channels > 1

    def check_input(self, input_shape: Shape) -> None:
        r, c, k = input_shape
        ro, co, _ = self.interior_shape
        kk = self.receptive_field
        if self.weights.shape[3] != k and not (
            self.weights.shape[3] == 1 and k == self.weights.shape[0]
        ):
            raise ShapeError(f"weights have {self.weights.shape[3]} channels, input has {k}")
        if (ro - 1) * self.stride + kk > r or (co - 1) * self.stride + kk > c:
            raise ShapeError(
                f"a {kk}x{kk}/s{self.stride} window for a {ro}x{co} output does not fit the "
                f"{r}x{c} input"
            )

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        ro, co, _ = self.interior_shape
        return ref.conv2d_ref(x, self.weights, self.stride, ro, co)

    def describe(self, input_shape: Shape) -> str:
        return super().describe(input_shape)

    def _extra(self) -> str:
        k = self.receptive_field
        dw = " depthwise" if self.weights.shape[3] == 1 and self.weights.shape[0] > 1 else ""
        return f" | {k}x{k}/s{self.stride}{dw}"

    def parameter_count(self, input_shape: Shape) -> int:
        return self.weights.size


@dataclass(eq=False)
class BinaryConvolutionalLayer(Layer):
    """XNOR/popcount convolution: ``o = scale_f * sum(sign(w) * sign(x))``.

    ``weights_bits`` is ELL's packing: shape ``(filters, blocks)`` uint64, bit ``v`` of a
    filter's volume (``v = (row*k + col)*C + channel``) at block ``v // 64``, bit ``v % 64``
    (LSB first); a set bit means +1. Signs: +1 iff value > 0. With input padding scheme
    zeros and size P > 0, ring positions contribute 0 (spec 4.7).
    """

    weights_bits: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.uint64))
    receptive_field: int = 3
    stride: int = 1
    weights_scale: int = 0  # 0 none, 1 mean
    filter_means: np.ndarray | None = None
    method: int = 1  # 0 gemm, 1 bitwise: same result for zero padding
    kind: ClassVar[str] = "BinaryConvolution"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.weights_bits = np.ascontiguousarray(self.weights_bits, dtype=np.uint64)
        filters = self.output_shape[2]
        if self.weights_bits.ndim != 2 or self.weights_bits.shape[0] != filters:
            raise ShapeError(
                f"binarized weights must be ({filters}, blocks) uint64, got {self.weights_bits.shape}"
            )
        if self.filter_means is None:
            self.filter_means = np.ones(filters, np.float32)
        self.filter_means = _f32(self.filter_means)
        self._require_channels("filterMeans", self.filter_means, filters)
        if self.weights_scale not in (0, 1):
            raise ShapeError(f"weightsScale must be 0 (none) or 1 (mean), got {self.weights_scale}")

    @classmethod
    def from_real_weights(cls, weights: np.ndarray, **kwargs: Any) -> BinaryConvolutionalLayer:
        """Binarize real weights ``(filters, k, k, C)`` as ELL does (bits and filter means)."""
        w = _f32(weights)
        bits = ref.pack_filter_bits(w)
        volume = w[0].size
        means = np.array(
            [
                np.cumsum(np.abs(f.reshape(-1)), dtype=np.float32)[-1] / np.float32(volume)
                for f in w
            ],
            np.float32,
        )
        return cls(weights_bits=bits, receptive_field=w.shape[1], filter_means=means, **kwargs)

    def in_channels(self, input_shape: Shape) -> int:
        return input_shape[2]

    def check_input(self, input_shape: Shape) -> None:
        r, c, k = input_shape
        kk = self.receptive_field
        blocks = -(-kk * kk * k // 64)
        if self.weights_bits.shape[1] != blocks:
            raise ShapeError(
                f"{self.weights_bits.shape[1]} weight blocks per filter, but a {kk}x{kk}x{k} "
                f"volume needs {blocks}"
            )
        ro, co, _ = self.interior_shape
        if (ro - 1) * self.stride + kk > r or (co - 1) * self.stride + kk > c:
            raise ShapeError(
                f"a {kk}x{kk}/s{self.stride} window for a {ro}x{co} output does not fit the "
                f"{r}x{c} input"
            )
        if self.input_padding.size * 2 >= min(r, c):
            raise ShapeError(
                f"input padding {self.input_padding.size} leaves no interior in {r}x{c}"
            )

    def masks_padding(self) -> bool:
        """True when ring positions contribute 0 (ELL masks only zero padding)."""
        return self.input_padding.scheme == PaddingScheme.ZEROS and self.input_padding.size > 0

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        ro, co, _ = self.interior_shape
        scale = self.filter_means if self.weights_scale == 1 else None
        mask = self.input_padding.size if self.masks_padding() else 0
        return ref.binary_conv2d_ref(
            x, self.weights_bits, self.receptive_field, self.stride, ro, co, mask, scale
        )

    def _extra(self) -> str:
        k = self.receptive_field
        return f" | {k}x{k}/s{self.stride}" + (" mean-scaled" if self.weights_scale else "")

    def parameter_count(self, input_shape: Shape) -> int:
        return self.weights_bits.shape[0] * (self.receptive_field**2 * input_shape[2] + 1)


@dataclass(eq=False)
class PoolingLayer(Layer):
    """Max or mean pooling over windows anchored at padded (0, 0) (spec 4.8)."""

    function: str = "max"
    size: int = 2
    stride: int = 2
    kind: ClassVar[str] = "Pooling"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.function not in ("max", "mean"):
            raise ShapeError(f"pooling function must be 'max' or 'mean', got {self.function!r}")
        if self.size < 1 or self.stride < 1:
            raise ShapeError(
                f"pooling size and stride must be >= 1, got {self.size}, {self.stride}"
            )

    def describe(self, input_shape: Shape) -> str:
        name = "MaxPooling" if self.function == "max" else "AveragePooling"
        return super().describe(input_shape).replace("Pooling:", f"{name}:", 1)

    def check_input(self, input_shape: Shape) -> None:
        if input_shape[2] != self.output_shape[2]:
            raise ShapeError(
                f"pooling keeps channels: input {input_shape[2]}, output {self.output_shape[2]}"
            )

    def forward_ref(self, x: np.ndarray, *others: np.ndarray) -> np.ndarray:
        ro, co, _ = self.interior_shape
        return ref.pool_ref(x, self.function, self.size, self.stride, ro, co)

    def _extra(self) -> str:
        return f" | {self.size}x{self.size}/s{self.stride}"


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
