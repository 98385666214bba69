"""What every layer shares: shapes, padding rings and the :class:`Layer` base class.

Every layer follows ELL's contract: it reads the *full* output tensor of the layer before
it (ring included) and writes the interior of its own output tensor, whose shape
``output_shape`` includes ``output_padding.size`` rows/columns of ring on each side. The
ring is filled once with the value of ``output_padding.scheme`` and never written again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from edgebnn.engine.errors import ShapeError

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


def as_float32(values: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32))
