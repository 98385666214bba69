"""The spatial layers: real-valued and binary convolutions, and pooling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from edgebnn.engine.errors import ShapeError
from edgebnn.engine.layer_base import Layer, PaddingScheme, Shape
from edgebnn.engine.layer_base import as_float32 as _f32
from edgebnn.kernels import reference as ref


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
