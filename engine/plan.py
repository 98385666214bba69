"""Plan once, run many: buffers, fused steps and kernels chosen per layer at build time.

The plan walks the layers in order and groups each *producer* (input, convolution, binary
convolution, pooling, fully connected, softmax, add) with the run of element-wise layers
that follows it (bias, scaling, batch-norm, activations); the group becomes one kernel
call whose epilogue applies the run op by op, each op rounded to float32 as its own ELL
layer would be. A group whose only consumer is a binary convolution and that is a pooling
(or nothing) followed by monotone per-channel ops does not write floats at all: it writes
the convolution's packed sign bits through exact thresholds (:mod:`.thresholds`).

Which builder makes a group's step is two tables: :data:`FUSED_STEPS`, tried in order at
every node, and :data:`FLOAT_STEPS`, from layer kind to builder, for what none of them
took. Every buffer is allocated and its padding ring filled once; ``run`` allocates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from edgebnn.engine import steps_binary, steps_float, steps_mobile
from edgebnn.engine.buffer_reuse import share_buffers
from edgebnn.engine.frame import FrameRunner
from edgebnn.engine.layers import (
    ActivationLayer,
    AddLayer,
    BatchNormalizationLayer,
    BiasLayer,
    BinaryConvolutionalLayer,
    ConvolutionalLayer,
    FullyConnectedLayer,
    InputLayer,
    Layer,
    PoolingLayer,
    ScalingLayer,
    SoftmaxLayer,
)
from edgebnn.engine.plan_graph import PlanGraph
from edgebnn.engine.steps import Step
from edgebnn.kernels.placement import PLACEMENT

#: A builder that may fuse several layers into one step: returns the last node it covers,
#: or None when its pattern does not start at ``node``.
FusedStep = Callable[[PlanGraph, int, list[int]], "int | None"]
#: A builder for one producer and its element-wise chain.
FloatStep = Callable[[PlanGraph, int, list[int]], None]

#: Tried in this order at every node (the first that applies wins).
FUSED_STEPS: tuple[FusedStep, ...] = (
    steps_binary.bits_step,  # pooling/element-wise + sign -> the next binary conv's bits
    steps_binary.conv_pool_bits_step,  # the d-series stem: conv + max-pool + sign
    steps_binary.binary_pool_bits_step,  # a whole binary block
    steps_mobile.mbconv_step,  # MBConv blocks and packed-GEMM pointwise (pointwise: blas)
)

#: Layer kind -> the builder of its float step.
FLOAT_STEPS: dict[type[Layer], FloatStep] = {
    InputLayer: steps_float.input_step,
    BiasLayer: steps_float.elementwise_step,
    ScalingLayer: steps_float.elementwise_step,
    BatchNormalizationLayer: steps_float.elementwise_step,
    ActivationLayer: steps_float.elementwise_step,
    ConvolutionalLayer: steps_float.conv_step,
    BinaryConvolutionalLayer: steps_binary.binary_conv_step,
    PoolingLayer: steps_float.pool_step,
    AddLayer: steps_float.add_step,
    FullyConnectedLayer: steps_float.fully_connected_step,
    SoftmaxLayer: steps_float.softmax_step,
}


def float_step_builder(layer: Layer) -> FloatStep:
    """The builder for ``layer``'s kind (or the nearest base class's)."""
    for kind in type(layer).__mro__:
        if kind in FLOAT_STEPS:
            return FLOAT_STEPS[kind]
    raise TypeError(f"no kernel for {type(layer).__name__}")


def build_steps(g: PlanGraph) -> None:
    """Every node's step, in order, appended to ``g.steps``."""
    node = 0
    while node < len(g.nodes):
        chain = g.chain_after(node)
        for fused in FUSED_STEPS:
            last = fused(g, node, chain)
            if last is not None:
                break
        else:
            float_step_builder(g.nodes[node])(g, node, chain)
            last = chain[-1] if chain else node
        node = last + 1


class Plan:
    """The compiled form of a :class:`~edgebnn.engine.network.Network`."""

    def __init__(self, network: Any) -> None:
        graph = PlanGraph(network)
        build_steps(graph)
        if graph.blas_pointwise:
            # Mobile networks: 12 MB of layer outputs would crowd the weights out of the
            # cache; tensors whose lifetimes do not overlap share memory.
            keep = {0, len(graph.nodes) - 1}
            ringless = {n for n, layer in enumerate(graph.nodes) if not layer.output_padding.size}
            graph.steps, graph.buffers, _ = share_buffers(
                graph.steps, graph.buffers, keep, ringless
            )
        self.network = network
        self.graph = graph
        self.steps: list[Step] = graph.steps
        self.buffers: dict[int, np.ndarray] = graph.buffers
        self.bit_buffers: dict[int, np.ndarray] = graph.bit_buffers
        self._input_view = graph.input_view
        self._frames: FrameRunner | None = None
        self.output = graph.buffer(len(graph.nodes) - 1)

    # -- running -------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run every step on ``x`` (input shape, float32); returns the output buffer.

        A C-contiguous float32 ``x`` goes straight to the first step (the input layer's,
        which reads it into its ringed buffer); anything else is copied in first. The steps
        run as one parallel region per frame where their kernels allow (:mod:`.frame`).
        """
        assert self._input_view is not None and self.steps[0].args[0] is self._input_view
        if self._frames is None:
            self._frames = FrameRunner(self.steps)
        if x.dtype == np.float32 and x.flags.c_contiguous and x.shape == self._input_view.shape:
            with PLACEMENT.frame():
                self._frames.run(x)
        else:
            self._input_view[...] = x
            with PLACEMENT.frame():
                self._frames.run()
        return self.output

    def describe(self) -> str:
        """The steps, one per line (what was fused with what)."""
        return "\n".join(
            f"{i:3d} {s.label} nodes={list(s.nodes)}" for i, s in enumerate(self.steps)
        )
