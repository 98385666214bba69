"""Plan once, run many: buffers, fused steps and kernels chosen per layer at build time.

The plan walks the layers in order and groups each *producer* (input, convolution, binary
convolution, pooling, fully connected, softmax, add) with the run of element-wise layers
that follows it (bias, scaling, batch-norm, activations); the group becomes one kernel
call whose epilogue applies the run op by op, each op rounded to float32 as its own ELL
layer would be. A group whose only consumer is a binary convolution and that is a pooling
(or nothing) followed by monotone per-channel ops does not write floats at all: it writes
the convolution's packed sign bits through exact thresholds (:mod:`.thresholds`).

Every buffer is allocated and its padding ring filled once; ``run`` allocates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from edgebnn.engine.blas_threads import set_blas_threads
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
    PaddingScheme,
    PoolingLayer,
    ScalingLayer,
    SoftmaxLayer,
    filled_tensor,
)
from edgebnn.engine.thresholds import chain_thresholds, interval_bounds, is_monotone
from edgebnn.kernels import (
    binary,
    blas,
    conv,
    conv_blocked,
    depthwise,
    elementwise,
    mbconv,
    mobile,
    pool,
)
from edgebnn.kernels.elementwise import EMPTY_ALPHA

#: Narrowest input rows an MBConv block is fused for (below, its tensors stay in cache).
MBCONV_MIN_COLS = 28


def numba_threads() -> int:
    """Numba's thread limit (the most threads a parallel kernel can be given)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)

#: Row-block GEMMs are split into at least this many tasks (one per thread Numba may use).
GEMM_TASKS = numba_threads()


@dataclass
class Step:
    """One kernel call of the plan: the layer nodes it covers and how to call it."""

    nodes: tuple[int, ...]  # node ids computed by this step (0 = input layer)
    label: str
    kernel: Callable
    args: tuple

    def __call__(self) -> None:
        self.kernel(*self.args)


def encode_chain(
    layers: list[Layer], chans: int, cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, params, alpha) arrays for :func:`edgebnn.kernels.elementwise.apply_chain`,
    for output rows of ``cols`` pixels."""
    codes = np.zeros(len(layers), np.int64)
    params = np.zeros((len(layers), 2, chans), np.float32)
    alpha = EMPTY_ALPHA
    for i, layer in enumerate(layers):
        if isinstance(layer, BiasLayer):
            codes[i], params[i, 0] = elementwise.OP_BIAS, layer.bias
        elif isinstance(layer, ScalingLayer):
            codes[i], params[i, 0] = elementwise.OP_SCALE, layer.scales
        elif isinstance(layer, BatchNormalizationLayer):
            codes[i] = elementwise.OP_BATCH_NORM
            params[i, 0], params[i, 1] = layer.multiplication, layer.addition
        elif isinstance(layer, ActivationLayer):
            codes[i] = elementwise.ACTIVATION_CODES[layer.function]
            params[i, 0] = np.float32(layer.leaky_factor)
            if layer.function == "prelu":
                alpha = layer.alpha  # type: ignore[assignment]
        else:
            raise TypeError(f"{type(layer).__name__} is not element-wise")
    return codes, elementwise.tile_params(params, cols), elementwise.row_alpha(alpha)


def _fusable_into_chain(layer: Layer, chain: list[Layer]) -> bool:
    """Element-wise, and at most one PReLU (one alpha tensor) per chain."""
    if not layer.elementwise or isinstance(layer, AddLayer):
        return False
    if isinstance(layer, ActivationLayer) and layer.function == "prelu":
        return not any(isinstance(x, ActivationLayer) and x.function == "prelu" for x in chain)
    return True


class Plan:
    """The compiled form of a :class:`~edgebnn.engine.network.Network`."""

    def __init__(self, network) -> None:
        self.network = network
        self.nodes: list[Layer] = [network.input_layer, *network.layers]
        self.inputs: list[tuple[int, ...]] = network.node_inputs
        n = len(self.nodes)
        self.consumers: list[list[int]] = [[] for _ in range(n)]
        for node, producers in enumerate(self.inputs):
            for p in producers:
                self.consumers[p].append(node)
        self.buffers: dict[int, np.ndarray] = {}
        self.bit_buffers: dict[int, np.ndarray] = {}  # binary conv node -> its input bits
        self.steps: list[Step] = []
        self._input_view: np.ndarray | None = None
        self._build()
        self.output = self.buffers[n - 1]

    # -- buffers -------------------------------------------------------------------
    def _ring_fill(self, node: int) -> PaddingScheme | float:
        """The value the node's ring holds: its scheme, or the max-pool override."""
        layer = self.nodes[node]
        override = self.network.maxpool_ring_value
        if (
            override is not None
            and layer.output_padding.scheme == PaddingScheme.MIN
            and any(
                isinstance(self.nodes[c], PoolingLayer) and self.nodes[c].function == "max"
                for c in self.consumers[node]
            )
        ):
            return float(override)
        return layer.output_padding.scheme

    def _filled(self, node: int) -> np.ndarray:
        layer = self.nodes[node]
        fill = self._ring_fill(node)
        if isinstance(fill, float):
            return np.full(layer.output_shape, fill, np.float32)
        return filled_tensor(layer.output_shape, fill)

    def buffer(self, node: int) -> np.ndarray:
        """The float output tensor of ``node`` (allocated and ring-filled once)."""
        if node not in self.buffers:
            self.buffers[node] = self._filled(node)
        return self.buffers[node]

    # -- planning ------------------------------------------------------------------
    def _chain_after(self, node: int) -> list[int]:
        """Element-wise nodes that follow ``node`` and can be fused as its epilogue."""
        chain: list[int] = []
        last = node
        while True:
            nxt = last + 1
            if nxt >= len(self.nodes) or self.consumers[last] != [nxt]:
                return chain
            if self.inputs[nxt] != (last,):
                return chain
            if not _fusable_into_chain(self.nodes[nxt], [self.nodes[i] for i in chain]):
                return chain
            chain.append(nxt)
            last = nxt

    def _build(self) -> None:
        node = 0
        n = len(self.nodes)
        while node < n:
            chain = self._chain_after(node)
            last = chain[-1] if chain else node
            consumers = self.consumers[last]
            if (
                len(consumers) == 1
                and isinstance(self.nodes[consumers[0]], BinaryConvolutionalLayer)
                and self._try_bits_step(node, chain, consumers[0])
            ):
                node = last + 1
                continue
            fused_to = self._try_conv_pool_bits_step(node, chain)
            if fused_to is None:
                fused_to = self._try_mbconv_step(node, chain)
            if fused_to is not None:
                node = fused_to + 1
                continue
            self._float_step(node, chain)
            node = last + 1

    def _input_of(self, node: int, k: int = 0) -> np.ndarray:
        return self.buffer(self.inputs[node][k])

    def _float_step(self, node: int, chain: list[int]) -> None:
        """One producer plus its element-wise epilogue, writing floats."""
        layer = self.nodes[node]
        last = chain[-1] if chain else node
        out = self.buffer(last)
        pad = self.nodes[last].output_padding.size
        chans = layer.interior_shape[2]
        chain_layers = [self.nodes[i] for i in chain]
        nodes = (node, *chain)
        label = "+".join(type(self.nodes[i]).__name__.replace("Layer", "") for i in nodes)

        if isinstance(layer, InputLayer):
            # InputLayer computes data * scale; a scale of 1 is exact identity.
            pre = [] if layer.scale == 1.0 else [ScalingLayer(layer.interior_shape, scales=np.full(chans, layer.scale))]
            codes, params, alpha = encode_chain(pre + chain_layers, chans, layer.interior_shape[1])
            self._input_view = np.zeros(layer.input_shape, np.float32)
            args = (self._input_view, out, pad, codes, params, alpha)
            self.steps.append(Step(nodes, label, elementwise.chain_copy, args))
            return
        if layer.elementwise:
            # An element-wise layer whose producer could not take it as an epilogue.
            codes, params, alpha = encode_chain([layer, *chain_layers], chans, layer.interior_shape[1])
            args = (self._input_of(node), out, pad, codes, params, alpha)
            self.steps.append(Step(nodes, label, elementwise.chain_copy, args))
            return
        codes, params, alpha = encode_chain(chain_layers, chans, layer.interior_shape[1])
        rows, cols, _ = layer.interior_shape
        if isinstance(layer, ConvolutionalLayer):
            x = self._input_of(node)
            mobile = self._mobile_conv(layer, x, rows, cols, out, pad, codes, params, alpha)
            if mobile is not None:
                self.steps.append(Step(nodes, label, *mobile))
            elif layer.is_depthwise(x.shape[2]):
                w = conv.depthwise_weights_layout(layer.weights)
                kernel = conv.depthwise_conv2d_chain
            else:
                w = conv.conv_weights_layout(layer.weights)
                # Few filters and long rows: vectorise along columns instead of filters.
                few = layer.weights.shape[0] <= 32 and cols >= 32
                kernel = conv_blocked.conv2d_columns_chain if few else conv.conv2d_chain
            if mobile is None:
                args = (x, w, layer.stride, rows, cols, out, pad, codes, params, alpha)
                self.steps.append(Step(nodes, label, kernel, args))
        elif isinstance(layer, BinaryConvolutionalLayer):
            self._binary_conv_step(node, nodes, label, out, pad, codes, params, alpha)
        elif isinstance(layer, PoolingLayer):
            x = self._input_of(node)
            args = (x, layer.function == "max", layer.size, layer.stride, rows, cols, out, pad, codes, params, alpha)
            self.steps.append(Step(nodes, label, pool.pool_chain, args))
        elif isinstance(layer, AddLayer):
            a, b = self._input_of(node, 0), self._input_of(node, 1)
            args = (a, b, out, pad, codes, params, alpha)
            self.steps.append(Step(nodes, label, elementwise.add_chain, args))
        elif isinstance(layer, FullyConnectedLayer):
            x = self._input_of(node)
            if pad == 0 and not chain:
                flat = out.reshape(-1)
            else:
                flat = np.zeros(int(np.prod(layer.interior_shape)), np.float32)
            self.steps.append(Step((node,), "FullyConnected", elementwise.fully_connected, (x, layer.weights, flat)))
            if pad or chain:
                shaped = flat.reshape(layer.interior_shape)
                args = (shaped, out, pad, codes, params, alpha)
                self.steps.append(Step(tuple(chain), label, elementwise.chain_copy, args))
        elif isinstance(layer, SoftmaxLayer):
            x = self._input_of(node)
            if chain:
                tmp = np.zeros(layer.interior_shape, np.float32)
                self.steps.append(Step((node,), "Softmax", elementwise.softmax, (x, tmp, 0)))
                self.steps.append(Step(tuple(chain), label, elementwise.chain_copy, (tmp, out, pad, codes, params, alpha)))
            else:
                self.steps.append(Step((node,), "Softmax", elementwise.softmax, (x, out, pad)))
        else:
            raise TypeError(f"no kernel for {type(layer).__name__}")

    def _mobile_conv(self, layer, x, rows, cols, out, pad, codes, params, alpha):
        """(kernel, args) from :mod:`edgebnn.kernels.mobile` for a depthwise convolution,
        or, when the network's metadata says ``pointwise: blas``, a 1x1/s1 (no ring) or
        k x k convolution as BLAS sgemm calls on Numba's threads (``np.matmul`` where no
        CBLAS is found); else None (the generic kernels, ELL's exact order)."""
        if layer.is_depthwise(x.shape[2]):
            w = conv.depthwise_weights_layout(layer.weights)
            lead = mobile.leading_zero_taps(layer.weights)
            if self.network.metadata.get("pointwise") == "blas" and depthwise.taps_supported(w.shape[0], lead):
                # EfficientNet: sums kept in registers over the taps (same bits, faster).
                wt = depthwise.tile_taps(w, lead, layer.stride, cols)
                return depthwise.depthwise_rows_chain, (
                    x, w, wt, layer.stride, lead, rows, cols, out, pad, codes, params, alpha
                )
            return mobile.depthwise_conv2d_rows_chain, (
                x, w, layer.stride, lead, rows, cols, out, pad, codes, params, alpha
            )
        if self.network.metadata.get("pointwise") != "blas":
            return None  # default: the generic kernel, in ELL's exact summation order
        filters = layer.weights.shape[0]
        if layer.receptive_field > 1 and blas.AVAILABLE:
            # A k x k convolution (the stem): gathered patches times weights, one sgemm per
            # row block, leading zero taps skipped.
            set_blas_threads(1)
            lead = mobile.leading_zero_taps(layer.weights)
            w2 = mobile.im2col_weights_layout(layer.weights, lead)
            patches = np.zeros((rows, cols * w2.shape[0]), np.float32)
            y_rows = np.zeros((rows, cols * filters), np.float32)
            block = max(1, -(-128 // cols))
            return mobile.im2col_sgemm_chain, (
                x, w2, layer.receptive_field, lead, layer.stride, patches, y_rows, block,
                out, pad, codes, params, alpha,
            )
        if layer.receptive_field != 1 or layer.stride != 1 or x.shape[:2] != (rows, cols):
            return None
        if rows * cols * x.shape[2] * layer.weights.shape[0] < 1 << 18:
            # A tiny GEMM (a 2x2 head): BLAS threads only fight Numba's here; the
            # exact-order kernel is as fast and bit-identical to the reference.
            return None
        if rows * cols == 1 and pad == 0:
            # One pixel (the classifier): a vectorised GEMV, w read once.
            w = mobile.pointwise_weights_layout(layer.weights)
            return mobile.gemv_chain, (x.reshape(-1), w, out.reshape(-1), codes, params, alpha)
        x2d = x.reshape(rows * cols, x.shape[2])
        y2d = out.reshape(rows * cols, filters) if pad == 0 else np.zeros((rows * cols, filters), np.float32)
        w = mobile.pointwise_weights_layout(layer.weights)
        if blas.AVAILABLE:
            # sgemm on Numba's threads (row blocks of ~128 pixels); BLAS's own pool off.
            set_blas_threads(1)
            block = max(1, min(-(-128 // cols), -(-rows // GEMM_TASKS)))  # >= one task per thread
            x_rows, y_rows = x2d.reshape(rows, -1), y2d.reshape(rows, -1)
            if -(-rows // block) < GEMM_TASKS or rows * cols < 64:
                # Too few rows to share out (7x7): split the output channels instead.
                args = (x_rows, w, y_rows, GEMM_TASKS, out, pad, codes, params, alpha)
                return mobile.pointwise_sgemm_columns_chain, args
            return mobile.pointwise_sgemm_chain, (x_rows, w, y_rows, block, out, pad, codes, params, alpha)
        return mobile.pointwise_conv_chain, (x2d, w, y2d, out, pad, codes, params, alpha)

    def _is_pointwise(self, node: int) -> bool:
        """A 1x1/s1 convolution reading an un-ringed tensor (a pointwise GEMM)."""
        layer = self.nodes[node]
        if not isinstance(layer, ConvolutionalLayer) or layer.receptive_field != 1 or layer.stride != 1:
            return False
        shape = self._filled_shape(node)
        return shape[:2] == layer.interior_shape[:2] and not layer.is_depthwise(shape[2])

    def _try_mbconv_step(self, node: int, chain: list[int]) -> int | None:
        """Fuse an MBConv block ([expand ->] depthwise -> project [-> add]) into one
        :func:`edgebnn.kernels.mbconv.mbconv_chain` step; returns its last node, or None.

        Only for ``pointwise: blas`` networks (EfficientNet) and rows of at least
        :data:`MBCONV_MIN_COLS` pixels, where the expanded tensor would leave the cache.
        """
        if self.network.metadata.get("pointwise") != "blas" or not blas.AVAILABLE:
            return None
        layer = self.nodes[node]
        if not isinstance(layer, ConvolutionalLayer):
            return None
        x = self._input_of(node)
        if self._is_pointwise(node):
            mode = mbconv.POINTWISE
        elif layer.receptive_field > 1 and not layer.is_depthwise(x.shape[2]):
            mode = mbconv.STEM  # a k x k convolution (the stem) makes the depthwise input
        else:
            mode = mbconv.COPY
        expand = mode != mbconv.COPY
        if expand:
            e_chain, dw = chain, (chain[-1] if chain else node) + 1
            if self.consumers[dw - 1] != [dw] or self.inputs[dw] != (dw - 1,):
                return None
        else:
            e_chain, dw = [], node
        dw_layer = self.nodes[dw] if dw < len(self.nodes) else None
        if not isinstance(dw_layer, ConvolutionalLayer) or not dw_layer.is_depthwise(self._filled_shape(dw)[2]):
            return None
        cols_in = (layer.interior_shape if expand else self.nodes[self.inputs[dw][0]].interior_shape)[1]
        ring = self.nodes[self.inputs[dw][0]].output_padding
        if ring.scheme != PaddingScheme.ZEROS or cols_in < MBCONV_MIN_COLS:
            return None
        d_chain = chain if not expand else self._chain_after(dw)
        d_last = d_chain[-1] if d_chain else dw
        proj = d_last + 1
        if self.nodes[d_last].output_padding.size or self.consumers[d_last] != [proj] or not self._is_pointwise(proj):
            return None
        p_chain = self._chain_after(proj)
        p_last = p_chain[-1] if p_chain else proj
        last, res, a_chain = p_last, None, []
        cons = self.consumers[p_last]
        if len(cons) == 1 and isinstance(self.nodes[cons[0]], AddLayer):
            add = cons[0]
            block_input = self.inputs[node][0]
            if (
                mode == mbconv.POINTWISE
                and self.inputs[add] in ((p_last, block_input), (block_input, p_last))
                and self.nodes[p_last].output_padding.size == 0
                and self.nodes[block_input].output_padding.size == 0
            ):
                a_chain = self._chain_after(add)
                res, last = self._input_of(add, self.inputs[add].index(block_input)), (a_chain[-1] if a_chain else add)
        out = self.buffer(last)
        pad = self.nodes[last].output_padding.size
        rows, cols, hidden = dw_layer.interior_shape
        wd = conv.depthwise_weights_layout(dw_layer.weights)
        lead = mobile.leading_zero_taps(dw_layer.weights)
        k = wd.shape[0]
        if not depthwise.taps_supported(k, lead):
            return None
        wt = depthwise.tile_taps(wd, lead, dw_layer.stride, cols)
        we, patches = np.zeros((1, 1), np.float32), np.zeros((1, max(cols_in, 1)), np.float32)
        slead = mobile.leading_zero_taps(layer.weights) if mode == mbconv.STEM else 0
        if mode == mbconv.POINTWISE:
            we = mobile.pointwise_weights_layout(layer.weights)
        elif mode == mbconv.STEM:
            we = mobile.im2col_weights_layout(layer.weights, slead)
            patches = np.zeros((numba_threads(), cols_in * we.shape[0]), np.float32)
        wp = mobile.pointwise_weights_layout(self.nodes[proj].weights)
        f_out = wp.shape[1]
        padded_cols = cols_in + 2 * ring.size if expand else x.shape[1]
        set_blas_threads(1)
        lines, tags, drows = mbconv.line_buffers(numba_threads(), k, padded_cols, hidden, cols)

        def enc(ids: list[int], chans: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return encode_chain([self.nodes[i] for i in ids], chans, width)

        has_res = res is not None
        if res is None:
            res = np.zeros((1, 1, 1), np.float32)
        args = (
            x, mode, we, *enc(e_chain, hidden, cols_in), *layer.interior_shape[:2],
            layer.receptive_field, slead, layer.stride, patches,
            wd, wt, dw_layer.stride, lead, ring.size, *enc(d_chain, hidden, cols),
            wp, *enc(p_chain, f_out, cols), res, has_res, *enc(a_chain, f_out, cols),
            lines, tags, drows, rows, cols, out, pad,
        )
        first = node
        nodes = tuple(range(first, last + 1))
        first_op = {mbconv.POINTWISE: "expand,", mbconv.STEM: "stem,", mbconv.COPY: ""}[mode]
        label = f"MBConv[{first_op}dw{k - lead}/s{dw_layer.stride},project" + (",add]" if has_res else "]")
        self.steps.append(Step(nodes, label, mbconv.mbconv_chain, args))
        return last

    def _filled_shape(self, node: int) -> tuple[int, ...]:
        """The (ring-included) shape of ``node``'s input tensor, without allocating it."""
        return self.nodes[self.inputs[node][0]].output_shape

    def _bits_for(self, conv_node: int) -> np.ndarray:
        """The packed input bits of a binary conv, ring bits set from the ring's values."""
        if conv_node not in self.bit_buffers:
            producer = self.inputs[conv_node][0]
            ring = self._filled(producer)
            words = binary.words_for(ring.shape[2])
            bits = np.zeros((*ring.shape[:2], words), np.uint64)
            binary.sign_pack(ring, bits)
            self.bit_buffers[conv_node] = bits
        return self.bit_buffers[conv_node]

    def _try_bits_step(self, node: int, chain: list[int], conv_node: int) -> bool:
        """Fuse pooling (or nothing) + monotone chain + sign into the conv's input bits."""
        layer = self.nodes[node]
        chain_layers = [self.nodes[i] for i in chain]
        if not all(is_monotone(x) for x in chain_layers):
            return False
        if isinstance(layer, PoolingLayer):
            pooled, x, chans = True, self._input_of(node), layer.output_shape[2]
            rows, cols, _ = layer.interior_shape
            ops = chain_layers
        elif layer.elementwise and is_monotone(layer) and self.nodes[self.inputs[node][0]].output_padding.size == 0:
            pooled, x, chans = False, self._input_of(node), layer.output_shape[2]
            rows, cols, _ = layer.interior_shape
            ops = [layer, *chain_layers]
        else:
            return False
        last = chain[-1] if chain else node
        thresholds, modes, specials = chain_thresholds(ops, chans)
        lo, hi = interval_bounds(thresholds, modes)
        bits = self._bits_for(conv_node)
        pad = self.nodes[last].output_padding.size
        size = layer.size if pooled else 1
        stride = layer.stride if pooled else 1
        is_max = layer.function == "max" if pooled else True
        args = (x, pooled, is_max, size, stride, rows, cols, lo, hi, specials, bits, pad)
        nodes = (node, *chain)
        label = "+".join(type(self.nodes[i]).__name__.replace("Layer", "") for i in nodes) + "+Sign"
        self.steps.append(Step(nodes, label, pool.pool_to_bits, args))
        return True

    def _try_conv_pool_bits_step(self, node: int, chain: list[int]) -> int | None:
        """Fuse conv + monotone chain + max-pool + sign when a binary conv reads the pool.

        The d-series stem: only the binary conv's bits are ever needed, so the 256x256x16
        float tensor is never written. Returns the pool node, or None when not applicable.
        """
        layer = self.nodes[node]
        last = chain[-1] if chain else node
        if not isinstance(layer, ConvolutionalLayer) or len(self.consumers[last]) != 1:
            return None
        x = self._input_of(node)
        rows, cols, filters = layer.interior_shape
        if layer.is_depthwise(x.shape[2]) or filters > 32 or cols < 32:
            return None
        chain_layers = [self.nodes[i] for i in chain]
        if self.nodes[last].output_padding.size or not all(is_monotone(c) for c in chain_layers):
            return None
        pool_node = self.consumers[last][0]
        pool_layer = self.nodes[pool_node]
        if (
            not isinstance(pool_layer, PoolingLayer)
            or pool_layer.function != "max"
            or self.inputs[pool_node] != (last,)
            or self._chain_after(pool_node)
            or len(self.consumers[pool_node]) != 1
            or not isinstance(self.nodes[self.consumers[pool_node][0]], BinaryConvolutionalLayer)
        ):
            return None
        thresholds, modes, specials = chain_thresholds(chain_layers, filters)
        lo, hi = interval_bounds(thresholds, modes)
        conv_node = self.consumers[pool_node][0]
        bits = self._bits_for(conv_node)
        p_rows, p_cols, _ = pool_layer.interior_shape
        w = conv.conv_weights_layout(layer.weights)
        args = (
            x, w, layer.stride, rows, cols, pool_layer.size, pool_layer.stride, p_rows, p_cols,
            lo, hi, specials, bits, pool_layer.output_padding.size,
        )
        nodes = (node, *chain, pool_node)
        label = "+".join(type(self.nodes[i]).__name__.replace("Layer", "") for i in nodes) + "+Sign"
        self.steps.append(Step(nodes, label, conv_blocked.conv2d_columns_pool_bits, args))
        return pool_node

    def _binary_conv_step(self, node, nodes, label, out, pad, codes, params, alpha) -> None:
        layer: BinaryConvolutionalLayer = self.nodes[node]  # type: ignore[assignment]
        producer = self.inputs[node][0]
        if node not in self.bit_buffers:
            # The producer wrote floats: binarise its whole tensor (ring included) first.
            bits = self._bits_for(node)
            self.steps.append(Step((), "Sign", binary.sign_pack, (self.buffer(producer), bits)))
        bits = self.bit_buffers[node]
        r_in, c_in, chans = self.nodes[producer].output_shape
        rows, cols, _ = layer.interior_shape
        k = layer.receptive_field
        mask_pad = layer.input_padding.size if layer.masks_padding() else 0
        masks, nvalid = binary.patch_masks(r_in, c_in, chans, k, layer.stride, rows, cols, mask_pad)
        wt = binary.binary_weights_layout(layer.weights_bits)
        args = (
            bits, chans, k, layer.stride, masks, nvalid, wt, layer.filter_means,
            layer.weights_scale == 1, rows, cols, out, pad, codes, params, alpha,
        )
        self.steps.append(Step(nodes, label, binary.binary_conv_chain, args))

    # -- running -------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run every step on ``x`` (input shape, float32); returns the output buffer."""
        assert self._input_view is not None
        self._input_view[...] = x
        for step in self.steps:
            step.kernel(*step.args)
        return self.output

    def describe(self) -> str:
        """The steps, one per line (what was fused with what)."""
        return "\n".join(f"{i:3d} {s.label} nodes={list(s.nodes)}" for i, s in enumerate(self.steps))
