"""Whole-network NumPy reference: ELL's reference predictor, layer by layer (spec 3)."""

from __future__ import annotations

import numpy as np
from edgebnn.engine.layers import PaddingScheme, PoolingLayer, filled_tensor


def forward_ref(
    network, x: np.ndarray, *, keep: bool = False, dtype: type = np.float32
) -> np.ndarray | list[np.ndarray]:
    """Run ``network`` with every layer's ``forward_ref``; returns the flat output.

    Each node gets a full output tensor pre-filled by its padding scheme (or by the
    network's ``maxpool_ring_value`` override for a ring read by a max-pool), and the layer
    writes its interior, reading its producers' full tensors. With ``keep`` the list of
    every node's tensor is returned instead. ``dtype=np.float64`` runs the same
    operations in float64 (for information: it is not what ELL computes).
    """
    nodes = [network.input_layer, *network.layers]
    consumers: list[list[int]] = [[] for _ in nodes]
    for node, producers in enumerate(network.node_inputs):
        for p in producers:
            consumers[p].append(node)
    tensors: list[np.ndarray] = []
    for node, layer in enumerate(nodes):
        override = network.maxpool_ring_value
        if (
            override is not None
            and layer.output_padding.scheme == PaddingScheme.MIN
            and any(
                isinstance(nodes[c], PoolingLayer) and nodes[c].function == "max"
                for c in consumers[node]
            )
        ):
            out = np.full(layer.output_shape, override, dtype)
        else:
            out = filled_tensor(layer.output_shape, layer.output_padding.scheme).astype(dtype)
        if node == 0:
            interior = layer.forward_ref(np.asarray(x, dtype).reshape(layer.input_shape))
        else:
            ins = [tensors[p] for p in network.node_inputs[node]]
            interior = layer.forward_ref(*ins)
        p = layer.output_padding.size
        out[p : out.shape[0] - p, p : out.shape[1] - p, :] = interior
        tensors.append(out)
    if keep:
        return tensors
    return tensors[-1].reshape(-1).copy()
