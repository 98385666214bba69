"""What every step builder works on: the layer graph, its buffers and the steps so far.

A :class:`PlanGraph` is built once per :class:`~edgebnn.engine.plan.Plan`. Step builders
(:mod:`.steps_float`, :mod:`.steps_binary`, :mod:`.steps_mobile`) read the graph, take
output tensors from it (allocated and ring-filled once, cache-line aligned) and append
:class:`~edgebnn.engine.steps.Step` objects to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from edgebnn.engine.layers import (
    ActivationLayer,
    AddLayer,
    Layer,
    PaddingScheme,
    PoolingLayer,
    filled_tensor,
)
from edgebnn.engine.steps import Step, encode_chain
from edgebnn.kernels import binary
from edgebnn.kernels.aligned import aligned

LayerT = TypeVar("LayerT", bound=Layer)


def fusable_into_chain(layer: Layer, chain: list[Layer]) -> bool:
    """Element-wise, and at most one PReLU (one alpha tensor) per chain."""
    if not layer.elementwise or isinstance(layer, AddLayer):
        return False
    if isinstance(layer, ActivationLayer) and layer.function == "prelu":
        return not any(isinstance(x, ActivationLayer) and x.function == "prelu" for x in chain)
    return True


class PlanGraph:
    """The nodes of a network (0 = its input layer), who reads whom, and their tensors."""

    def __init__(self, network: Any) -> None:
        self.network = network
        self.nodes: list[Layer] = [network.input_layer, *network.layers]
        self.inputs: list[tuple[int, ...]] = network.node_inputs
        self.consumers: list[list[int]] = [[] for _ in self.nodes]
        for node, producers in enumerate(self.inputs):
            for p in producers:
                self.consumers[p].append(node)
        self.buffers: dict[int, np.ndarray] = {}
        self.bit_buffers: dict[int, np.ndarray] = {}  # binary conv node -> its input bits
        self.steps: list[Step] = []
        self.input_view: np.ndarray | None = None  # set by the input layer's step

    def layer_as(self, node: int, kind: type[LayerT]) -> LayerT:
        """Node ``node``'s layer, which the caller knows to be a ``kind``."""
        layer = self.nodes[node]
        if not isinstance(layer, kind):
            raise TypeError(f"node {node} is a {type(layer).__name__}, not a {kind.__name__}")
        return layer

    @property
    def blas_pointwise(self) -> bool:
        """True when the network allows BLAS's summation order (``pointwise: blas``)."""
        return bool(self.network.metadata.get("pointwise") == "blas")

    # -- tensors
    def ring_fill(self, node: int) -> PaddingScheme | float:
        """The value the node's ring holds: its scheme, or the max-pool override."""
        layer = self.nodes[node]
        override = self.network.maxpool_ring_value
        if (
            override is not None
            and layer.output_padding.scheme == PaddingScheme.MIN
            and any(
                isinstance(reader, PoolingLayer) and reader.function == "max"
                for reader in (self.nodes[c] for c in self.consumers[node])
            )
        ):
            return float(override)
        return layer.output_padding.scheme

    def filled(self, node: int) -> np.ndarray:
        """A new ring-filled output tensor for ``node``, cache-line aligned."""
        layer = self.nodes[node]
        fill = self.ring_fill(node)
        if isinstance(fill, float):
            return aligned(np.full(layer.output_shape, fill, np.float32))
        return aligned(filled_tensor(layer.output_shape, fill))

    def buffer(self, node: int) -> np.ndarray:
        """The float output tensor of ``node`` (allocated and ring-filled once)."""
        if node not in self.buffers:
            self.buffers[node] = self.filled(node)
        return self.buffers[node]

    def input_of(self, node: int, k: int = 0) -> np.ndarray:
        """The tensor ``node`` reads as its ``k``-th input."""
        return self.buffer(self.inputs[node][k])

    def filled_shape(self, node: int) -> tuple[int, ...]:
        """The (ring-included) shape of ``node``'s input tensor, without allocating it."""
        return tuple(self.nodes[self.inputs[node][0]].output_shape)

    def bits_for(self, conv_node: int) -> np.ndarray:
        """The packed input bits of a binary conv, ring bits set from the ring's values."""
        if conv_node not in self.bit_buffers:
            producer = self.inputs[conv_node][0]
            ring = self.filled(producer)
            words = binary.words_for(ring.shape[2])
            bits = aligned(np.zeros((*ring.shape[:2], words), np.uint64))
            binary.sign_pack(ring, bits)
            self.bit_buffers[conv_node] = bits
        return self.bit_buffers[conv_node]

    # -- structure
    def chain_after(self, node: int) -> list[int]:
        """Element-wise nodes that follow ``node`` and can be fused as its epilogue."""
        chain: list[int] = []
        last = node
        while True:
            nxt = last + 1
            if nxt >= len(self.nodes) or self.consumers[last] != [nxt]:
                return chain
            if self.inputs[nxt] != (last,):
                return chain
            if not fusable_into_chain(self.nodes[nxt], [self.nodes[i] for i in chain]):
                return chain
            chain.append(nxt)
            last = nxt

    def label(self, nodes: tuple[int, ...], suffix: str = "") -> str:
        """A step's name: its layer types joined by '+' (e.g. Pooling+BatchNormalization)."""
        return "+".join(type(self.nodes[i]).__name__.replace("Layer", "") for i in nodes) + suffix

    def add(self, nodes: tuple[int, ...], label: str, kernel: Any, args: tuple) -> None:
        """Append one kernel call to the plan."""
        self.steps.append(Step(nodes, label, kernel, args))


@dataclass(frozen=True)
class Epilogue:
    """Where a step writes and the element-wise chain it applies on the way."""

    nodes: tuple[int, ...]
    label: str
    out: np.ndarray
    pad: int
    codes: np.ndarray
    params: np.ndarray
    alpha: np.ndarray

    @property
    def args(self) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
        """The trailing ``(out, pad, codes, params, alpha)`` every chain kernel takes."""
        return (self.out, self.pad, self.codes, self.params, self.alpha)


def epilogue(g: PlanGraph, node: int, chain: list[int], pre: list[Layer] | None = None) -> Epilogue:
    """The epilogue of ``node`` + ``chain``; ``pre`` ops run before the chain's."""
    layer = g.nodes[node]
    last = chain[-1] if chain else node
    nodes = (node, *chain)
    ops = [*(pre or []), *(g.nodes[i] for i in chain)]
    codes, params, alpha = encode_chain(ops, layer.interior_shape[2], layer.interior_shape[1])
    out = g.buffer(last)
    pad = g.nodes[last].output_padding.size
    return Epilogue(nodes, g.label(nodes), out, pad, codes, params, alpha)
