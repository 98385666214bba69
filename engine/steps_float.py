"""Step builders for layers that write floats, in ELL's exact summation order.

Each builder takes the :class:`~edgebnn.engine.plan_graph.PlanGraph`, a producer node and
the element-wise nodes fused after it (its *chain*), and appends the step(s) that compute
them: one kernel call whose epilogue applies the chain op by op, each op rounded to
float32 as its own ELL layer would be.
"""

from __future__ import annotations

import numpy as np
from edgebnn.engine.layers import (
    ConvolutionalLayer,
    FullyConnectedLayer,
    InputLayer,
    Layer,
    PoolingLayer,
    ScalingLayer,
)
from edgebnn.engine.plan_graph import PlanGraph, epilogue
from edgebnn.engine.steps_mobile import mobile_conv
from edgebnn.kernels import conv, conv_blocked, dense, elementwise, pool, softmax
from edgebnn.kernels.aligned import aligned


def input_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """The input layer: copy the frame into its ringed buffer, times its scale, + chain."""
    layer = g.nodes[node]
    assert isinstance(layer, InputLayer)
    chans = layer.interior_shape[2]
    # InputLayer computes data * scale; a scale of 1 is exact identity.
    pre: list[Layer] = (
        []
        if layer.scale == 1.0
        else [ScalingLayer(layer.interior_shape, scales=np.full(chans, layer.scale))]
    )
    ep = epilogue(g, node, chain, pre)
    g.input_view = aligned(np.zeros(layer.input_shape, np.float32))
    g.add(ep.nodes, ep.label, elementwise.chain_copy, (g.input_view, *ep.args))


def elementwise_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """An element-wise layer whose producer could not take it as an epilogue."""
    ep = epilogue(g, node, chain, [g.nodes[node]])
    g.add(ep.nodes, ep.label, elementwise.chain_copy, (g.input_of(node), *ep.args))


def conv_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """A real-valued convolution: depthwise and BLAS-shaped ones by :func:`mobile_conv`,
    1x1 ones over a few pixels split by filters (a classifier head), else the generic
    kernel (vectorised along columns for few filters and long rows)."""
    layer = g.layer_as(node, ConvolutionalLayer)
    ep = epilogue(g, node, chain)
    rows, cols, _ = layer.interior_shape
    x = g.input_of(node)
    mobile = mobile_conv(g, layer, x, rows, cols, *ep.args)
    if mobile is not None:
        g.add(ep.nodes, ep.label, *mobile)
        return
    filters, k = layer.weights.shape[:2]
    one_by_one = k == 1 and layer.stride == 1 and x.shape[:2] == (rows, cols)
    if one_by_one and rows * cols <= 16 and filters > conv.FILTER_BLOCK:
        wb = aligned(conv.filter_blocks_layout(layer.weights))
        args = (x, wb, filters, rows, cols, *ep.args)
        g.add(ep.nodes, ep.label, conv.conv1x1_filters_chain, args)
        return
    w = aligned(conv.conv_weights_layout(layer.weights))
    few = layer.weights.shape[0] <= 32 and cols >= 32
    kernel = conv_blocked.conv2d_columns_chain if few else conv.conv2d_chain
    g.add(ep.nodes, ep.label, kernel, (x, w, layer.stride, rows, cols, *ep.args))


def pool_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """Max or mean pooling over ELL's padded windows."""
    layer = g.nodes[node]
    assert isinstance(layer, PoolingLayer)
    ep = epilogue(g, node, chain)
    rows, cols, _ = layer.interior_shape
    x = g.input_of(node)
    args = (x, layer.function == "max", layer.size, layer.stride, rows, cols, *ep.args)
    g.add(ep.nodes, ep.label, pool.pool_chain, args)


def add_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """The element-wise sum of two tensors (a residual connection)."""
    ep = epilogue(g, node, chain)
    g.add(
        ep.nodes,
        ep.label,
        elementwise.add_chain,
        (g.input_of(node, 0), g.input_of(node, 1), *ep.args),
    )


def fully_connected_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """A fully connected layer; its chain (or a ring) as a second, copying step."""
    layer = g.nodes[node]
    assert isinstance(layer, FullyConnectedLayer)
    ep = epilogue(g, node, chain)
    x = g.input_of(node)
    if ep.pad == 0 and not chain:
        flat = ep.out.reshape(-1)
    else:
        flat = np.zeros(int(np.prod(layer.interior_shape)), np.float32)
    g.add((node,), "FullyConnected", dense.fully_connected, (x, layer.weights, flat))
    if ep.pad or chain:
        shaped = flat.reshape(layer.interior_shape)
        g.add(tuple(chain), ep.label, elementwise.chain_copy, (shaped, *ep.args))


def softmax_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """Softmax over the whole tensor; its chain as a second, copying step."""
    layer = g.nodes[node]
    ep = epilogue(g, node, chain)
    x = g.input_of(node)
    if chain:
        tmp = np.zeros(layer.interior_shape, np.float32)
        g.add((node,), "Softmax", softmax.softmax, (x, tmp, 0))
        g.add(tuple(chain), ep.label, elementwise.chain_copy, (tmp, *ep.args))
    else:
        g.add((node,), "Softmax", softmax.softmax, (x, ep.out, ep.pad))
