"""Step builders for binary convolutions and the layers fused around them.

A binary convolution reads packed sign bits. Whatever feeds it (a pooling or nothing,
then monotone per-channel ops) can write those bits directly through exact thresholds
(:mod:`.thresholds`) instead of floats; a whole binary block (conv, chain, max-pool,
monotone chain, sign) can run as one step, on integers only where the float tail turns
into per-channel limits on the popcount (:mod:`.count_thresholds`).
"""

from __future__ import annotations

from edgebnn.engine.count_thresholds import count_test
from edgebnn.engine.layers import BinaryConvolutionalLayer, ConvolutionalLayer, PoolingLayer
from edgebnn.engine.plan_graph import PlanGraph, epilogue
from edgebnn.engine.stem_step import fused_stem_step
from edgebnn.engine.steps import Step, encode_chain
from edgebnn.engine.thresholds import chain_thresholds, interval_bounds, is_monotone
from edgebnn.kernels import binary, binary_pool, conv, conv_blocked, pool
from edgebnn.kernels.aligned import aligned
from edgebnn.kernels.threads import numba_threads

#: Binary conv blocks with fewer output rows keep separate conv and pooling steps (measured
#: here: fusing every d-series block that feeds a binary conv, down to 8x8, saves ~7%).
BAND_MIN_ROWS = 8


def bands() -> int:
    """Row bands of a fused binary block: one per core Numba may use (each band recomputes
    the rows it shares with the next, so more bands than threads only costs)."""
    return max(1, numba_threads())


def bits_step(g: PlanGraph, node: int, chain: list[int]) -> int | None:
    """Fuse pooling (or nothing) + monotone chain + sign into the input bits of the binary
    conv that alone reads them; returns the last node, or None."""
    last = chain[-1] if chain else node
    consumers = g.consumers[last]
    if len(consumers) != 1 or not isinstance(g.nodes[consumers[0]], BinaryConvolutionalLayer):
        return None
    conv_node = consumers[0]
    layer = g.nodes[node]
    chain_layers = [g.nodes[i] for i in chain]
    if not all(is_monotone(x) for x in chain_layers):
        return None
    if isinstance(layer, PoolingLayer):
        pooled, x, chans = True, g.input_of(node), layer.output_shape[2]
        rows, cols, _ = layer.interior_shape
        ops = chain_layers
    elif (
        layer.elementwise
        and is_monotone(layer)
        and g.nodes[g.inputs[node][0]].output_padding.size == 0
    ):
        pooled, x, chans = False, g.input_of(node), layer.output_shape[2]
        rows, cols, _ = layer.interior_shape
        ops = [layer, *chain_layers]
    else:
        return None
    thresholds, modes, specials = chain_thresholds(ops, chans)
    lo, hi, specials = (aligned(a) for a in (*interval_bounds(thresholds, modes), specials))
    bits = g.bits_for(conv_node)
    pad = g.nodes[last].output_padding.size
    pooling = layer if isinstance(layer, PoolingLayer) else None
    size = pooling.size if pooling else 1
    stride = pooling.stride if pooling else 1
    is_max = pooling.function == "max" if pooling else True
    args = (x, pooled, is_max, size, stride, rows, cols, lo, hi, specials, bits, pad)
    nodes = (node, *chain)
    label = g.label(nodes, "+Sign")
    g.add(nodes, label, pool.pool_to_bits, args)
    return last


def conv_pool_bits_step(g: PlanGraph, node: int, chain: list[int]) -> int | None:
    """Fuse conv + monotone chain + max-pool + sign when a binary conv reads the pool.

    The d-series stem: only the binary conv's bits are ever needed, so the 256x256x16
    float tensor is never written. Returns the pool node, or None when not applicable.
    """
    layer = g.nodes[node]
    last = chain[-1] if chain else node
    if not isinstance(layer, ConvolutionalLayer) or len(g.consumers[last]) != 1:
        return None
    x = g.input_of(node)
    rows, cols, filters = layer.interior_shape
    if layer.is_depthwise(x.shape[2]) or filters > 32 or cols < 32:
        return None
    chain_layers = [g.nodes[i] for i in chain]
    if g.nodes[last].output_padding.size or not all(is_monotone(c) for c in chain_layers):
        return None
    pool_node = g.consumers[last][0]
    pool_layer = g.nodes[pool_node]
    if (
        not isinstance(pool_layer, PoolingLayer)
        or pool_layer.function != "max"
        or g.inputs[pool_node] != (last,)
        or g.chain_after(pool_node)
        or len(g.consumers[pool_node]) != 1
        or not isinstance(g.nodes[g.consumers[pool_node][0]], BinaryConvolutionalLayer)
    ):
        return None
    thresholds, modes, specials = chain_thresholds(chain_layers, filters)
    lo, hi, specials = (aligned(a) for a in (*interval_bounds(thresholds, modes), specials))
    conv_node = g.consumers[pool_node][0]
    bits = g.bits_for(conv_node)
    p_rows, p_cols, _ = pool_layer.interior_shape
    w = aligned(conv.conv_weights_layout(layer.weights))
    args = (
        x,
        w,
        layer.stride,
        rows,
        cols,
        pool_layer.size,
        pool_layer.stride,
        p_rows,
        p_cols,
        lo,
        hi,
        specials,
        bits,
        pool_layer.output_padding.size,
    )
    nodes = (node, *chain, pool_node)
    label = g.label(nodes, "+Sign")
    producer = g.inputs[node][0]
    fused = fused_stem_step(
        g.steps, g.input_view, len(g.consumers[producer]), layer, rows, cols, *args[5:]
    )
    if fused is not None:  # the input step's chain read straight into the stem
        g.steps[-1] = Step(
            (*fused.nodes, *nodes), f"{fused.label}+{label}", fused.kernel, fused.args
        )
        return pool_node
    g.add(nodes, label, conv_blocked.conv2d_columns_pool_bits, args)
    return pool_node


def binary_conv_args(g: PlanGraph, node: int) -> tuple:
    """The binary convolution's inputs, bits to scale: (bits, chans, ..., use_scale).

    Adds a sign-packing step first when the producer writes floats.
    """
    layer = g.layer_as(node, BinaryConvolutionalLayer)
    producer = g.inputs[node][0]
    if node not in g.bit_buffers:
        # The producer wrote floats: binarise its whole tensor (ring included) first.
        bits = g.bits_for(node)
        g.add((), "Sign", binary.sign_pack, (g.buffer(producer), bits))
    bits = g.bit_buffers[node]
    r_in, c_in, chans = g.nodes[producer].output_shape
    rows, cols, _ = layer.interior_shape
    k = layer.receptive_field
    mask_pad = layer.input_padding.size if layer.masks_padding() else 0
    geometry = (r_in, c_in, chans, k, layer.stride, rows, cols, mask_pad)
    windows = binary.row_windows(chans, k)
    if windows:
        masks, nvalid = binary.window_masks(*geometry)
        wt = binary.window_weights_layout(layer.weights_bits, chans, k)
    else:
        masks, nvalid = binary.patch_masks(*geometry)
        wt = binary.binary_weights_layout(layer.weights_bits)
    use_scale = layer.weights_scale == 1
    assert layer.filter_means is not None  # filled in by the layer itself
    masks, nvalid, wt, means = (aligned(a) for a in (masks, nvalid, wt, layer.filter_means))
    return (bits, chans, k, layer.stride, masks, nvalid, wt, means, use_scale, windows)


def binary_conv_step(g: PlanGraph, node: int, chain: list[int]) -> None:
    """A binary convolution writing floats (its chain fused), from its input bits."""
    ep = epilogue(g, node, chain)
    rows, cols, _ = g.nodes[node].interior_shape
    args = (*binary_conv_args(g, node), rows, cols, *ep.args)
    g.add(ep.nodes, ep.label, binary.binary_conv_chain, args)


def binary_pool_bits_step(g: PlanGraph, node: int, chain: list[int]) -> int | None:
    """Fuse a binary conv block (conv, chain, max-pool, monotone chain, sign) into one
    step when the next binary conv reads it; returns its last node, or None.

    Only for layers of at least :data:`BAND_MIN_ROWS` output rows: each thread's band
    recomputes the rows it shares with the next, which costs more than it saves on the
    smallest maps.
    """
    layer = g.nodes[node]
    last = chain[-1] if chain else node
    if not isinstance(layer, BinaryConvolutionalLayer) or len(g.consumers[last]) != 1:
        return None
    rows, cols, filters = layer.interior_shape
    pool_node = g.consumers[last][0]
    pool_layer = g.nodes[pool_node]
    if (
        rows < BAND_MIN_ROWS
        or not isinstance(pool_layer, PoolingLayer)
        or pool_layer.function != "max"
        or g.inputs[pool_node] != (last,)
    ):
        return None
    post = g.chain_after(pool_node)
    post_layers = [g.nodes[i] for i in post]
    end = post[-1] if post else pool_node
    if not all(is_monotone(x) for x in post_layers) or len(g.consumers[end]) != 1:
        return None
    next_conv = g.consumers[end][0]
    if not isinstance(g.nodes[next_conv], BinaryConvolutionalLayer):
        return None
    pre_layers = [g.nodes[i] for i in chain]
    thresholds, modes, specials = chain_thresholds(post_layers, filters)
    conv_args = binary_conv_args(g, node)
    ring = g.filled(last)
    bits = g.bits_for(next_conv)
    p_rows, p_cols, _ = pool_layer.interior_shape
    pool = (pool_layer.size, pool_layer.stride, p_rows, p_cols)
    out = (bits, g.nodes[end].output_padding.size, bands())
    nodes = (node, *chain, pool_node, *post)
    label = g.label(nodes, "+Sign")
    (bits_in, chans, k, stride, masks, nvalid, wt, means, use_scale, windows) = conv_args
    unpadded = all(g.nodes[i].output_padding.size == 0 for i in (node, *chain[:-1]))
    test = (
        count_test(
            pre_layers,
            thresholds,
            modes,
            nvalid,
            means if use_scale else None,
            (rows, cols, filters),
            ring,
        )
        if unpadded
        else None
    )
    if test is not None:  # integers only
        limits = aligned(test.limits)
        args = (
            bits_in,
            chans,
            k,
            stride,
            masks,
            wt,
            windows,
            rows,
            cols,
            limits,
            aligned(test.ring_words),
            test.flip,
            test.keep,
            test.force,
            *pool,
            *out,
        )
        g.add(nodes, label, binary_pool.binary_conv_pool_counts, args)
        return end
    codes, params, alpha = encode_chain(pre_layers, filters, cols)
    lo, hi, specials = (aligned(a) for a in (*interval_bounds(thresholds, modes), specials))
    args = (*conv_args, rows, cols, codes, params, alpha, ring, *pool, lo, hi, specials, *out)
    g.add(nodes, label, binary_pool.binary_conv_pool_bits, args)
    return end
