"""Step builders for mobile networks (EfficientNet-Lite): BLAS pointwise convolutions,
register-blocked depthwise convolutions, and whole MBConv blocks fused into one step.

Only networks whose metadata says ``pointwise: blas`` take these paths (BLAS sums in its own
order); ELL models keep the exact-order kernels of :mod:`.steps_float`.
"""

from __future__ import annotations

import numpy as np
from edgebnn.engine.layers import (
    ActivationLayer,
    AddLayer,
    BiasLayer,
    ConvolutionalLayer,
    PaddingScheme,
)
from edgebnn.engine.plan_graph import PlanGraph
from edgebnn.engine.steps import encode_chain
from edgebnn.kernels import blas, conv, dense, depthwise, gemm, im2col, mbconv, pointwise
from edgebnn.kernels.aligned import aligned
from edgebnn.kernels.threads import numba_threads, set_blas_threads

#: Narrowest input rows an MBConv block is fused for (below, its tensors stay in cache).
MBCONV_MIN_COLS = 28


#: A packed pointwise GEMM is split into this many ranges (of panels or pixels) per thread
#: Numba may use: a thread that starts late or is descheduled then holds up an eighth of
#: the step at 2 threads, not half of it (a frame claims the ranges one at a time).
PACKED_RANGES_PER_THREAD = 4

#: Row-block GEMMs are split into at least this many tasks (one per thread Numba may use).
GEMM_TASKS = numba_threads()


def mobile_conv(g: PlanGraph, layer, x, rows, cols, out, pad, codes, params, alpha):
    """(kernel, args) for a depthwise convolution (:mod:`edgebnn.kernels.depthwise`),
    or, when the network's metadata says ``pointwise: blas``, a 1x1/s1 (no ring) or
    k x k convolution as BLAS sgemm calls on Numba's threads (``np.matmul`` where no
    CBLAS is found); else None (the generic kernels, ELL's exact order)."""
    if layer.is_depthwise(x.shape[2]):
        w = conv.depthwise_weights_layout(layer.weights)
        lead = im2col.leading_zero_taps(layer.weights)
        if g.blas_pointwise and depthwise.taps_supported(w.shape[0], lead):
            # EfficientNet: sums kept in registers over the taps (same bits, faster).
            wt = depthwise.tile_taps(w, lead, layer.stride, cols)
            return depthwise.depthwise_rows_chain, (
                x,
                w,
                wt,
                layer.stride,
                lead,
                rows,
                cols,
                out,
                pad,
                codes,
                params,
                alpha,
            )
        return depthwise.depthwise_conv2d_rows_chain, (
            x,
            w,
            layer.stride,
            lead,
            rows,
            cols,
            out,
            pad,
            codes,
            params,
            alpha,
        )
    if not g.blas_pointwise:
        return None  # default: the generic kernel, in ELL's exact summation order
    filters = layer.weights.shape[0]
    if layer.receptive_field > 1 and blas.AVAILABLE:
        # A k x k convolution (the stem): gathered patches times weights, one sgemm per
        # row block, leading zero taps skipped.
        set_blas_threads(1)
        lead = im2col.leading_zero_taps(layer.weights)
        w2 = im2col.im2col_weights_layout(layer.weights, lead)
        patches = np.zeros((rows, cols * w2.shape[0]), np.float32)
        y_rows = np.zeros((rows, cols * filters), np.float32)
        block = max(1, -(-128 // cols))
        return im2col.im2col_sgemm_chain, (
            x,
            w2,
            layer.receptive_field,
            lead,
            layer.stride,
            patches,
            y_rows,
            block,
            out,
            pad,
            codes,
            params,
            alpha,
        )
    if layer.receptive_field != 1 or layer.stride != 1 or x.shape[:2] != (rows, cols):
        return None
    if rows * cols * x.shape[2] * layer.weights.shape[0] < 1 << 18:
        # A tiny GEMM (a 2x2 head): BLAS threads only fight Numba's here; the
        # exact-order kernel is as fast and bit-identical to the reference.
        return None
    if rows * cols == 1 and pad == 0:
        # One pixel (the classifier): a vectorised GEMV, w read once.
        w = pointwise.pointwise_weights_layout(layer.weights)
        return dense.gemv_chain, (x.reshape(-1), w, out.reshape(-1), codes, params, alpha)
    x2d = x.reshape(rows * cols, x.shape[2])
    y2d = (
        out.reshape(rows * cols, filters)
        if pad == 0
        else np.zeros((rows * cols, filters), np.float32)
    )
    w = pointwise.pointwise_weights_layout(layer.weights)
    if blas.AVAILABLE:
        # sgemm on Numba's threads (row blocks of ~128 pixels); BLAS's own pool off.
        set_blas_threads(1)
        block = max(1, min(-(-128 // cols), -(-rows // GEMM_TASKS)))  # >= one task per thread
        x_rows, y_rows = x2d.reshape(rows, -1), y2d.reshape(rows, -1)
        if -(-rows // block) < GEMM_TASKS or rows * cols < 64:
            # Too few rows to share out (7x7): split the output channels instead.
            args = (x_rows, w, y_rows, GEMM_TASKS, out, pad, codes, params, alpha)
            return pointwise.pointwise_sgemm_columns_chain, args
        return pointwise.pointwise_sgemm_chain, (
            x_rows,
            w,
            y_rows,
            block,
            out,
            pad,
            codes,
            params,
            alpha,
        )
    return pointwise.pointwise_conv_chain, (x2d, w, y2d, out, pad, codes, params, alpha)


def is_pointwise(g: PlanGraph, node: int) -> bool:
    """A 1x1/s1 convolution reading an un-ringed tensor (a pointwise GEMM)."""
    layer = g.nodes[node]
    if not isinstance(layer, ConvolutionalLayer) or layer.receptive_field != 1 or layer.stride != 1:
        return False
    shape = g.filled_shape(node)
    return shape[:2] == layer.interior_shape[:2] and not layer.is_depthwise(shape[2])


def mbconv_step(g: PlanGraph, node: int, chain: list[int]) -> int | None:
    """Fuse an MBConv block ([expand ->] depthwise -> project [-> add]) into one
    :func:`edgebnn.kernels.mbconv.mbconv_chain` step; returns its last node, or None.

    Only for ``pointwise: blas`` networks (EfficientNet) and rows of at least
    :data:`MBCONV_MIN_COLS` pixels, where the expanded tensor would leave the cache;
    narrower pointwise layers become packed-GEMM steps
    (:func:`packed_pointwise_step`). Here BLAS ``sgemm`` per row is as fast as
    the packed micro-kernel or faster (K of 16-144: 112x16x96 2.5 vs 3.1 us).
    """
    if not g.blas_pointwise:
        return None
    if is_pointwise(g, node) and g.nodes[node].interior_shape[1] < MBCONV_MIN_COLS:
        return packed_pointwise_step(g, node, chain)  # needs no BLAS
    if not blas.AVAILABLE:
        return None
    layer = g.nodes[node]
    if not isinstance(layer, ConvolutionalLayer):
        return None
    x = g.input_of(node)
    if is_pointwise(g, node):
        mode = mbconv.POINTWISE
    elif layer.receptive_field > 1 and not layer.is_depthwise(x.shape[2]):
        mode = mbconv.STEM  # a k x k convolution (the stem) makes the depthwise input
    else:
        mode = mbconv.COPY
    expand = mode != mbconv.COPY
    if expand:
        e_chain, dw = chain, (chain[-1] if chain else node) + 1
        if g.consumers[dw - 1] != [dw] or g.inputs[dw] != (dw - 1,):
            return None
    else:
        e_chain, dw = [], node
    dw_layer = g.nodes[dw] if dw < len(g.nodes) else None
    if not isinstance(dw_layer, ConvolutionalLayer) or not dw_layer.is_depthwise(
        g.filled_shape(dw)[2]
    ):
        return None
    cols_in = (layer.interior_shape if expand else g.nodes[g.inputs[dw][0]].interior_shape)[1]
    ring = g.nodes[g.inputs[dw][0]].output_padding
    if ring.scheme != PaddingScheme.ZEROS or cols_in < MBCONV_MIN_COLS:
        return None
    d_chain = chain if not expand else g.chain_after(dw)
    d_last = d_chain[-1] if d_chain else dw
    proj = d_last + 1
    if (
        g.nodes[d_last].output_padding.size
        or g.consumers[d_last] != [proj]
        or not is_pointwise(g, proj)
    ):
        return None
    p_chain = g.chain_after(proj)
    p_last = p_chain[-1] if p_chain else proj
    last, res, a_chain = p_last, None, []
    cons = g.consumers[p_last]
    if len(cons) == 1 and isinstance(g.nodes[cons[0]], AddLayer):
        add = cons[0]
        block_input = g.inputs[node][0]
        if (
            mode == mbconv.POINTWISE
            and g.inputs[add] in ((p_last, block_input), (block_input, p_last))
            and g.nodes[p_last].output_padding.size == 0
            and g.nodes[block_input].output_padding.size == 0
        ):
            a_chain = g.chain_after(add)
            res, last = (
                g.input_of(add, g.inputs[add].index(block_input)),
                (a_chain[-1] if a_chain else add),
            )
    out = g.buffer(last)
    pad = g.nodes[last].output_padding.size
    rows, cols, hidden = dw_layer.interior_shape
    wd = conv.depthwise_weights_layout(dw_layer.weights)
    lead = im2col.leading_zero_taps(dw_layer.weights)
    k = wd.shape[0]
    if not depthwise.taps_supported(k, lead):
        return None
    wt = depthwise.tile_taps(wd, lead, dw_layer.stride, cols)
    we, patches = np.zeros((1, 1), np.float32), np.zeros((1, max(cols_in, 1)), np.float32)
    slead = im2col.leading_zero_taps(layer.weights) if mode == mbconv.STEM else 0
    if mode == mbconv.POINTWISE:
        we = pointwise.pointwise_weights_layout(layer.weights)
    elif mode == mbconv.STEM:
        we = im2col.im2col_weights_layout(layer.weights, slead)
        patches = np.zeros((numba_threads(), cols_in * we.shape[0]), np.float32)
    wp = pointwise.pointwise_weights_layout(g.layer_as(proj, ConvolutionalLayer).weights)
    f_out = wp.shape[1]
    padded_cols = cols_in + 2 * ring.size if expand else x.shape[1]
    set_blas_threads(1)
    lines, tags, drows, busy = (
        aligned(b) for b in mbconv.line_buffers(numba_threads(), k, padded_cols, hidden, cols)
    )

    def enc(ids: list[int], chans: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return encode_chain([g.nodes[i] for i in ids], chans, width)

    has_res = res is not None
    if res is None:
        res = np.zeros((1, 1, 1), np.float32)
    args = (
        x,
        mode,
        we,
        *enc(e_chain, hidden, cols_in),
        *layer.interior_shape[:2],
        layer.receptive_field,
        slead,
        layer.stride,
        patches,
        wd,
        wt,
        dw_layer.stride,
        lead,
        ring.size,
        *enc(d_chain, hidden, cols),
        wp,
        *enc(p_chain, f_out, cols),
        res,
        has_res,
        *enc(a_chain, f_out, cols),
        lines,
        tags,
        drows,
        rows,
        cols,
        out,
        pad,
        busy,
    )
    first = node
    nodes = tuple(range(first, last + 1))
    first_op = {mbconv.POINTWISE: "expand,", mbconv.STEM: "stem,", mbconv.COPY: ""}[mode]
    label = f"MBConv[{first_op}dw{k - lead}/s{dw_layer.stride},project" + (
        ",add]" if has_res else "]"
    )
    g.add(nodes, label, mbconv.mbconv_chain, args)
    return last


def packed_epilogue(g: PlanGraph, chain: list[int]) -> tuple[np.ndarray | None, int] | None:
    """(bias or None, flags) when ``chain`` is what the packed GEMM's epilogue does
    (nothing, a bias, a bias then ReLU6); else None."""
    layers = [g.nodes[i] for i in chain]
    bias, flags = None, 0
    first = layers[0] if layers else None
    if isinstance(first, BiasLayer):
        bias = first.bias
        layers.pop(0)
    if layers and isinstance(layers[0], ActivationLayer) and layers[0].function == "relu6":
        layers.pop(0)
        flags = gemm.RELU6
    return None if layers else (bias, flags)


def packed_pointwise_step(g: PlanGraph, node: int, chain: list[int]) -> int | None:
    """A pointwise convolution of a small image (14x14, 7x7: the expand, project and
    head layers of EfficientNet's late blocks) as one :func:`edgebnn.kernels.gemm.
    pointwise_packed` step on weights packed here; the residual ``Add`` right after a
    project layer is done in its epilogue. Returns the step's last node, or None."""
    if not gemm.AVAILABLE:
        return None  # 32-bit or untested CPU (kernels/microkernel.py): BLAS/NumPy instead
    layer = g.layer_as(node, ConvolutionalLayer)
    rows, cols, filters = layer.interior_shape
    epilogue = packed_epilogue(g, chain)
    if epilogue is None:
        return None  # other chains: the generic path
    bias, flags = epilogue
    last = chain[-1] if chain else node
    res = np.zeros((1, 1), np.float32)
    cons = g.consumers[last]
    if len(cons) == 1 and cons[0] == last + 1 and isinstance(g.nodes[last + 1], AddLayer):
        add = last + 1
        other = [i for i in g.inputs[add] if i != last]
        if (
            len(other) == 1
            and not g.chain_after(add)
            and g.nodes[other[0]].output_padding.size == 0
            and g.buffer(other[0]).flags.c_contiguous
        ):
            res = g.buffer(other[0]).reshape(rows * cols, filters)
            flags |= gemm.RESIDUAL
            last = add
    out = g.buffer(last)
    pad = g.nodes[last].output_padding.size
    x = g.input_of(node)
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        return None  # the kernel follows raw pointers; a reshape would copy, not alias
    a = x.reshape(rows * cols, x.shape[2])
    w = pointwise.pointwise_weights_layout(layer.weights)
    ranges = numba_threads() * PACKED_RANGES_PER_THREAD
    blocks, ptrs = gemm.scratch(ranges)
    args = (
        a,
        gemm.pack_weights(w),
        gemm.pad_bias(bias, filters),
        filters,
        flags,
        out.reshape(out.shape[0], -1),
        pad,
        cols,
        res,
        gemm.thread_ranges(rows * cols, filters, ranges),
        blocks,
        ptrs,
    )
    nodes = tuple(range(node, last + 1))
    g.add(nodes, g.label(nodes, " [packed GEMM]"), gemm.pointwise_packed, args)
    return last
