"""What the TFLite step builders share: the planning context, geometry, fused activations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgebnn.engine.errors import ModelError
from edgebnn.engine.tflite_graph import Graph, Operator
from edgebnn.kernels.tflite_float import same_padding

Run = Callable[[list], None]

#: TFLite ``Padding`` (builtin options and LCE's custom options alike).
SAME, VALID = 0, 1

#: The clamp of a fused activation a float kernel applies itself (NONE, RELU, RELU_N1_TO_1,
#: RELU6); TANH (4) is applied after the kernel.
ACT_CLAMPS = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}


@dataclass
class Context:
    """What the planner knows about each tensor while building the steps."""

    graph: Graph
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    packed: dict[int, int] = field(default_factory=dict)  # tensor -> unpacked channels
    fused: dict[int, int] = field(default_factory=dict)  # operator -> the step computing it
    buffers: dict[int, np.ndarray] = field(default_factory=dict)  # tensor -> its one buffer
    _readers: dict[int, list[Operator]] | None = None

    def readers(self, tensor: int) -> list[Operator]:
        """The operators that read ``tensor``, in order."""
        if self._readers is None:
            self._readers = {}
            for op in self.graph.operators:
                for i in dict.fromkeys(op.inputs):
                    self._readers.setdefault(i, []).append(op)
        return self._readers.get(tensor, [])

    def fuse_quantize(
        self, op: Operator, tensor: int, shape: tuple[int, ...]
    ) -> tuple[int, np.ndarray]:
        """If an LceQuantize reads ``tensor`` (float, ``shape``), the step of ``op`` packs its
        bits too: (the bits tensor, its buffer); else (-1, an empty buffer)."""
        quantize = next((r for r in self.readers(tensor) if r.name == "LceQuantize"), None)
        if quantize is None or not quantize.outputs or len(shape) != 3:
            return -1, np.zeros((0, 0, 0), np.uint64)
        bits = quantize.outputs[0]
        packed = self.packed_output(bits, (*shape[:2], -(-shape[2] // 64)), shape[2])
        self.fused[quantize.index] = op.index
        return bits, packed

    def only_reader(self, tensor: int) -> Operator | None:
        """The one operator reading ``tensor`` if it has exactly one and is not an output."""
        readers = self.readers(tensor)
        if len(readers) != 1 or tensor in self.graph.outputs:
            return None
        return readers[0]

    def fail(self, op: Operator, message: str) -> ModelError:
        return ModelError(message, path=self.graph.path, layer=op.index, layer_type=op.name)

    def const(self, op: Operator, position: int) -> np.ndarray:
        index = op.inputs[position] if position < len(op.inputs) else -1
        data = self.graph.tensors[index].data if index >= 0 else None
        if data is None:
            raise self.fail(op, f"input {position} must be a constant tensor")
        return data

    def has_input(self, op: Operator, position: int) -> bool:
        return position < len(op.inputs) and op.inputs[position] >= 0

    def shape(self, op: Operator, index: int) -> tuple[int, ...]:
        if index in self.shapes:
            return self.shapes[index]
        tensor = self.graph.tensors[index]
        if tensor.data is not None:
            return tuple(tensor.data.shape)
        raise self.fail(op, f"tensor {tensor.name!r} is used before it is computed")

    def output(self, op: Operator, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        """Record the output's shape and allocate its buffer."""
        stored = self.graph.tensors[op.outputs[0]].shape
        if stored and dtype is np.float32 and tuple(stored[1:]) != tuple(shape):
            raise self.fail(op, f"computes shape {list(shape)}, file says {list(stored[1:])}")
        self.shapes[op.outputs[0]] = tuple(shape)
        self.buffers[op.outputs[0]] = np.zeros(shape, dtype)
        return self.buffers[op.outputs[0]]

    def packed_output(self, tensor: int, shape: tuple[int, ...], channels: int) -> np.ndarray:
        """Record a bit-packed tensor of ``channels`` channels and allocate its buffer."""
        self.shapes[tensor], self.packed[tensor] = tuple(shape), channels
        self.buffers[tensor] = np.zeros(shape, np.uint64)
        return self.buffers[tensor]


@dataclass(frozen=True)
class Ref:
    """A kernel argument that is the value of a tensor (bound when the step runs)."""

    tensor: int


class KernelRun:
    """A step that is one call of a parallel kernel: ``kernel(*args)`` with the tensors'
    values in place of each :class:`Ref`. Where every such tensor has one buffer for the
    model's lifetime, the frame also runs it as tasks (:meth:`bind`)."""

    def __init__(self, kernel: Callable, args: tuple, writes: dict[int, np.ndarray]) -> None:
        self.kernel, self.args, self.writes = kernel, args, writes

    def __call__(self, values: list) -> None:
        self.kernel(*(values[a.tensor] if isinstance(a, Ref) else a for a in self.args))
        for tensor, buffer in self.writes.items():
            values[tensor] = buffer

    def bind(self, buffers: dict[int, np.ndarray]) -> tuple | None:
        """The arguments with every tensor's buffer, or None if one has none."""
        if any(isinstance(a, Ref) and a.tensor not in buffers for a in self.args):
            return None
        return tuple(buffers[a.tensor] if isinstance(a, Ref) else a for a in self.args)


def conv_geometry(ctx: Context, op: Operator, hw: tuple[int, int], k: tuple[int, int],
              stride: tuple[int, int], dilation: tuple[int, int], padding: int):  # fmt: skip
    if padding not in (SAME, VALID):
        raise ctx.fail(op, f"unknown padding {padding}")
    if min(*stride, *dilation, *k) < 1:
        raise ctx.fail(op, f"strides {stride}, dilations {dilation}, kernel {k} must be >= 1")
    out_h, top = same_padding(hw[0], k[0], stride[0], dilation[0], padding == SAME)
    out_w, left = same_padding(hw[1], k[1], stride[1], dilation[1], padding == SAME)
    if out_h < 1 or out_w < 1:
        raise ctx.fail(op, f"kernel {k} does not fit the {hw[0]}x{hw[1]} input")
    geometry = np.array([k[0], k[1], *stride, *dilation, top, left], np.int64)
    return out_h, out_w, geometry


def fused_activation(ctx: Context, op: Operator) -> int:
    code = int(op.options.get("fused_activation_function", 0))
    if code not in (0, 1, 2, 3, 4):
        raise ctx.fail(op, f"unsupported fused activation {code}")
    return code


def rank3(ctx: Context, op: Operator, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ctx.fail(op, f"expects a rows x cols x channels input, got shape {list(shape)}")
    return shape
